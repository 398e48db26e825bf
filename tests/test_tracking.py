"""The MLflow run lifecycle in workbench.tracking: end states, nesting, re-opening, bad stores, names."""

from __future__ import annotations

import mlflow
import pytest

from workbench.errors import WorkbenchError
from workbench.tracking import (DEFAULT_TRACKING_URI, RunTracker, check_tracking_uri, flatten_params,
                                resolve_tracking_uri)


def get_run(run_id: str):
    return mlflow.MlflowClient().get_run(run_id)


def test_run_ends_finished_with_tags_params_and_artifacts():
    with RunTracker("exp", "ok", tags={"task": "sst2"}) as t:
        t.log_params({"lr": 0.001, "opts": {"rank": 8, "long": "x" * 900}})
        t.log_metrics({"train/loss": 1.5}, step=3)
        t.log_dict({"a": 1}, "d.json")
        t.log_text("hello", "notes.txt")
    run = get_run(t.run_id)
    assert run.info.status == "FINISHED" and run.info.run_name == "ok"
    assert run.data.tags["task"] == "sst2" and "git_commit" in run.data.tags and "python" in run.data.tags
    assert run.data.params["lr"] == "0.001" and run.data.params["opts.rank"] == "8"
    assert len(run.data.params["opts.long"]) == 500
    assert run.data.metrics["train/loss"] == 1.5
    assert {a.path for a in mlflow.MlflowClient().list_artifacts(t.run_id)} == {"d.json", "notes.txt"}
    assert mlflow.active_run() is None


def test_exception_ends_failed_with_error_tag_and_is_raised():
    with pytest.raises(ValueError, match="boom"):
        with RunTracker("exp", "bad") as t:
            raise ValueError("boom")
    run = get_run(t.run_id)
    assert run.info.status == "FAILED"
    assert run.data.tags["error"] == "ValueError: boom"
    assert mlflow.active_run() is None


def test_keyboard_interrupt_ends_killed():
    with pytest.raises(KeyboardInterrupt):
        with RunTracker("exp", "stopped") as t:
            raise KeyboardInterrupt
    run = get_run(t.run_id)
    assert run.info.status == "KILLED" and "error" not in run.data.tags
    assert mlflow.active_run() is None


def test_nests_under_an_active_run_only_when_there_is_one():
    with RunTracker("exp", "alone") as alone:
        pass
    assert "mlflow.parentRunId" not in get_run(alone.run_id).data.tags
    with RunTracker("exp", "parent") as parent:
        with RunTracker("exp", "child") as child:
            parent.log_metrics({"m": 1.0})  # by id: lands on the parent while the child is the active run
            child.log_metrics({"m": 2.0})
        assert mlflow.active_run().info.run_id == parent.run_id
    assert get_run(child.run_id).data.tags["mlflow.parentRunId"] == parent.run_id
    assert get_run(parent.run_id).data.metrics["m"] == 1.0
    assert get_run(child.run_id).data.metrics["m"] == 2.0
    assert get_run(parent.run_id).info.status == get_run(child.run_id).info.status == "FINISHED"


def test_nested_false_does_not_nest_and_nested_true_does():
    with RunTracker("exp", "parent") as parent:
        with RunTracker("exp", "child", nested=True) as child:
            pass
    assert get_run(child.run_id).data.tags["mlflow.parentRunId"] == parent.run_id
    with RunTracker("exp", "top", nested=False) as top:
        pass
    assert "mlflow.parentRunId" not in get_run(top.run_id).data.tags


def test_resume_reopens_the_same_run_and_keeps_its_tags():
    with RunTracker("exp", "sweep", tags={"sweep": "true", "trials": "4"}) as first:
        first.log_metrics({"sweep/dev_accuracy": 0.5}, step=0)
    with RunTracker("exp", "other-name", tags={"trials": "9"}, resume_run_id=first.run_id) as again:
        assert again.run_id == first.run_id
        again.log_metrics({"sweep/dev_accuracy": 0.7}, step=1)
        with RunTracker("exp", "trial") as child:
            pass
    run = get_run(first.run_id)
    assert run.info.status == "FINISHED" and run.info.run_name == "sweep"
    assert run.data.tags["trials"] == "4" and run.data.tags["sweep"] == "true"
    history = mlflow.MlflowClient().get_metric_history(first.run_id, "sweep/dev_accuracy")
    assert sorted(m.step for m in history) == [0, 1]
    assert get_run(child.run_id).data.tags["mlflow.parentRunId"] == first.run_id


@pytest.mark.parametrize("kind", ["sqlite under a file", "unknown scheme"])
def test_bad_tracking_uri_is_one_line(kind, tmp_path):
    (tmp_path / "a-file").write_text("")
    uri = f"sqlite:///{tmp_path}/a-file/mlflow.db" if kind == "sqlite under a file" else "nosuchscheme://somewhere"
    with pytest.raises(WorkbenchError) as e:
        with RunTracker("exp", "x", uri):
            pass
    msg = str(e.value)
    assert "\n" not in msg and repr(uri) in msg
    with pytest.raises(WorkbenchError) as e:
        check_tracking_uri(uri)
    assert "\n" not in str(e.value) and repr(uri) in str(e.value)


def test_metric_names_are_sanitised():
    with RunTracker("exp", "names") as t:
        t.log_metrics({"mix/template/sst2:3": 1, "si/rejected/too (long)": 2, "ok name-1.x": 3})
    assert set(get_run(t.run_id).data.metrics) == {"mix/template/sst2_3", "si/rejected/too _long_", "ok name-1.x"}


def test_resolve_tracking_uri_and_flatten(monkeypatch):
    assert resolve_tracking_uri("sqlite:///x.db") == "sqlite:///x.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///env.db")
    assert resolve_tracking_uri(None) == "sqlite:///env.db"
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    assert resolve_tracking_uri(None) == DEFAULT_TRACKING_URI == "sqlite:///mlflow.db"
    assert flatten_params({"a": 1, "b": {"c": [1, 2], "d": {"e": None}}}) == {"a": "1", "b.c": "[1, 2]", "b.d.e": "None"}
    assert flatten_params({"x": 1}, prefix="p.") == {"p.x": "1"}


def test_instruct_mix_logs_to_the_instruct_experiment(monkeypatch):
    from workbench.instruct import mix as mix_module

    class FakeMixture:
        summary = {"total": 3}
        counts = {"sst2": 3}
        template_counts = {"sst2": {"sst2:0": 2, "sst2:1": 1}}

    mix_module._log(FakeMixture(), mix_module.MixConfig(rates={"sst2": 1.0}))
    runs = mlflow.search_runs(experiment_names=["instruct"], output_format="list")
    assert len(runs) == 1
    run = runs[0]
    assert run.info.run_name == "mix" and run.info.status == "FINISHED"
    assert run.data.metrics["mix/template/sst2/0"] == 2 and run.data.metrics["mix/count/sst2"] == 3
    assert run.data.params["seed"] == "0" and "log_mlflow" not in run.data.params
    artifacts = {a.path for a in mlflow.MlflowClient().list_artifacts(run.info.run_id)}
    assert artifacts == {"config.json", "mix_summary.json"}
