"""PET and iPET as a job (workbench/recipes/pet.py) on the tiny masked LM: a task defined only by YAML runs through
both methods on the command line, the unlabelled pool (from the task's unlabeled file, or from its training split
minus every labelled shot), iPET's training sets, resuming a stopped job, `workbench predict` on the distilled
classifier, zero-shot runs, and bad input refused before any model loads.

Budgets are tiny (2 steps, 2 patterns, pools of tens of rows, 8-16 evaluation rows): this checks the plumbing and
the arithmetic, not accuracy. The expensive jobs run once per module (fixtures with their own MLflow store) and
several tests read them.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import os
import re
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import mlflow
import pytest
from bad_inputs import Case, run_case
from conftest import SHARED_DATA, no_runs_in_store, requires_data

# ---- a task defined only by YAML --------------------------------------------------------------------------------

POS = ["was great", "is very funny", "was fun", "is good", "was great fun", "is funny"]
NEG = ["was terrible", "is dull", "is boring", "was bad", "was not good", "is very dull"]
SUBJECTS = ["the movie", "this film", "the story", "the plot", "the actors"]

TASK = ("name: tinypet\nfiles: {train: train.tsv, test: test.tsv}\ntext_fields: [text]\nlabel_names: [neg, pos]\n"
        "templates: prompts/tpl.txt\nverbalizer: prompts/v.txt\nunlabeled: unlabeled.tsv\n")
TEMPLATES = ('{"placeholder": "text_a"} It was {"mask"}.\n'
             '{"placeholder": "text_a"} All in all , {"mask"} .\n'
             '{"placeholder": "text_a"} A review .\n')  # no mask: `patterns: all` must skip it
# Label words the tiny random model, untrained, ranks either way round on these texts (many pairs, "bad, terrible"
# against "good, great" among them, it ranks the same way for every input): a generation whose models all predict
# one class cannot label pool examples of the other for iPET.
VERBALIZER = "boring\ngreat\n"


def _rows(n: int, offset: int = 0) -> list[tuple[str, str]]:
    """n labelled rows, alternating neg/pos, with varied wording."""
    out = []
    for i in range(offset, offset + n):
        words = (NEG, POS)[i % 2]
        out.append((f"{SUBJECTS[i % len(SUBJECTS)]} {words[(i // 2) % len(words)]}", ("neg", "pos")[i % 2]))
    return out


def _tsv(rows) -> str:
    return "text\tlabel\n" + "".join(f"{t}\t{y}\n" for t, y in rows)


UNLABELED_ROWS = 30
FILES = {
    "task.yaml": TASK,
    "train.tsv": _tsv(_rows(16)),  # 8 per class: shots 2 (train + dev) and shots 4 both fit
    "test.tsv": _tsv(_rows(8, offset=3)),
    "prompts/tpl.txt": TEMPLATES,
    "prompts/v.txt": VERBALIZER,
    # an extra column is fine; the text field must be there
    "unlabeled.tsv": "note\ttext\n" + "".join(f"u{i}\t{t} and {s2}\n" for i, ((t, _), (s2, _)) in
                                             enumerate(zip(_rows(UNLABELED_ROWS, 1), _rows(UNLABELED_ROWS, 7)))),
}


def write_task(folder: Path, **replace: str | None) -> Path:
    files = {**FILES, **replace}
    for name, text in files.items():
        if text is None:
            continue
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text, encoding="utf-8")
    return folder / "task.yaml"


def save_tiny(folder: Path, tiny_mlm) -> Path:
    tiny_mlm.model.save_pretrained(folder)
    tiny_mlm.tokenizer.save_pretrained(folder)
    return folder


TINY = ["--max-steps", "2", "--eval-every", "2", "--eval-limit", "8", "--no-progress",
        "--option", "distill_steps=2", "--option", "distill_batch_size=8"]


# ---- helpers ------------------------------------------------------------------------------------------------------

@contextlib.contextmanager
def isolated(root: Path):
    """A module fixture's own working folder and MLflow store (the autouse fixture is per test)."""
    uri = f"sqlite:///{root / 'mlflow.db'}"
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        mp.setenv("MLFLOW_TRACKING_URI", uri)
        if "WORKBENCH_DATA_DIR" not in os.environ and SHARED_DATA.exists():
            mp.setenv("WORKBENCH_DATA_DIR", str(SHARED_DATA))
        mlflow.set_tracking_uri(uri)
        yield uri


