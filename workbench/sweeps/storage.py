"""Where studies live: a local SQLite file by default, any SQLAlchemy URL (PostgreSQL) to share one study.

A study survives its workers. Each trial records the worker (`host:pid`) that runs it; a trial left
RUNNING by a worker that died on this host is marked FAIL as soon as another worker (or `--resume`)
looks, and one left by a worker on another machine is failed by Optuna's heartbeat check once its
heartbeat is older than the grace period.
"""

from __future__ import annotations

import hashlib
import os
import re
import socket
import time
import warnings
from pathlib import Path

import optuna
from optuna.trial import TrialState

from workbench.errors import WorkbenchError

DEFAULT_STORAGE = "sqlite:///optuna.db"
HEARTBEAT_S = 30
GRACE_S = 120
WORKER = f"{socket.gethostname()}:{os.getpid()}"


def resolve_storage(url: str | None) -> str:
    return url or os.environ.get("WORKBENCH_SWEEP_STORAGE") or DEFAULT_STORAGE


def redact(url: str) -> str:
    """The URL without its password, for logs and MLflow tags."""
    return re.sub(r"(://[^:/@]+):[^@]*@", r"\1:***@", url)


def open_storage(url: str) -> optuna.storages.RDBStorage:
    """Open (and create the tables of) an Optuna RDB storage, or fail with one line naming the URL."""
    engine_kwargs: dict = {}
    if url.startswith("sqlite"):
        # several local workers: wait for the file lock instead of failing at once
        engine_kwargs = {"connect_args": {"timeout": 60}}
        path = url.split("///", 1)[-1]
        if path and path != ":memory:" and not Path(path).parent.exists():
            raise WorkbenchError(f"cannot open Optuna storage {redact(url)!r}: "
                                 f"folder {Path(path).parent} does not exist")
    elif url.startswith("postgresql"):
        engine_kwargs = {"connect_args": {"connect_timeout": 10}, "pool_pre_ping": True}
    from workbench.tracking import sqlite_lock

    try:
        for attempt in range(3):
            try:
                with sqlite_lock(url), warnings.catch_warnings():
                    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                    return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs,
                                                      heartbeat_interval=HEARTBEAT_S, grace_period=GRACE_S)
            except Exception as e:  # two workers creating a new server's tables at once: the loser retries
                if attempt == 2 or not any(w in str(e) for w in ("already exists", "UniqueViolation")):
                    raise
                time.sleep(1 + attempt)
    except ImportError as e:
        raise WorkbenchError(f"cannot open Optuna storage {redact(url)!r}: {e} (for PostgreSQL: pip install "
                             f"'psycopg[binary]')") from None
    except Exception as e:  # SQLAlchemy raises many types; the user needs the URL and the first line
        msg = str(getattr(e, "orig", None) or e).strip()
        msg = msg.splitlines()[0] if msg else type(e).__name__
        raise WorkbenchError(f"cannot open Optuna storage {redact(url)!r}: {msg}") from None


def model_slug(model: str) -> str:
    """A short stable name for a model: the alias, or a folder's name plus a hash of its absolute path."""
    if os.sep in model or Path(model).exists():
        full = str(Path(model).resolve())
        return f"{Path(full).name}-{hashlib.sha1(full.encode()).hexdigest()[:6]}"
    return model.replace("/", "--")


def study_name(task: str, method: str, model: str, shots: int) -> str:
    return f"{task}-{method}-{model_slug(model)}-k{shots}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def reap_dead_trials(study: optuna.Study, tracking_uri: str | None = None) -> list[int]:
    """Mark FAIL the RUNNING trials whose worker process on this host is gone; return their numbers."""
    host = socket.gethostname()
    reaped = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        worker = str(t.user_attrs.get("worker", ""))
        w_host, _, w_pid = worker.rpartition(":")
        if w_host != host or not w_pid.isdigit() or _pid_alive(int(w_pid)):
            continue
        try:
            study._storage.set_trial_user_attr(t._trial_id, "error", f"worker {worker} died during the trial")
            if study._storage.set_trial_state_values(t._trial_id, TrialState.FAIL):
                reaped.append(t.number)
        except Exception:  # another worker reaped it first
            continue
        _end_mlflow_run(t.user_attrs.get("mlflow_run_id"), tracking_uri)
    return reaped


def _end_mlflow_run(run_id: str | None, tracking_uri: str | None) -> None:
    if not run_id:
        return
    try:
        import mlflow

        client = mlflow.MlflowClient(tracking_uri)
        if client.get_run(run_id).info.status == "RUNNING":
            client.set_tag(run_id, "error", "worker died during the trial")
            client.set_terminated(run_id, "KILLED")
    except Exception:
        pass
