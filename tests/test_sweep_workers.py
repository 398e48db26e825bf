"""Sweeps as processes: kill one mid-trial and resume it; two workers on one study (SQLite, and PostgreSQL
when Debian's postgresql package is installed: the test starts its own server)."""

from __future__ import annotations

import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import mlflow
import optuna
import pytest
from optuna.trial import TrialState

from conftest import requires_data

pytestmark = [requires_data("sst2"), pytest.mark.heavy]  # sweeps as processes, killed and resumed


def sweep_cmd(tiny_mlm_dir, storage: str, trials: int, max_steps: int, *extra: str) -> list[str]:
    folder, verbalizer = tiny_mlm_dir
    return [sys.executable, "-m", "workbench", "sweep", "--method", "prompt-finetune",
            "--model", str(folder), "--shots", "4", "--template-id", "1", "--verbalizer-file", str(verbalizer),
            "--max-steps", str(max_steps), "--eval-every", "2", "--eval-limit", "16", "--trials", str(trials),
            "--storage", storage, "--study-name", "s", "--pruner", "none", "--no-final", "--no-progress", *extra]


def finished(study: optuna.Study) -> list:
    return [t for t in study.get_trials() if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]


def load(storage: str) -> optuna.Study | None:
    try:
        return optuna.load_study(study_name="s", storage=storage)
    except KeyError:
        return None


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT], ids=["kill-9", "ctrl-c"])
def test_stopped_sweep_resumes_without_losing_or_repeating_trials(tmp_path, tiny_mlm_dir, sig):
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    # The sweep starts with Ctrl-C at its default, as in a terminal: a test run launched in the background
    # (`cmd &` in a script) ignores SIGINT, its children inherit that, and Python then never raises
    # KeyboardInterrupt, so the sweep would run to its end.
    # 60 steps make a trial last some 3 s on a CPU, so the poll (every 0.3 s) finds one mid-training; at 10 steps
    # a trial lasted 1 s and a loaded CI machine could step past trials 1 and 2 between two polls.
    proc = subprocess.Popen(sweep_cmd(tiny_mlm_dir, storage, 4, 60), cwd=tmp_path, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline, running = time.monotonic() + 300, None
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            study = load(storage)
            if study is not None and finished(study):
                # its MLflow run has started, and it is not the last trial: a signal sent as the last one ends
                # would find a sweep that had just finished (exit 0), not one to interrupt
                running = [t for t in study.get_trials() if t.state == TrialState.RUNNING
                           and "mlflow_run_id" in t.user_attrs and t.number < 3]
                if running:
                    break
            time.sleep(0.3)
    finally:
        proc.send_signal(sig)
        code = proc.wait(timeout=120)
    assert running, "the sweep never reached a second trial mid-training"
    assert code == (130 if sig == signal.SIGINT else -signal.SIGKILL)
    study = load(storage)
    before = {t.number: (t.value, t.params) for t in finished(study)}
    killed = running[0]

    out = subprocess.run(sweep_cmd(tiny_mlm_dir, storage, 4, 60, "--resume"), cwd=tmp_path, capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    if sig == signal.SIGKILL:  # a dead worker's trial is found on resume; Ctrl-C records its own
        assert f"marked trial(s) [{killed.number}] FAIL" in out.stdout
    study = load(storage)
    trials = study.get_trials()
    assert [t.number for t in trials] == list(range(len(trials)))  # every number once
    done = finished(study)
    assert len(done) == 4
    assert {t.number: (t.value, t.params) for t in done if t.number in before} == before  # kept, unchanged
    dead = trials[killed.number]
    assert dead.state == TrialState.FAIL
    assert ("died during the trial" if sig == signal.SIGKILL else "interrupted") in dead.user_attrs["error"]
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    run = mlflow.get_run(killed.user_attrs["mlflow_run_id"])
    assert run.info.status == "KILLED"
    parents = mlflow.search_runs(search_all_experiments=True, filter_string="tags.sweep = 'true'", output_format="list")
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"  # the resumed sweep kept its parent run


def run_two_workers(tmp_path, tiny_mlm_dir, storage: str, trials: int = 4) -> optuna.Study:
    procs = [subprocess.Popen(sweep_cmd(tiny_mlm_dir, storage, trials, 4, "--resume"), cwd=tmp_path,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=600) for p in procs]
    for p, (_, err) in zip(procs, outs):
        assert p.returncode == 0, err[-2000:]
    study = load(storage)
    trials_ = study.get_trials()
    assert [t.number for t in trials_] == list(range(len(trials_)))
    assert len(finished(study)) == trials
    # a trial beyond the budget (two workers asked at the same moment) is recorded, never run
    assert all(t.user_attrs.get("error", "").startswith("not run:") for t in trials_ if t.state == TrialState.FAIL)
    parents = mlflow.search_runs(search_all_experiments=True, filter_string="tags.sweep = 'true'", output_format="list")
    assert len(parents) == 1
    nested = mlflow.search_runs(search_all_experiments=True, output_format="list",
                                filter_string=f"tags.mlflow.parentRunId = '{parents[0].info.run_id}'")
    assert len([r for r in nested if r.data.tags.get("optuna.state") == "COMPLETE"]) == trials
    return study


def test_two_workers_share_one_sqlite_study(tmp_path, tiny_mlm_dir):
    study = run_two_workers(tmp_path, tiny_mlm_dir, f"sqlite:///{tmp_path / 'optuna.db'}", trials=6)
    # both processes ran trials of the one study (neither waited for the other to finish)
    assert len({t.user_attrs["worker"] for t in finished(study)}) == 2


def _pg_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), reverse=True)
    if found:
        return Path(found[0]).parent
    initdb = shutil.which("initdb")
    return Path(os.path.realpath(initdb)).parent if initdb else None


