"""`workbench sweep` on a tiny local model: search spaces, the MLflow layout, pruning, failures, bad input."""

from __future__ import annotations

import mlflow
import optuna
import pytest
from optuna.trial import TrialState

from workbench.adaptation import all_methods, get_method
from workbench.cli import main
from workbench.config import Categorical, Float, SearchSpace, parse_param
from workbench.runs import RunConfig
from workbench.runs.config import resolve_path
from workbench.config.space import candidate_values
from workbench.errors import ConfigError, WorkbenchError
from workbench.recipes.sweep import SweepConfig, plan, search_space, sweep

from conftest import requires_data

FIXED_METRICS = {"train/loss", "eval/accuracy", "test/accuracy", "trainable_params", "trainable_fraction",
                 "train/seconds", "train/examples_per_s", "peak_mem_mb"}
SECTIONS = ("prompt", "train", "eval", "method")


def base_run(tiny_mlm_dir, method: str = "prompt-finetune", **kw) -> RunConfig:
    folder, verbalizer = tiny_mlm_dir
    base = dict(task="sst2", method=method, model=str(folder), shots=4,
                train={"max_steps": 4, "eval_every": 2}, eval={"limit": 16},
                prompt={"template_id": 1, "verbalizer": str(verbalizer)}, tracking={"progress": False})
    return RunConfig(**{**base, **kw})


def sweep_cfg(tmp_path, tiny_mlm_dir, run: RunConfig | None = None, **kw) -> SweepConfig:
    """The study only (`final_seeds=[]`): no final runs on the protocol seeds."""
    base = dict(run=run or base_run(tiny_mlm_dir), trials=3, storage=f"sqlite:///{tmp_path / 'optuna.db'}",
                final_seeds=[])
    return SweepConfig(**{**base, **kw})


def run_sweep(cfg: SweepConfig):
    return sweep(cfg, log=lambda s: None).study


def trial_runs(parent_id: str):
    return mlflow.search_runs(search_all_experiments=True, filter_string=f"tags.mlflow.parentRunId = '{parent_id}'",
                              output_format="list")


# --- search spaces --------------------------------------------------------------------------------------------


@requires_data("sst2")
def test_every_shipped_space_passes_the_sweep_plan(tiny_mlm_dir):
    for name in all_methods():
        p = plan(SweepConfig(run=base_run(tiny_mlm_dir, method=name), storage="sqlite:///optuna.db"))
        assert p.method.name == name and p.spec.space.params
        assert all(path.split(".")[0] in SECTIONS for path in p.spec.space.params)


def test_space_params_and_errors(tmp_path):
    assert parse_param("lr=1e-5..1e-3:log") == ("lr", Float(1e-5, 1e-3, log=True))
    assert parse_param("prompt_encoder=lstm|mlp") == ("prompt_encoder", Categorical(["lstm", "mlp"]))
    assert parse_param("warmup_ratio=0.1") == ("warmup_ratio", 0.1)
    assert parse_param("batch_size=") == ("batch_size", None)

    finetune = get_method("finetune")
    cfg = SweepConfig(run=RunConfig(method="finetune"),
                      params={"dropout": 0.2, "batch_size": None, "lr": "1e-5..1e-4:log"})
    space = search_space(cfg, finetune)  # short names resolved to dotted paths
    assert space.params["method.dropout"] == 0.2 and "method.dropout" in space.fixed()
    assert "train.batch_size" not in space.params
    assert space.params["train.lr"] == Float(1e-5, 1e-4, log=True) and "train.lr" in space.searched()
    assert space.params["train.warmup_ratio"] == finetune.space.params["train.warmup_ratio"]  # the rest is kept
    assert search_space(SweepConfig(run=RunConfig(method="finetune"), space=SearchSpace(
        {"train.lr": Float(1e-4, 1e-2, log=True), "train.warmup_ratio": 0.06})), finetune).params == {
        "train.lr": Float(1e-4, 1e-2, log=True), "train.warmup_ratio": 0.06}

    good = tmp_path / "good.yaml"
    good.write_text("params:\n  lr: {low: 1.0e-5, high: 1.0e-3, log: true}\n  method.dropout: {choices: [0.0, 0.2]}\n")
    space = search_space(SweepConfig(run=RunConfig(method="finetune"), space=str(good)), finetune)
    assert space.params == {"train.lr": Float(1e-5, 1e-3, log=True), "method.dropout": Categorical([0.0, 0.2])}

    bad = tmp_path / "space.yaml"
    bad.write_text("params:\n  lr: {low: 1.0e-5, high: 1.0e-3}\n  num_soft: {low: 2, high: 8}\n")
    with pytest.raises(ConfigError, match=rf"{bad}: 'num_soft' is not a config field") as err:
        search_space(SweepConfig(run=RunConfig(method="finetune"), space=str(bad)), finetune)
    assert "\n" not in str(err.value)
    with pytest.raises(ConfigError, match="needs low <= high"):
        search_space(SweepConfig(run=RunConfig(method="finetune"), params={"lr": "1e-3..1e-5"}), finetune)


