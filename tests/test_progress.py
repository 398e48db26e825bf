"""Progress where a user waits: sweep trials (`trial i/N`, best so far, time left), compare runs (`run k/N`),
self-instruct counts within a round; and library noise hidden by the command line unless --verbose."""

from __future__ import annotations

import hashlib
import re
import subprocess
import sys

import optuna
import pytest

from workbench.config import Float, SearchSpace
from workbench.instruct.backends import Completion, Decoding
from workbench.instruct.self_instruct import Generator, SelfInstructConfig, read_records
from workbench.sweeps import StudySpec, TrialOutcome, run_study
from workbench.progress import duration
from workbench.sweeps.study import describe_params

from conftest import requires_data

# --- sweep -----------------------------------------------------------------------------------------------------


def test_params_and_durations_read_short():
    assert describe_params({"train.lr": 3.1e-4, "method.num_soft": 8, "train.warmup_ratio": 0.06,
                            "method.prompt_encoder": "lstm"}) == "lr=3.1e-04 num_soft=8 warmup_ratio=0.06 " \
                                                                 "prompt_encoder=lstm"
    assert describe_params({"train.lr": 1e-3, "method.lr": 0.5}) == "train.lr=0.001 method.lr=0.5"  # same last part
    assert [duration(s) for s in (0.4, 72, 1200, 5400)] == ["0 s", "72 s", "20 min", "1.5 h"]


def _toy_spec(tmp_path, **kw) -> StudySpec:
    from workbench.tracking import resolve_tracking_uri

    base = dict(name="toy", space=SearchSpace({"train.lr": Float(1e-3, 1e-1, log=True)}), protocol={"task": "toy"},
                fixed={}, experiment="toy", tracking_uri=resolve_tracking_uri(None),
                storage=f"sqlite:///{tmp_path / 'optuna.db'}", trials=3, pruner="none")
    return StudySpec(**{**base, **kw})


def _toy_objective(plan: list[str]):
    """Trials in order: 'ok' scores 0.5, then 0.6, ...; 'prune' reports 0.1 at step 2 and is pruned; 'fail'
    raises."""
    from workbench.tracking import RunTracker

    scores = iter([0.5, 0.6, 0.7, 0.8])

    def objective(params, trial):
        what = plan.pop(0)
        if what == "fail":
            raise ValueError("boom")
        with RunTracker("toy", f"t{trial.number}", None, nested=True) as run:
            trial.started(run.run_id)
            if what == "prune":
                trial.report(2, 0.1)
                raise optuna.TrialPruned("pruned at step 2")
        return TrialOutcome(next(scores), run.run_id)

    return objective


def test_trials_say_i_of_n_best_so_far_and_time_left(tmp_path):
    lines: list[str] = []
    run_study(_toy_spec(tmp_path), _toy_objective(["ok", "fail", "prune", "ok"]), log=lines.append)
    trials = [line for line in lines if line.startswith("trial ")]
    assert trials[0].startswith("trial 1/3 (#0 of study toy): lr=") and 1e-3 <= float(trials[0].split("=")[1]) <= 0.1
    assert re.fullmatch(r"trial 1/3: complete, dev 0\.500 \(best so far 0\.500, #0\)  \d+ s; about \d+ s left",
                        trials[1]), trials[1]
    # a failed trial is replaced: its replacement keeps the count
    assert trials[2].startswith("trial 2/3 (#1 of study toy): ")
    assert re.fullmatch(r"trial 2/3: failed after \d+ s \(ValueError: boom\); another trial takes its place",
                        trials[3]), trials[3]
    assert trials[4].startswith("trial 2/3 (#2 of study toy): ")
    assert re.fullmatch(r"trial 2/3: pruned at step 2, dev 0\.100 \(best so far 0\.500, #0\)  \d+ s; about \d+ s "
                        r"left", trials[5]), trials[5]
    assert trials[6].startswith("trial 3/3 (#3 of study toy): ")
    assert re.fullmatch(r"trial 3/3: complete, dev 0\.600 \(best so far 0\.600, #3\)  \d+ s", trials[7])  # none left
    assert len(trials) == 8

    lines.clear()  # a resumed study counts from the trials its storage holds
    run_study(_toy_spec(tmp_path, trials=4, resume=True), _toy_objective(["ok"]), log=lines.append)
    assert "the study already holds 3/4 finished trials" in lines
    assert [line for line in lines if line.startswith("trial ")][0].startswith("trial 4/4 (#4 of study toy): ")