def cli(argv: list[str]) -> tuple[int, str, str]:
    """`workbench ...` in-process: (exit code, stdout, stderr)."""
    from workbench.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


def run_id_of(stdout: str) -> str:
    last = stdout.strip().splitlines()[-1]
    assert last.startswith("MLflow run id: "), stdout
    return last.split()[-1]


def members(client, parent_id: str) -> list:
    """The nested runs of a parent, oldest first."""
    exp = client.get_run(parent_id).info.experiment_id
    runs = client.search_runs([exp], f"tags.mlflow.parentRunId = '{parent_id}'", max_results=1000)
    return sorted(runs, key=lambda r: r.info.start_time)


def artifact_json(client, run_id: str, name: str, into: Path):
    into.mkdir(parents=True, exist_ok=True)
    return json.loads(Path(client.download_artifacts(run_id, name, str(into))).read_text())


def table_rows(data) -> list[dict]:
    """An MLflow table artifact (split orient: columns + data) as rows."""
    return [dict(zip(data["columns"], row)) for row in data["data"]]


def artifacts(client, run_id: str, path: str | None = None) -> set[str]:
    return {a.path for a in client.list_artifacts(run_id, path)}


# ---- 1. a user task defined only by YAML, through pet and then ipet on the command line ------------------------

@pytest.fixture(scope="module")
def yaml_jobs(tmp_path_factory, tiny_mlm):
    """`workbench train --method pet`, then `--method ipet --option generations=2` with the same settings, on a task
    that exists only as a YAML file and its data files."""
    root = tmp_path_factory.mktemp("yaml_jobs")
    write_task(root)
    folder = save_tiny(root / "tiny-bert", tiny_mlm)
    base = ["train", "--task", "task.yaml", "--model", str(folder), "--shots", "2", *TINY,
            "--option", "unlabeled=20"]
    with isolated(root) as uri:
        pet = cli(base + ["--method", "pet"])
        ipet = cli(base + ["--method", "ipet", "--option", "generations=2"])
    return SimpleNamespace(root=root, uri=uri, pet=pet, ipet=ipet, client=mlflow.MlflowClient(uri))


@pytest.mark.parametrize("method", ["pet", "ipet"])
def test_yaml_task_runs_on_the_cli_with_one_nested_run_per_pattern_and_generation(yaml_jobs, method):
    code, out, err = getattr(yaml_jobs, method)
    assert code == 0, err
    client = yaml_jobs.client
    parent = client.get_run(run_id_of(out))
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["kind"] == "run" and parent.data.tags["method"] == method
    assert parent.data.tags["task"] == "tinypet"
    gens = 2 if method == "ipet" else 1
    # `patterns: all` = the templates with a mask (0 and 1), not the maskless one (2)
    assert "2 PVP(s) x 1 repetition(s) = 2 models" in err
    nested = members(client, parent.info.run_id)
    assert all(r.data.tags["kind"] == "pet-member" for r in nested)
    assert all(r.data.tags["mlflow.parentRunId"] == parent.info.run_id for r in nested)
    assert all(r.info.status == "FINISHED" for r in nested)
    assert sorted((r.data.tags["generation"], r.data.tags["template_id"]) for r in nested) == \
        [(str(g), str(t)) for g in range(gens) for t in (0, 1)]
    # the reported number is the distilled classifier's, saved as the run's method (so `predict` can use it)
    assert 0 <= parent.data.metrics["test/accuracy"] <= 1 and parent.data.metrics["test/rows"] == 8
    assert {"config.yaml", "split_ids.json", "pool_ids.json", "predictions.csv", "method"} <= \
        artifacts(client, parent.info.run_id)
    saved = artifact_json(client, parent.info.run_id, "method/run_config.json", yaml_jobs.root / f"saved-{method}")
    assert saved["method"]["name"] == "finetune" and saved["train"]["max_steps"] == 2  # distill_steps