# --- the study machinery on its own: any objective, no training -------------------------------------------------


def test_run_study_takes_any_objective_and_never_imports_the_recipes(tmp_path):
    import subprocess
    import sys

    from workbench.sweeps import StudySpec, TrialOutcome, best_known, run_study
    from workbench.tracking import RunTracker, resolve_tracking_uri

    code = "import sys, workbench.sweeps; assert not [m for m in sys.modules if m.startswith('workbench.recipes')]"
    subprocess.run([sys.executable, "-c", code], check=True)

    uri = resolve_tracking_uri(None)
    seen = []

    def objective(params, trial):
        seen.append((trial.number, params))
        with RunTracker("toy", f"t{trial.number}", uri, nested=True) as run:
            trial.started(run.run_id)
            trial.report(1, 0.5)
        return TrialOutcome(1.0 - abs(params["train.lr"] - 0.01), run.run_id, {"test_accuracy": 0.5})

    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    spec = StudySpec(name="toy", space=SearchSpace({"train.lr": Float(1e-3, 1e-1, log=True)}),
                     protocol={"task": "toy"}, fixed={"train.max_steps": 7}, experiment="toy", tracking_uri=uri,
                     storage=storage, trials=3, pruner="none")
    result = run_study(spec, objective, log=lambda s: None)
    assert [n for n, _ in seen] == [0, 1, 2] and (result.n_complete, result.n_failed) == (3, 0)
    best_number, best_params = max(seen, key=lambda x: 1.0 - abs(x[1]["train.lr"] - 0.01))
    assert result.best_params == best_params
    assert trial_runs(result.parent_run_id)[0].data.tags["optuna.study"] == "toy"
    known = best_known("toy", storage)
    assert known.overrides == {"train.max_steps": 7, **best_params} and known.source == f"toy trial {best_number}"
    assert known.trials == 3
    assert best_known("no-such-study", storage) is None
    again = run_study(StudySpec(**{**spec.__dict__, "resume": True}), objective, log=lambda s: None)
    assert len(seen) == 3 and again.n_complete == 3  # the study already holds its trials: none is added


# --- bad input: one line, exit 2, nothing started ---------------------------------------------------------------


@requires_data("sst2")
@pytest.mark.parametrize("extra, message", [
    (["--method", "nope"], "unknown method 'nope'"),
    (["--task", "nope"], "unknown task 'nope'"),
    (["--param", "num_soft=2..8"], "'num_soft' is not a config field"),
    (["--param", "dropout=lstm|mlp"], "method.dropout (--option dropout=...): 'lstm' is not allowed"),
    (["--option", "dropout=2"], "method.dropout (--option dropout=...): 2 is not allowed"),
    (["--storage", "postgresql://user:secret@127.0.0.1:1/optuna"], "cannot open Optuna storage "
                                                                    "'postgresql://user:***@127.0.0.1:1/optuna'"),
    (["--storage", "sqlite:////no/such/folder/optuna.db"], "folder /no/such/folder does not exist"),
    (["--tracking-uri", "http://127.0.0.1:1"], "cannot use MLflow tracking URI 'http://127.0.0.1:1'"),
])
def test_bad_input_is_one_line_before_any_trial(tmp_path, tiny_mlm_dir, capsys, extra, message):
    folder, verbalizer = tiny_mlm_dir
    storage = tmp_path / "optuna.db"
    args = ["sweep", "--method", "finetune", "--model", str(folder), "--shots", "4", "--max-steps", "2",
            "--storage", f"sqlite:///{storage}", "--no-progress", *extra]
    assert main(args) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if " INFO " not in line]  # MLflow's own log lines
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0], err
    err = err[0]
    assert "secret" not in err
    if storage.exists():
        assert all(s.n_trials == 0 for s in optuna.get_all_study_summaries(f"sqlite:///{storage}"))
    assert mlflow.search_runs(search_all_experiments=True).empty


