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


# --- passwords in URLs are never logged or printed ----------------------------------------------------------------


def test_redact_url():
    from workbench.tracking import redact_url

    assert redact_url("postgresql://u:secret@h:5432/db") == "postgresql://u:***@h:5432/db"
    assert redact_url("http://user:p%40ss:w@host/") == "http://user:***@host/"
    assert redact_url("postgresql+psycopg://:secret@h/db") == "postgresql+psycopg://:***@h/db"
    assert redact_url("postgresql://h/db?user=u&password=secret&x=1") == "postgresql://h/db?user=u&password=***&x=1"
    assert redact_url("in 'mysql://a:b@c/d' and http://e:f@g") == "in 'mysql://a:***@c/d' and http://e:***@g"
    for same in ("sqlite:///mlflow.db", "http://host:5000/path", "user@example.com", "a=b", "http://tok@host/"):
        assert redact_url(same) == same


def test_passwords_in_urls_are_redacted_in_everything_logged():
    from workbench.tracking import redact_value

    uri = "http://user:secret@mlflow.example:5000"
    config = {"tracking": {"uri": uri}, "train": {"lr": 0.1}, "notes": [f"storage {uri}"]}
    with pytest.raises(RuntimeError):
        with RunTracker("exp", "redacted", tags={"store": uri}) as t:
            t.log_config(config)
            t.log_dict(config, "config.json")
            t.log_text(f"stored in {uri}\n", "notes.txt")
            raise RuntimeError(f"cannot reach {uri}")
    run = get_run(t.run_id)
    client = mlflow.MlflowClient()
    assert run.data.params["tracking.uri"] == "http://user:***@mlflow.example:5000"
    assert run.data.tags["store"] == "http://user:***@mlflow.example:5000"
    assert "secret" not in run.data.tags["error"] and "user:***@" in run.data.tags["error"]
    for name in ("config.yaml", "config.json", "notes.txt"):
        text = open(client.download_artifacts(t.run_id, name)).read()
        assert "secret" not in text and "user:***@" in text, name
    assert "secret" not in str(run.data.params)
    assert redact_value(config)["tracking"]["uri"] == "http://user:***@mlflow.example:5000"
    assert flatten_params({"uri": uri}) == {"uri": "http://user:***@mlflow.example:5000"}


def test_cli_errors_never_print_a_password(capsys):
    from workbench.cli import error_message

    assert error_message(WorkbenchError("run 'x' in postgresql://u:secret@h/db: not found")) == \
        "run 'x' in postgresql://u:***@h/db: not found"


# --- bad stores: refused quickly, nothing created ------------------------------------------------------------------


def test_missing_folder_is_refused_not_created(tmp_path):
    uri = f"sqlite:///{tmp_path}/no/such/mlflow.db"
    for attempt in (lambda: check_tracking_uri(uri), lambda: RunTracker("exp", "x", uri).__enter__()):
        with pytest.raises(WorkbenchError, match=f"folder {tmp_path}/no/such does not exist"):
            attempt()
    assert not (tmp_path / "no").exists()


def test_check_does_not_create_a_new_store(tmp_path):
    uri = f"sqlite:///{tmp_path / 'new.db'}"
    assert check_tracking_uri(uri) == uri
    assert not (tmp_path / "new.db").exists()


def test_unreachable_server_fails_fast_in_the_tracker_too():
    import time

    start = time.monotonic()
    with pytest.raises(WorkbenchError, match="127.0.0.1:9 refused the connection"):
        with RunTracker("exp", "x", "http://user:secret@127.0.0.1:9"):
            pass
    assert time.monotonic() - start < 10  # MLflow alone retries for about four minutes


# --- runs whose process died are not left RUNNING ------------------------------------------------------------------