@requires_data("sst2")
def test_sweep_trials_without_bars_print_a_line_per_evaluation(tmp_path, tiny_mlm_dir):
    from workbench.runs import RunConfig
    from workbench.recipes.sweep import SweepConfig, sweep

    folder, verbalizer = tiny_mlm_dir
    run = RunConfig(task="sst2", method="prompt-finetune", model=str(folder), shots=4,
                    train={"max_steps": 4, "eval_every": 2}, eval={"limit": 8},
                    prompt={"template_id": 1, "verbalizer": str(verbalizer)}, tracking={"progress": False})
    lines: list[str] = []
    sweep(SweepConfig(run=run, trials=1, storage=f"sqlite:///{tmp_path / 'optuna.db'}", final_seeds=[],
                      pruner="none"), log=lines.append)
    steps = [line for line in lines if re.fullmatch(r"trial 1/1: step \d/4, dev \d\.\d{3}", line)]
    assert [line.split(",")[0] for line in steps] == ["trial 1/1: step 2/4", "trial 1/1: step 4/4"]


# --- compare ---------------------------------------------------------------------------------------------------


@pytest.mark.heavy
@requires_data("sst2")
def test_compare_says_run_k_of_n_and_time_left(tmp_path, tiny_mlm_dir):
    from workbench.recipes.compare import CompareConfig, compare

    folder, verbalizer = tiny_mlm_dir
    cfg = CompareConfig(task="sst2", methods=["finetune", "icl"], model=str(folder), shots=4, seeds=[13],
                        overrides={"train.max_steps": 2, "eval.limit": 8, "prompt.template_id": 1,
                                   "prompt.verbalizer": str(verbalizer), "tracking.progress": False},
                        storage=f"sqlite:///{tmp_path / 'optuna.db'}")
    lines: list[str] = []
    compare(cfg, log=lines.append)
    assert "run 1/2: finetune seed 13" in lines and "run 2/2: icl seed 13" in lines
    done = [line for line in lines if " seed  13: dev " in line]
    assert re.search(r"; about \d+ s left$", done[0]) and "left" not in done[1]  # nothing left after the last
    lines.clear()
    compare(cfg, log=lines.append)  # every run reused: nothing was trained here to time
    done = [line for line in lines if " seed  13: dev " in line]
    assert all("reused run" in line and "left" not in line for line in done)


# --- self-instruct ---------------------------------------------------------------------------------------------


def _words(seed: int) -> str:
    """Made-up words no seed instruction shares: an instruction that passes the ROUGE-L filter."""
    return " ".join(hashlib.sha256(f"{seed}:{k}".encode()).hexdigest()[:8] for k in range(6))