# --- a sweep in MLflow ------------------------------------------------------------------------------------------


@requires_data("sst2")
def test_sweep_parent_and_nested_runs(tmp_path, tiny_mlm_dir):
    result = sweep(sweep_cfg(tmp_path, tiny_mlm_dir, trials=3), log=lambda s: None)
    assert result.comparison is None and result.difference is None  # final_seeds=[]: the study only
    result = result.study
    assert (result.n_complete, result.n_failed) == (3, 0)
    assert set(result.best_params) == {"train.lr", "train.warmup_ratio", "train.batch_size"}  # dotted paths
    client = mlflow.MlflowClient()
    parent = client.get_run(result.parent_run_id)
    assert parent.info.status == "FINISHED" and parent.data.tags["sweep"] == "true"
    assert parent.data.metrics["eval/accuracy"] == pytest.approx(result.best_value)
    assert parent.data.tags["best.train.lr"] == str(result.best_params["train.lr"])
    assert parent.data.tags["best.run_id"] == result.best_run_id
    artifacts = {a.path for a in client.list_artifacts(result.parent_run_id, "optuna")}
    assert "optuna/optimization_history.png" in artifacts
    assert {"optuna/param_importances.png", "optuna/param_importances.txt"} & artifacts
    runs = trial_runs(result.parent_run_id)
    assert len(runs) == 3
    for r in runs:
        assert FIXED_METRICS <= set(r.data.metrics)
        assert r.data.tags["optuna.state"] == "COMPLETE" and r.data.tags["optuna.study"] == result.study_name
        assert float(r.data.params["train.lr"]) > 0 and r.data.params["method.name"] == "prompt-finetune"
        assert r.data.params["eval.limit"] == "16" and r.data.params["train.max_steps"] == "4"
        steps = [m.step for m in client.get_metric_history(r.info.run_id, "eval/accuracy")]
        assert steps[:2] == [2, 4]  # the learning curve, then the final dev accuracy
    assert result.best_run_id in {r.info.run_id for r in runs}
    best = client.get_run(result.best_run_id)
    assert float(best.data.params["train.lr"]) == pytest.approx(result.best_params["train.lr"])


@requires_data("sst2")
def test_trial_eval_limit_applies_when_the_run_sets_none(tmp_path, tiny_mlm_dir):
    run = base_run(tiny_mlm_dir, eval={"limit": None})
    result = run_sweep(sweep_cfg(tmp_path, tiny_mlm_dir, run=run, trials=1, trial_eval_limit=8, pruner="none"))
    (r,) = trial_runs(result.parent_run_id)
    assert r.data.params["eval.limit"] == "8" and r.data.metrics["test/rows"] == 8


@pytest.mark.heavy
@requires_data("sst2")
def test_existing_study_needs_resume_and_same_settings(tmp_path, tiny_mlm_dir):
    run_sweep(sweep_cfg(tmp_path, tiny_mlm_dir, trials=1))
    with pytest.raises(WorkbenchError, match="already holds 1 trial.*--resume"):
        run_sweep(sweep_cfg(tmp_path, tiny_mlm_dir, trials=2))
    other = sweep_cfg(tmp_path, tiny_mlm_dir, trials=2, resume=True,
                      run=base_run(tiny_mlm_dir).with_overrides({"train.max_steps": 5}))
    with pytest.raises(ConfigError, match=r"other settings .*'train.max_steps': \(4, 5\)"):
        run_sweep(other)
    result = run_sweep(sweep_cfg(tmp_path, tiny_mlm_dir, trials=2, resume=True))
    assert result.n_complete == 2
    assert len(trial_runs(result.parent_run_id)) == 2  # the resumed sweep kept its parent run