def _start_and_die(tmp_path, experiment: str, parent: str | None = None) -> str:
    """A process that starts a run (nested under `parent` when given) and is killed with SIGKILL; its run id."""
    import signal
    import subprocess
    import sys

    code = (
        "import os, signal, sys, mlflow\n"
        "from workbench.tracking import RunTracker\n"
        f"parent = {parent!r}\n"
        "if parent:\n"
        "    mlflow.start_run(run_id=parent)\n"
        f"t = RunTracker({experiment!r}, 'doomed').__enter__()\n"
        "print(t.run_id, flush=True)\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert out.returncode == -signal.SIGKILL, out.stderr[-2000:]
    return out.stdout.split()[-1]


@pytest.mark.heavy
def test_a_run_whose_process_died_is_marked_killed_by_the_next_run(tmp_path):
    from workbench.tracking import worker_alive

    dead = _start_and_die(tmp_path, "exp")
    run = get_run(dead)
    assert run.info.status == "RUNNING" and worker_alive(run.data.tags["workbench.worker"]) is False
    with RunTracker("exp", "alive") as alive:
        assert alive.reaped == [dead]
        assert get_run(alive.run_id).data.tags["workbench.worker"].endswith(f":{__import__('os').getpid()}")
    run = get_run(dead)
    assert run.info.status == "KILLED" and "died during the run" in run.data.tags["error"]
    with RunTracker("other", "elsewhere") as other:  # another experiment's runs are its own business
        assert other.reaped == []


def test_live_and_foreign_runs_are_left_alone(tmp_path):
    from workbench.tracking import reap_orphan_runs

    client = mlflow.MlflowClient()
    with RunTracker("exp", "mine") as mine:
        exp = get_run(mine.run_id).info.experiment_id
        foreign = client.create_run(exp, run_name="foreign", tags={"workbench.worker": "another-host:1"})
        assert reap_orphan_runs(client, [exp]) == []  # this process is alive; the other host cannot be judged
    assert get_run(mine.run_id).info.status == "FINISHED"
    assert client.get_run(foreign.info.run_id).info.status == "RUNNING"


# --- the dashboard ---------------------------------------------------------------------------------------------------


@pytest.mark.heavy
def test_dashboard_warns_when_it_listens_beyond_this_machine(monkeypatch, capsys):
    from workbench.recipes import mlflow_ui as dashboard

    calls = []
    monkeypatch.setattr(dashboard.subprocess, "Popen", lambda *a, **k: calls.append((a, k)) or _Done())
    monkeypatch.setattr(dashboard, "_check_port_free", lambda host, port: None)
    assert dashboard.serve(None, "0.0.0.0", 5123, log=lambda s: None) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("warning: ") and "no authentication" in err[0]
    assert calls[0][1]["start_new_session"] is True
    dashboard.serve(None, "127.0.0.1", 5123, log=lambda s: None)
    dashboard.serve(None, "localhost", 5123, log=lambda s: None)
    assert capsys.readouterr().err == ""


def test_dashboard_keeps_a_password_off_the_command_line(tmp_path):
    from workbench.recipes.mlflow_ui import dashboard_command, dashboard_env

    uri = "postgresql://u:secret@db.example/mlflow"
    cmd = dashboard_command(uri)
    assert "secret" not in " ".join(cmd) and "--backend-store-uri" not in cmd
    assert dashboard_env(uri)["MLFLOW_BACKEND_STORE_URI"] == uri
    plain = f"sqlite:///{tmp_path / 'm.db'}"
    assert dashboard_command(plain)[dashboard_command(plain).index("--backend-store-uri") + 1] == plain


class _Done:
    pid = -1  # no process: nothing to stop

    def wait(self, timeout=None):
        return 0

    def poll(self):
        return 0


@pytest.mark.heavy
def test_sigterm_stops_the_dashboard_and_its_ui_process_group(tmp_path):
    import os
    import signal
    import socket
    import subprocess
    import sys
    import time
    import urllib.request

    from workbench.tracking.workers import pid_alive

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "workbench", "dashboard", "--port", str(port)], cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline, body = time.monotonic() + 120, None
        while time.monotonic() < deadline and body is None and proc.poll() is None:
            try:
                body = urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2).read()
            except OSError:
                time.sleep(0.5)
        assert body is not None and b"OK" in body, "the UI never answered"
        children = _descendants(proc.pid)
        assert children, "mlflow ui runs as a child process"
        groups = {os.getpgid(c) for c in children if pid_alive(c)}
        assert proc.pid not in groups  # the UI has a process group of its own
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and any(pid_alive(c) for c in children):
            time.sleep(0.2)
        assert not [c for c in children if pid_alive(c)], "the UI outlived the dashboard"
        with pytest.raises(OSError):
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for c in locals().get("children") or []:  # never leave a UI behind, whatever failed
            if pid_alive(c):
                os.kill(c, signal.SIGKILL)


def _descendants(pid: int) -> list[int]:
    """Every process below `pid` (Linux /proc)."""
    from pathlib import Path

    parents = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(stat.parent.name)] = int(fields[1])
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        kids = [c for c, pp in parents.items() if pp == p]
        found += kids
        todo += kids
    return found