@pytest.mark.parametrize("method", ["pet", "ipet"])
def test_yaml_task_pool_comes_from_its_unlabeled_file_never_from_the_evaluation_split(yaml_jobs, method, tmp_path):
    from workbench.data import get_task

    code, out, err = getattr(yaml_jobs, method)
    assert code == 0, err
    run_id = run_id_of(out)
    pool = artifact_json(yaml_jobs.client, run_id, "pool_ids.json", tmp_path)
    assert len(pool) == 20 == len(set(pool))  # --option unlabeled=20 of the file's 30 rows
    assert all(re.fullmatch(r"unlabeled-\d+", g) and int(g.split("-")[1]) < UNLABELED_ROWS for g in pool), pool
    task = get_task(str(yaml_jobs.root / "task.yaml"))
    evaluated = {e.guid for e in task.load_split("test")}
    labelled = artifact_json(yaml_jobs.client, run_id, "split_ids.json", tmp_path / "split")
    assert not set(pool) & (evaluated | set(labelled["train"]) | set(labelled["dev"]))
    assert f"20 unlabelled examples from {yaml_jobs.root / 'unlabeled.tsv'}" in err


def test_yaml_task_ipet_generation_1_members_log_their_training_sets(yaml_jobs, tmp_path):
    client = yaml_jobs.client
    parent = run_id_of(yaml_jobs.ipet[1])
    pool = set(artifact_json(client, parent, "pool_ids.json", tmp_path))
    nested = members(client, parent)
    gen1 = [r for r in nested if r.data.tags["generation"] == "1"]
    assert len(gen1) == 2
    for r in gen1:
        rows = table_rows(artifact_json(client, r.info.run_id, "ipet_training_set.json", tmp_path / r.info.run_id))
        # shots 2 = 4 labelled; scale 5: 4 * 5 - 4 = 16 pool examples, in the shots' proportions (8 per class)
        assert len(rows) == 16 and Counter(x["label"] for x in rows) == {"neg": 8, "pos": 8}
        assert {x["guid"] for x in rows} <= pool and all(x["text"] for x in rows)
        assert r.data.params["train_examples"] == "20"
    for r in nested:
        if r.data.tags["generation"] == "0":
            assert "ipet_training_set.json" not in artifacts(client, r.info.run_id)


def test_ipet_after_pet_with_the_same_settings_reuses_the_pet_jobs_generation_0(yaml_jobs):
    """A `pet` and an `ipet` job share generation 0: the second reads the first's scores back, trains nothing."""
    client = yaml_jobs.client
    pet_parent, ipet_parent = run_id_of(yaml_jobs.pet[1]), run_id_of(yaml_jobs.ipet[1])
    assert pet_parent != ipet_parent
    trained = {r.data.tags["member"]: r.info.run_id for r in members(client, pet_parent)}
    assert all("reused_from" not in r.data.tags for r in members(client, pet_parent))
    for r in members(client, ipet_parent):
        if r.data.tags["generation"] == "0":
            assert r.data.tags.get("reused_from") == trained[r.data.tags["member"]], r.data.tags
            assert "train/loss" not in r.data.metrics  # not trained again
        else:
            assert "reused_from" not in r.data.tags and "train/loss" in r.data.metrics


# ---- 2, 3, 5. sst2: the pool from the training split, iPET's training sets, predict on the distilled model -------