@pytest.fixture()
def postgres_url():
    """A throw-away PostgreSQL server on 127.0.0.1 (as user `postgres` when the tests run as root)."""
    bindir = _pg_bin()
    if bindir is None or not (bindir / "pg_ctl").exists():
        pytest.skip("PostgreSQL server binaries (Debian package postgresql) are not installed")
    try:
        import psycopg  # noqa: F401  (SQLAlchemy's default PostgreSQL driver)
    except ImportError:
        pytest.skip("psycopg is not installed")
    user = None
    if os.geteuid() == 0:
        import pwd

        try:
            pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no 'postgres' user to run the server")
        user = "postgres"
    root = Path(tempfile.mkdtemp(prefix="wb-pg-", dir="/tmp"))
    data = root / "data"
    if user:
        shutil.chown(root, user)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    def run(*cmd):
        subprocess.run([str(c) for c in cmd], user=user, check=True, capture_output=True, timeout=120)

    try:
        run(bindir / "initdb", "-D", data, "-U", "wb", "--auth=trust", "-E", "UTF8")
        run(bindir / "pg_ctl", "-D", data, "-l", root / "log", "-w", "-o",
            f"-p {port} -k {root} -c listen_addresses=127.0.0.1", "start")
        yield f"postgresql://wb@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"], user=user,
                       capture_output=True, timeout=60)
        shutil.rmtree(root, ignore_errors=True)


def test_two_workers_share_one_postgres_study(tmp_path, tiny_mlm_dir, postgres_url):
    run_two_workers(tmp_path, tiny_mlm_dir, postgres_url)


def test_trial_killed_before_its_first_evaluation_leaves_no_run_running(tmp_path, tiny_mlm_dir):
    """kill -9 right after a trial's MLflow run starts (its only evaluation is at the end): the run is already
    linked to its trial both ways, and the next start of the study ends it KILLED; so is a child run of the sweep
    that died before any link was made."""
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    cmd = sweep_cmd(tiny_mlm_dir, storage, 1, 200, "--eval-every", "200")
    proc = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline, running = time.monotonic() + 300, None
    try:
        while time.monotonic() < deadline and proc.poll() is None and not running:
            study = load(storage)
            running = study and [t for t in study.get_trials() if t.state == TrialState.RUNNING
                                 and "mlflow_run_id" in t.user_attrs]
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    assert running, "the sweep never started a trial"
    trial = running[0]
    client = mlflow.MlflowClient()
    run = client.get_run(trial.user_attrs["mlflow_run_id"])
    assert "eval/accuracy" not in run.data.metrics, "killed after an evaluation: the test wants it before"
    assert run.info.status == "RUNNING"
    assert run.data.tags["optuna.study"] == "s" and run.data.tags["optuna.trial"] == str(trial.number)
    assert run.data.tags["optuna.state"] == "RUNNING" and run.data.tags["sweep_trial"] == "true"
    assert run.data.tags["workbench.worker"] == f"{socket.gethostname()}:{proc.pid}"

    parent_id = load(storage).user_attrs["mlflow_parent_run_id"]
    unlinked = _nested_run_then_die(tmp_path, parent_id, client.get_run(parent_id).info.experiment_id)
    assert client.get_run(unlinked).info.status == "RUNNING"

    out = subprocess.run(sweep_cmd(tiny_mlm_dir, storage, 1, 200, "--eval-every", "200", "--resume"), cwd=tmp_path,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    run = client.get_run(trial.user_attrs["mlflow_run_id"])
    assert run.info.status == "KILLED" and run.data.tags["optuna.state"] == "FAIL"
    assert f"worker {socket.gethostname()}:{proc.pid} died during the" in run.data.tags["error"]
    assert load(storage).trials[trial.number].state == TrialState.FAIL
    orphan = client.get_run(unlinked)
    assert orphan.info.status == "KILLED" and "died" in orphan.data.tags["error"]
    left = mlflow.search_runs(search_all_experiments=True, filter_string="attributes.status = 'RUNNING'",
                              output_format="list")
    assert not left, [r.info.run_name for r in left]


def _nested_run_then_die(tmp_path, parent_id: str, experiment_id: str) -> str:
    """A process that starts a run under the sweep's parent and is killed before it can say which trial it is."""
    code = ("import os, signal, mlflow\n"
            "from workbench.tracking import RunTracker\n"
            f"exp = mlflow.get_experiment({experiment_id!r}).name\n"
            f"mlflow.set_experiment(exp); mlflow.start_run(run_id={parent_id!r})\n"
            "t = RunTracker(exp, 'trial-without-a-link').__enter__()\n"
            "print(t.run_id, flush=True)\n"
            "os.kill(os.getpid(), signal.SIGKILL)\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert out.returncode == -signal.SIGKILL, out.stderr[-2000:]
    return out.stdout.split()[-1]
