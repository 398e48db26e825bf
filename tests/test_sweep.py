"""`workbench sweep` on a tiny local model: search spaces, the MLflow layout, pruning, failures, bad input."""

from __future__ import annotations

import mlflow
import optuna
import pytest
from optuna.trial import TrialState

from workbench.errors import ConfigError, WorkbenchError
from workbench.sweeps import SweepConfig, load_space, run_sweep
from workbench.sweeps.cli import main
from workbench.sweeps.space import parse_override

from conftest import requires_data

FIXED_METRICS = {"train/loss", "eval/accuracy", "test/accuracy", "trainable_params", "trainable_fraction",
                 "train/seconds", "train/examples_per_s", "peak_mem_mb"}


def sweep_cfg(tmp_path, tiny_mlm_dir, **kw) -> SweepConfig:
    folder, verbalizer = tiny_mlm_dir
    base = dict(task="sst2", method="prompt-finetune", model=str(folder), shots=4, trials=3,
                storage=f"sqlite:///{tmp_path / 'optuna.db'}",
                run_overrides={"max_steps": 4, "eval_every": 2, "eval_limit": 16, "template_id": 1,
                               "verbalizer_file": str(verbalizer)})
    return SweepConfig(**{**base, **kw})


def trial_runs(parent_id: str):
    return mlflow.search_runs(search_all_experiments=True, filter_string=f"tags.mlflow.parentRunId = '{parent_id}'",
                              output_format="list")


# --- search spaces --------------------------------------------------------------------------------------------


def test_every_shipped_space_names_only_fields_and_options():
    from workbench.adaptation import METHODS

    for name in METHODS:
        space = load_space(name)  # raises on a name the method does not have
        assert all(p.target in ("run", "option") for p in space.params)


def test_space_overrides_and_errors(tmp_path):
    assert parse_override("lr=1e-5..1e-3:log") == ("lr", {"low": 1e-5, "high": 1e-3, "log": True})
    assert parse_override("prompt_encoder=lstm|mlp") == ("prompt_encoder", {"choices": ["lstm", "mlp"]})
    assert parse_override("warmup_ratio=0.1") == ("warmup_ratio", 0.1)
    space = load_space("finetune", overrides=["dropout=0.2", "batch_size=", "lr=1e-5..1e-4:log"])
    by_name = {p.name: p for p in space.params}
    assert by_name["dropout"].fixed and by_name["dropout"].value == 0.2 and "batch_size" not in by_name
    assert by_name["lr"].log and by_name["lr"].target == "run" and by_name["dropout"].target == "option"
    bad = tmp_path / "space.yaml"
    bad.write_text("params:\n  lr: {low: 1.0e-5, high: 1.0e-3}\n  num_soft: {low: 2, high: 8}\n")
    with pytest.raises(ConfigError, match=rf"{bad}: parameter 'num_soft' is neither a run field .* method 'finetune'"):
        load_space("finetune", bad)
    with pytest.raises(ConfigError, match="needs numbers low <= high"):
        load_space("finetune", overrides=["lr=1e-3..1e-5"])


# --- bad input: one line, exit 2, nothing started ---------------------------------------------------------------