class _Scripted:
    """Plays the model, one prompt per call. Instruction prompt 1 of a round: a new instruction, one with a
    blacklisted word, one too short; prompt 2: the first one again (similar) and another new one. Classification:
    no; instances: one output. Each call records the bar's postfix as it stood."""

    name = "scripted"
    batch_size = 1

    def __init__(self):
        self.gen: Generator | None = None
        self.seen: list[tuple[str, str]] = []  # (the prompt's kind, the postfix then)
        self.asked = 0

    def complete(self, prompts, decoding: Decoding):
        (prompt,) = prompts
        kind = ("instructions" if prompt.startswith("Come up with a series of tasks") else
                "classification" if prompt.startswith("Can the following task") else "instances")
        self.seen.append((kind, self.gen.bar.postfix))
        if kind == "classification":
            return [Completion("No", "stop")]
        if kind == "instances":
            return [Completion("Output: an answer", "stop")]
        self.asked += 1
        first = _words((self.asked + 1) // 2)  # the same in both prompts of a round
        if self.asked % 2:
            return [Completion(f" Summarize {first}.\n10. Draw a picture of a cat\n11. Do it now", "stop")]
        return [Completion(f" Summarize {first}.\n10. Explain {_words(self.asked + 1000)}.", "stop")]


def test_self_instruct_counts_candidates_and_reasons_within_a_round(tmp_path):
    backend = _Scripted()
    cfg = SelfInstructConfig(out=str(tmp_path / "si.jsonl"), num=2, prompts_per_round=2, log_mlflow=False,
                             progress=True)
    gen = backend.gen = Generator(cfg, backend)
    gen.run()
    assert len(read_records(tmp_path / "si.jsonl")) == 2
    assert dict(gen.state.reasons) == {"blacklist": 1, "length": 1, "similar": 1} and gen.state.candidates == 5
    postfixes = [postfix for kind, postfix in backend.seen]
    # while the round's second prompt generates, the first one's candidates are already judged
    assert postfixes[1] == ("round 1: instructions 1/2 | candidates 3, accepted 0, rejected 2: blacklist=1 "
                            "length=1")
    assert backend.seen[2] == ("classification", "round 1: classification 0/2 | candidates 5, accepted 0, "
                                                 "rejected 3: blacklist=1 length=1 similar=1")
    # records are accepted (and counted) chunk by chunk, before the round is over
    assert backend.seen[-1] == ("instances", "round 1: instances 1/2 | candidates 5, accepted 1, rejected 3: "
                                             "blacklist=1 length=1 similar=1")
    assert gen.bar.postfix.endswith("candidates 5, accepted 2, rejected 3: blacklist=1 length=1 similar=1")


# --- library noise ---------------------------------------------------------------------------------------------


def _python(code: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=120)


def test_verbose_before_or_after_the_command():
    from workbench.cli import build_parser

    parser = build_parser()
    for argv, verbose in ((["methods"], False), (["--verbose", "methods"], True), (["methods", "--verbose"], True),
                          (["--verbose", "instruct", "mix"], True), (["instruct", "mix", "--verbose"], True)):
        assert parser.parse_args(argv).verbose is verbose, argv


def test_quieting_imports_no_library_and_switches_each_when_it_is_imported(tmp_path):
    code = """
import logging, sys
from workbench.cli import main
assert main(["methods"]) == 0
heavy = [m for m in ("torch", "transformers", "datasets", "mlflow", "optuna") if m in sys.modules]
assert not heavy, heavy
import datasets, optuna, transformers
from transformers.utils import logging as hf_logging
assert hf_logging.get_verbosity() == hf_logging.ERROR and not hf_logging.is_progress_bar_enabled()
assert type(transformers.__spec__.loader).__name__ != "_ThenSwitch"  # the library keeps its own loader
assert optuna.logging.get_verbosity() == optuna.logging.WARNING
assert datasets.utils.are_progress_bars_disabled()
"""
    done = _python(code, tmp_path)
    assert done.returncode == 0, done.stderr


@pytest.mark.heavy
@pytest.mark.parametrize("verbose", [False, True])
def test_mlflow_info_lines_only_with_verbose(tmp_path, verbose):
    code = f"""
import sys
from workbench.cli import noise
if not {verbose}:
    noise.quiet()
import mlflow
mlflow.MlflowClient("sqlite:///{tmp_path / 'new.db'}").search_experiments()  # a new store: MLflow says INFO
print("warning: our own line", file=sys.stderr)
"""
    done = _python(code, tmp_path)
    assert done.returncode == 0, done.stderr
    assert ("INFO mlflow" in done.stderr) is verbose, done.stderr
    assert "warning: our own line" in done.stderr