@pytest.fixture(scope="module")
def sst2_ipet(tmp_path_factory, tiny_mlm):
    import workbench as wb

    root = tmp_path_factory.mktemp("sst2_ipet")
    folder = save_tiny(root / "tiny-bert", tiny_mlm)
    verbalizer = root / "v.txt"
    verbalizer.write_text(VERBALIZER)
    with isolated(root) as uri:
        cfg = wb.RunConfig(task="sst2", model=str(folder), shots=4,
                           method={"name": "ipet", "unlabeled": 40, "generations": 2, "patterns": "0,1",
                                   "distill_steps": 2, "distill_batch_size": 8},
                           prompt={"verbalizer": str(verbalizer)}, train={"max_steps": 2, "eval_every": 2},
                           eval={"limit": 16}, tracking={"progress": False, "uri": uri})
        lines: list[str] = []
        result = wb.train(cfg, log=lines.append)
    return SimpleNamespace(root=root, uri=uri, result=result, lines=lines, client=mlflow.MlflowClient(uri))


@requires_data("sst2")
def test_pool_from_the_training_split_excludes_every_labelled_shot(sst2_ipet, tmp_path):
    from workbench.data import get_task

    client, run_id = sst2_ipet.client, sst2_ipet.result.run_id
    pool = artifact_json(client, run_id, "pool_ids.json", tmp_path)
    split = artifact_json(client, run_id, "split_ids.json", tmp_path / "split")
    assert len(split["train"]) == 8 and len(split["dev"]) == 8
    assert len(pool) == 40 == len(set(pool))  # --option unlabeled=40
    assert not set(pool) & (set(split["train"]) | set(split["dev"]))
    train_ids = {e.guid for e in get_task("sst2").load_split("train")}
    assert set(pool) <= train_ids  # the training split, not the evaluation split
    params = client.get_run(run_id).data.params
    assert params["runtime.pool_size"] == "40" and "training split minus 16 labelled shots" in \
        params["runtime.pool_source"]


def test_pool_from_a_small_training_split_is_every_row_but_the_labelled_shots(tmp_path):
    """With a pool option larger than what is left, the pool is exactly the training rows that are not shots."""
    from workbench.runs import RunConfig
    from workbench.data import get_task
    from workbench.recipes.pet import plan

    task_file = write_task(tmp_path, **{"task.yaml": TASK.replace("unlabeled: unlabeled.tsv\n", "")})
    job = plan(RunConfig(task=str(task_file), model="unused", shots=2, method={"name": "pet", "unlabeled": 1000}))
    train = {e.guid for e in get_task(str(task_file)).load_split("train")}
    labelled = {e.guid for e in (*job.split.train, *job.split.dev)}
    assert len(labelled) == 8
    pool = [e.guid for e in job.pool]
    assert len(pool) == len(set(pool)) == 16 - 8 and set(pool) == train - labelled
    assert all(e.label >= 0 for e in job.pool)  # its gold labels are kept (iPET reports how often it is right)
    job = plan(RunConfig(task=str(task_file), model="unused", shots=2, method={"name": "pet", "unlabeled": 3}))
    assert len(job.pool) == 3 and not {e.guid for e in job.pool} & labelled


@requires_data("sst2")
def test_ipet_training_sets_grow_by_the_scale_and_keep_the_shots_label_balance(sst2_ipet, tmp_path):
    client, run_id = sst2_ipet.client, sst2_ipet.result.run_id
    pool = set(artifact_json(client, run_id, "pool_ids.json", tmp_path))
    gen1 = [r for r in members(client, run_id) if r.data.tags["generation"] == "1"]
    assert sorted(r.data.tags["template_id"] for r in gen1) == ["0", "1"]
    for r in gen1:
        rows = table_rows(artifact_json(client, r.info.run_id, "ipet_training_set.json", tmp_path / r.info.run_id))
        # shots 4 = 8 labelled (4 per class); scale 5: 8 * 5 - 8 = 32 new examples, 16 per class
        assert len(rows) == 32
        assert Counter(x["label"] for x in rows) == {"negative": 16, "positive": 16}
        assert {x["guid"] for x in rows} <= pool
        assert r.data.params["train_examples"] == "40"
    # the pool came from the training split, so how often the new labels are right is measured
    assert 0 <= client.get_run(run_id).data.metrics["ipet/label_accuracy"] <= 1