@requires_data("sst2")
@pytest.mark.parametrize("extra, message", [
    (["--method", "nope"], "unknown method 'nope'"),
    (["--task", "nope"], "unknown task 'nope'"),
    (["--param", "num_soft=2..8"], "parameter 'num_soft' is neither a run field"),
    (["--param", "dropout=lstm|mlp"], "method 'finetune'"),
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
        assert optuna.get_all_study_summaries(f"sqlite:///{storage}") == [] or all(
            s.n_trials == 0 for s in optuna.get_all_study_summaries(f"sqlite:///{storage}"))
    assert mlflow.search_runs(search_all_experiments=True).empty


# --- a sweep in MLflow ------------------------------------------------------------------------------------------


@requires_data("sst2")
def test_sweep_parent_and_nested_runs(tmp_path, tiny_mlm_dir):
    result = run_sweep(sweep_cfg(tmp_path, tiny_mlm_dir, trials=3), log=lambda s: None)
    assert (result.n_complete, result.n_failed) == (3, 0)
    client = mlflow.MlflowClient()
    parent = client.get_run(result.parent_run_id)
    assert parent.info.status == "FINISHED" and parent.data.tags["sweep"] == "true"
    assert parent.data.metrics["eval/accuracy"] == pytest.approx(result.best_value)
    assert parent.data.tags["best.lr"] == str(result.best_params["lr"])
    assert parent.data.tags["best.run_id"] == result.best_run_id
    artifacts = {a.path for a in client.list_artifacts(result.parent_run_id, "optuna")}
    assert "optuna/optimization_history.png" in artifacts
    assert {"optuna/param_importances.png", "optuna/param_importances.txt"} & artifacts
    runs = trial_runs(result.parent_run_id)
    assert len(runs) == 3
    for r in runs:
        assert FIXED_METRICS <= set(r.data.metrics)
        assert r.data.tags["optuna.state"] == "COMPLETE" and r.data.tags["optuna.study"] == result.study_name
        assert float(r.data.params["lr"]) > 0
        steps = [m.step for m in client.get_metric_history(r.info.run_id, "eval/accuracy")]
        assert steps[:2] == [2, 4]  # the learning curve, then the final dev accuracy
    assert result.best_run_id in {r.info.run_id for r in runs}


@requires_data("sst2")
def test_existing_study_needs_resume_and_same_settings(tmp_path, tiny_mlm_dir):
    run_sweep(sweep_cfg(tmp_path, tiny_mlm_dir, trials=1), log=lambda s: None)
    with pytest.raises(WorkbenchError, match="already holds 1 trial.*--resume"):
        run_sweep(sweep_cfg(tmp_path, tiny_mlm_dir, trials=2), log=lambda s: None)
    other = sweep_cfg(tmp_path, tiny_mlm_dir, trials=2, resume=True)
    other.run_overrides = {**other.run_overrides, "max_steps": 5}
    with pytest.raises(ConfigError, match=r"other settings .*'max_steps': \(4, 5\)"):
        run_sweep(other, log=lambda s: None)
    result = run_sweep(sweep_cfg(tmp_path, tiny_mlm_dir, trials=2, resume=True), log=lambda s: None)
    assert result.n_complete == 2
    assert len(trial_runs(result.parent_run_id)) == 2  # the resumed sweep kept its parent run


@requires_data("sst2")
def test_pruned_trial_counts_and_is_labelled(tmp_path, tiny_mlm_dir, monkeypatch):
    from workbench.sweeps import study as study_mod

    monkeypatch.setattr(study_mod, "_make_pruner", lambda name: optuna.pruners.ThresholdPruner(lower=2.0))
    result = run_sweep(sweep_cfg(tmp_path, tiny_mlm_dir, trials=2), log=lambda s: None)
    assert (result.n_pruned, result.n_complete, result.best_value) == (2, 0, None)
    for r in trial_runs(result.parent_run_id):
        assert r.info.status == "KILLED" and r.data.tags["pruned"] == "true" and "error" not in r.data.tags
        assert r.data.tags["optuna.state"] == "PRUNED"


@requires_data("sst2")
def test_failed_trial_is_recorded_and_the_study_goes_on(tmp_path, tiny_mlm_dir, monkeypatch):
    import workbench.recipes.train as train_mod

    real_run, calls = train_mod.run, []

    def flaky(cfg, **kw):
        calls.append(cfg)
        if len(calls) == 2:
            raise RuntimeError("simulated crash in one trial")
        return real_run(cfg, **kw)

    monkeypatch.setattr(train_mod, "run", flaky)
    result = run_sweep(sweep_cfg(tmp_path, tiny_mlm_dir, trials=2), log=lambda s: None)
    assert (result.n_complete, result.n_failed) == (2, 1)
    study = optuna.load_study(study_name=result.study_name, storage=f"sqlite:///{tmp_path / 'optuna.db'}")
    failed = [t for t in study.trials if t.state == TrialState.FAIL]
    assert failed[0].number == 1 and failed[0].user_attrs["error"] == "RuntimeError: simulated crash in one trial"


@requires_data("sst2")
def test_trials_that_always_fail_stop_the_sweep(tmp_path, tiny_mlm_dir, capsys):
    folder, verbalizer = tiny_mlm_dir
    code = main(["sweep", "--method", "prompt-finetune", "--model", str(folder), "--shots", "4", "--max-steps", "2",
                 "--verbalizer-file", str(verbalizer), "--param", "template_id=99", "--max-failures", "2",
                 "--storage", f"sqlite:///{tmp_path / 'optuna.db'}", "--no-progress"])
    assert code == 2
    err = capsys.readouterr().err
    assert "2 trials in a row failed; last error: ConfigError:" in err and "no template with id 99" in err