@requires_data("sst2")
def test_pruned_trial_counts_and_is_labelled(tmp_path, tiny_mlm_dir, monkeypatch):
    from workbench.sweeps import study as study_mod

    monkeypatch.setattr(study_mod, "_make_pruner", lambda name: optuna.pruners.ThresholdPruner(lower=2.0))
    result = run_sweep(sweep_cfg(tmp_path, tiny_mlm_dir, trials=2))
    assert (result.n_pruned, result.n_complete, result.best_value) == (2, 0, None)
    runs = trial_runs(result.parent_run_id)
    assert len(runs) == 2
    for r in runs:
        assert r.info.status == "KILLED" and r.data.tags["pruned"] == "true" and "error" not in r.data.tags
        assert r.data.tags["optuna.state"] == "PRUNED"


@requires_data("sst2")
def test_failed_trial_is_recorded_and_the_study_goes_on(tmp_path, tiny_mlm_dir, monkeypatch):
    import workbench.recipes.sweep as sweep_mod

    real_train, calls = sweep_mod.train, []

    def flaky(cfg, **kw):
        calls.append(cfg)
        if len(calls) == 2:
            raise RuntimeError("simulated crash in one trial")
        return real_train(cfg, **kw)

    monkeypatch.setattr(sweep_mod, "train", flaky)
    result = run_sweep(sweep_cfg(tmp_path, tiny_mlm_dir, trials=2))
    assert (result.n_complete, result.n_failed) == (2, 1)
    assert len(calls) == 3  # a failed trial is replaced: only finished trials count
    study = optuna.load_study(study_name=result.study_name, storage=f"sqlite:///{tmp_path / 'optuna.db'}")
    failed = [t for t in study.trials if t.state == TrialState.FAIL]
    assert failed[0].number == 1 and failed[0].user_attrs["error"] == "RuntimeError: simulated crash in one trial"


@requires_data("sst2")
def test_trials_that_always_fail_stop_the_sweep(tmp_path, tiny_mlm_dir, capsys, monkeypatch):
    import workbench.recipes.sweep as sweep_mod

    folder, verbalizer = tiny_mlm_dir
    argv = ["sweep", "--method", "prompt-finetune", "--model", str(folder), "--shots", "4", "--max-steps", "2",
            "--verbalizer-file", str(verbalizer), "--max-failures", "2", "--storage",
            f"sqlite:///{tmp_path / 'optuna.db'}", "--no-progress"]
    # A bad input the run's own checks see is refused once, before the first trial (no trial is started for it).
    assert main([*argv, "--param", "template_id=99"]) == 2
    err = capsys.readouterr().err
    assert "no template with id 99" in err and "trials in a row" not in err

    def failing(cfg, **kw):  # a failure only a trial meets (a crash while training)
        raise ConfigError("simulated failure inside a trial")

    monkeypatch.setattr(sweep_mod, "train", failing)
    code = main(argv)
    assert code == 2
    err = capsys.readouterr().err
    assert "2 trials in a row failed; last error: ConfigError:" in err and "simulated failure inside a trial" in err


@requires_data("sst2")
def test_sweep_then_final_comparison_with_the_baseline(tmp_path, tiny_mlm_dir):
    run = base_run(tiny_mlm_dir, train={"max_steps": 2, "eval_every": 1})
    result = sweep(sweep_cfg(tmp_path, tiny_mlm_dir, run=run, trials=1, pruner="none", final_seeds=[13, 21],
                             baseline="finetune"), log=lambda s: None)
    comparison = result.comparison
    assert [r.method for r in comparison.rows] == ["prompt-finetune", "finetune"]
    first = comparison.rows[0]
    assert first.source == f"sweep {result.study.study_name}" and first.seeds == [13, 21]
    assert first.overrides["train.lr"] == result.study.best_params["train.lr"]
    for run_id in first.run_ids:  # the final runs train with the best trial's values
        assert float(mlflow.get_run(run_id).data.params["train.lr"]) == pytest.approx(
            result.study.best_params["train.lr"])
    # equal effort: the baseline got a study of its own with as many trials, and the table says so
    assert first.trials == 1 and comparison.rows[1].trials == 1
    assert comparison.rows[1].source.startswith("sweep ") and not comparison.notes
    diff = result.difference
    assert diff.n == 2 and diff.mean == pytest.approx(comparison.rows[0].mean - comparison.rows[1].mean)