@requires_data("sst2")
def test_predict_on_a_pet_run_uses_the_distilled_classifier(sst2_ipet, tmp_path, capsys):
    from workbench.cli import main
    from workbench.data import get_task

    client, run_id = sst2_ipet.client, sst2_ipet.result.run_id
    saved = artifact_json(client, run_id, "method/run_config.json", tmp_path / "saved")
    assert saved["method"]["name"] == "finetune"
    logged = list(csv.DictReader(Path(client.download_artifacts(run_id, "predictions.csv", str(tmp_path)))
                                 .read_text().splitlines()))
    assert len(logged) == 16
    rows = get_task("sst2").load_split("test")[:16]
    inp = tmp_path / "rows.tsv"
    inp.write_text("sentence\n" + "".join(r.fields["sentence"] + "\n" for r in rows))
    out = tmp_path / "out.tsv"
    assert main(["predict", "--run", run_id, "--input", str(inp), "--out", str(out),
                 "--tracking-uri", sst2_ipet.uri]) == 0, capsys.readouterr().err
    again = list(csv.DictReader(out.read_text().splitlines(), delimiter="\t"))
    assert len(again) == 16
    for a, b in zip(again, logged):
        p = float(a["p_negative"]) + float(a["p_positive"])
        assert abs(p - 1) < 1e-4
        assert a["prediction"] == b["prediction"]
        margin = float(b["score_positive"]) - float(b["score_negative"])  # the run's own scores of the row
        assert abs(float(a["p_positive"]) - 1 / (1 + math.exp(-margin))) < 1e-3


# ---- 4. resume: a job stopped after generation 0 is resumed, its finished members not trained again -------------

class Stop(Exception):
    pass


@pytest.fixture(scope="module")
def resumed(tmp_path_factory, tiny_mlm):
    import workbench as wb
    import workbench.training

    root = tmp_path_factory.mktemp("resume")
    task_file = write_task(root)
    folder = save_tiny(root / "tiny-bert", tiny_mlm)
    with isolated(root) as uri:
        cfg = wb.RunConfig(task=str(task_file), model=str(folder), shots=2,
                           method={"name": "ipet", "unlabeled": 20, "generations": 2, "distill_steps": 2,
                                   "distill_batch_size": 8},
                           train={"max_steps": 2, "eval_every": 2}, eval={"limit": 8},
                           tracking={"progress": False, "uri": uri})
        started: list[str] = []
        evals: list[int] = []

        def stop(generation, accuracy):
            evals.append(generation)
            raise Stop(f"stopped at generation {generation}")

        with pytest.raises(Stop):
            wb.train(cfg, on_eval=stop, on_start=started.append)
        first_status = mlflow.MlflowClient(uri).get_run(started[0]).info.status
        first_members = members(mlflow.MlflowClient(uri), started[0])

        calls = []
        real = workbench.training.train
        lines: list[str] = []

        def counting(model, train_set, *args, **kwargs):
            calls.append(len(train_set))
            return real(model, train_set, *args, **kwargs)

        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(workbench.training, "train", counting)
            result = wb.train(cfg, on_start=started.append, log=lines.append)
    return SimpleNamespace(uri=uri, client=mlflow.MlflowClient(uri), started=started, evals=evals,
                           first_status=first_status, first_members=first_members, calls=calls, result=result,
                           lines=lines)


def test_a_stopped_ipet_job_resumes_in_the_same_run_without_retraining_finished_members(resumed):
    client = resumed.client
    parent = resumed.started[0]
    assert resumed.evals == [0]  # stopped once generation 0's ensemble was scored
    assert resumed.first_status == "FAILED"
    assert [r.data.tags["generation"] for r in resumed.first_members] == ["0", "0"]
    assert all(r.info.status == "FINISHED" for r in resumed.first_members)
    # the second attempt reopens the same parent run and finishes it
    assert resumed.started == [parent, parent] and resumed.result.run_id == parent
    assert any(line.startswith(f"resuming run {parent}") for line in resumed.lines), resumed.lines
    assert client.get_run(parent).info.status == "FINISHED"
    first = {r.data.tags["member"]: r.info.run_id for r in resumed.first_members}
    second = [r for r in members(client, parent) if r.info.run_id not in first.values()]
    assert sorted((r.data.tags["generation"], r.data.tags["template_id"]) for r in second) == \
        [("0", "0"), ("0", "1"), ("1", "0"), ("1", "1")]
    for r in second:
        if r.data.tags["generation"] == "0":
            assert r.data.tags.get("reused_from") == first[r.data.tags["member"]]
        else:
            assert "reused_from" not in r.data.tags and "ipet_training_set.json" in artifacts(client, r.info.run_id)
    # trained in the second attempt: the two generation-1 members (4 shots + 16 pool rows) and the distillation
    assert resumed.calls == [20, 20, 20]
    assert 0 <= resumed.result.test_accuracy <= 1
    assert "predictions.csv" in artifacts(client, parent)


def test_a_resumed_run_that_finishes_carries_no_error_of_the_attempt_before(resumed):
    run = resumed.client.get_run(resumed.started[0])
    assert run.info.status == "FINISHED"
    assert "error" not in run.data.tags, run.data.tags.get("error")


def test_a_parent_run_still_running_in_a_live_process_is_not_resumed():
    """Only a run that ended (failed, killed, or RUNNING with its process gone) is one to resume."""
    from workbench.recipes.pet import unfinished_parent
    from workbench.tracking import RunTracker

    uri = os.environ["MLFLOW_TRACKING_URI"]
    tags = {"kind": "run", "method": "pet", "config_hash": "abc123abc123"}
    with RunTracker("tinypet", "pet-tinypet-k2-s13-abc123", uri, tags=tags) as live:  # this process: alive
        assert mlflow.MlflowClient(uri).get_run(live.run_id).info.status == "RUNNING"
        assert unfinished_parent("tinypet", uri, "abc123abc123", "pet") is None


# ---- 6. zero-shot -------------------------------------------------------------------------------------------------

def test_zero_shot_ipet_runs_and_reports_a_test_accuracy(tiny_mlm_dir, tmp_path):
    folder, _ = tiny_mlm_dir
    write_task(tmp_path)
    code, out, err = cli(["train", "--method", "ipet", "--task", "task.yaml", "--model", str(folder), "--shots", "0",
                          *TINY, "--option", "unlabeled=20", "--option", "generations=2",
                          "--option", "most_likely=5"])
    assert code == 0, err
    assert "no labelled shots (mean ensemble)" in err
    match = re.search(r"accuracy on all 8 test rows: ([0-9.]+)", out)
    assert match, out
    client = mlflow.MlflowClient()
    run_id = run_id_of(out)
    run = client.get_run(run_id)
    assert run.data.tags["shots"] == "0" and run.data.params["runtime.reduction"] == "mean"
    assert abs(run.data.metrics["test/accuracy"] - float(match.group(1))) < 1e-4
    nested = members(client, run_id)
    assert sorted(r.data.tags["generation"] for r in nested) == ["0", "0", "1", "1"]
    for r in nested:
        if r.data.tags["generation"] == "0":
            assert "train/loss" not in r.data.metrics  # nothing to train on: the patterns score as they are
        else:  # most_likely=5: the 5 pool examples most likely for each class
            rows = table_rows(artifact_json(client, r.info.run_id, "ipet_training_set.json", tmp_path / r.info.run_id))
            assert Counter(x["label"] for x in rows) == {"neg": 5, "pos": 5}
            assert "train/loss" in r.data.metrics


BAD_TASK_FILES = {"task.yaml": TASK, **{k: v for k, v in FILES.items() if k != "task.yaml"}}
PET_ARGV = ["train", "--task", "task.yaml", "--model", "no-such-model-folder", "--max-steps", "1", "--no-progress"]

BAD = [
    Case("zero-shots-prompt-finetune", PET_ARGV + ["--method", "prompt-finetune", "--shots", "0"],
         ["--shots", "0 leaves method 'prompt-finetune' nothing to train on", "pet, ipet"], BAD_TASK_FILES),
    Case("zero-shots-wmean", PET_ARGV + ["--method", "pet", "--shots", "0", "--option", "reduction=wmean"],
         ["method.reduction", "shots: 0"], BAD_TASK_FILES),
    Case("unlabeled-header-lacks-text-field", PET_ARGV + ["--method", "pet", "--shots", "2"],
         ["unlabeled.tsv", "line 1", "no column 'text'"],
         {**BAD_TASK_FILES, "unlabeled.tsv": "sentence\nthe movie was fun\nthe plot is dull\n"}),
    Case("patterns-id-not-in-template-file",
         PET_ARGV + ["--method", "pet", "--shots", "2", "--option", "patterns=0,9"],
         ["method.patterns", "tpl.txt", "no template with id 9"], BAD_TASK_FILES),
    Case("pool-smaller-than-ipet-needs",
         PET_ARGV + ["--method", "ipet", "--shots", "4", "--option", "generations=2", "--option", "unlabeled=10"],
         ["method.unlabeled", "32 pool examples", "the pool has 10", "unlabeled.tsv"], BAD_TASK_FILES),
    Case("ipet-one-pattern-one-repetition",
         PET_ARGV + ["--method", "ipet", "--shots", "2", "--option", "patterns=0"],
         ["method.patterns", "one model", "repetitions=2"], BAD_TASK_FILES),
    Case("patterns-all-but-no-template-has-a-mask", PET_ARGV + ["--method", "pet", "--shots", "2"],
         ["method.patterns", "tpl.txt", "mask"],
         {**BAD_TASK_FILES, "prompts/tpl.txt": '{"placeholder": "text_a"} A review .\n'}),
]


def test_zero_shots_refused_for_prompt_finetune_from_python(tiny_mlm_dir, monkeypatch):
    from bad_inputs import forbid_model_loading

    import workbench as wb
    from workbench.errors import ConfigError

    folder, _ = tiny_mlm_dir
    write_task(Path.cwd())
    forbid_model_loading(monkeypatch)
    with pytest.raises(ConfigError, match="shots: 0 leaves method 'prompt-finetune' nothing to train on") as e:
        wb.train(wb.RunConfig(task="task.yaml", model=str(folder), shots=0, method="prompt-finetune"))
    assert e.value.field == "shots"
    with pytest.raises(ConfigError, match="method.reduction") as e:
        wb.train(wb.RunConfig(task="task.yaml", model=str(folder), shots=0,
                              method={"name": "ipet", "reduction": "wmean"}))
    assert e.value.field == "method.reduction"
    assert no_runs_in_store()  # refused before a run was started


@pytest.mark.parametrize("case", [c.param() for c in BAD])
def test_bad_pet_input_is_refused_in_one_line_before_a_model_loads(case, tmp_path, monkeypatch, capsys):
    run_case(case, tmp_path, monkeypatch, capsys)
    assert no_runs_in_store(tmp_path)  # no run was started
