"""Where studies live: a local SQLite file by default, any SQLAlchemy URL (PostgreSQL) to share one study.

A study survives its workers. Each trial records the worker (`host:pid`) that runs it; a trial left
RUNNING by a worker that died on this host is marked FAIL as soon as another worker (or `--resume`)
looks, and one left by a worker on another machine is failed by Optuna's heartbeat check once its
heartbeat is older than the grace period.
"""

from __future__ import annotations

import hashlib
import os
import time
import warnings
from pathlib import Path

import optuna
from optuna.trial import TrialState

from workbench.errors import WorkbenchError
from workbench.tracking.uris import redact_url, storage_problem
from workbench.tracking.workers import HOST, worker_alive, worker_id, worker_scope

DEFAULT_STORAGE = "sqlite:///optuna.db"
STORAGE_ENV = "WORKBENCH_SWEEP_STORAGE"
HEARTBEAT_S = 30
GRACE_S = 120
WORKER = worker_id()

redact = redact_url  # the one redaction helper (workbench.tracking); kept under its old name


def resolve_storage(url: str | None) -> str:
    return url or os.environ.get(STORAGE_ENV) or DEFAULT_STORAGE


def describe_storage(url: str | None) -> str:
    """The resolved storage URL, redacted, and where it came from when the caller did not give it."""
    origin = "" if url or not os.environ.get(STORAGE_ENV) else f" (from ${STORAGE_ENV})"
    return f"{redact_url(resolve_storage(url))!r}{origin}"


def check_storage(url: str | None) -> str | None:
    """Why the storage cannot work (malformed, unknown database, SQLite file in a missing folder, server not
    answering), in a message naming it, or None. Quick; creates nothing."""
    problem = storage_problem(resolve_storage(url))
    return f"cannot open Optuna storage {describe_storage(url)}: {problem}" if problem else None


def open_storage(url: str) -> optuna.storages.RDBStorage:
    """Open (and create the tables of) an Optuna RDB storage, or fail with one line naming the URL."""
    problem = check_storage(url)
    if problem:
        raise WorkbenchError(problem)
    engine_kwargs: dict = {}
    if url.startswith("sqlite"):
        # several local workers: wait for the file lock instead of failing at once
        engine_kwargs = {"connect_args": {"timeout": 60}}
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


def reap_dead_trials(study: optuna.Study, tracking_uri: str | None = None) -> list[int]:
    """Mark FAIL the RUNNING trials whose worker process on this host is gone (and end their MLflow runs KILLED);
    return their numbers."""
    reaped = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        worker = str(t.user_attrs.get("worker", ""))
        if worker_alive(worker, t.user_attrs.get("worker_scope")) is not False:
            continue
        try:
            study._storage.set_trial_user_attr(t._trial_id, "error", f"worker {worker} died during the trial")
            if study._storage.set_trial_state_values(t._trial_id, TrialState.FAIL):
                reaped.append(t.number)
        except Exception:  # another worker reaped it first
            continue
        end_trial_run(t.user_attrs.get("mlflow_run_id"), tracking_uri, f"worker {worker} died during the trial")
    return reaped


def end_trial_run(run_id: str | None, tracking_uri: str | None, error: str, state: str = "FAIL") -> bool:
    """End a trial's MLflow run KILLED with this error when it is still RUNNING (whether it was), and give its
    `optuna.state` tag the trial's state if it still says RUNNING (another process may have ended the run)."""
    if not run_id:
        return False
    try:
        import mlflow

        client = mlflow.MlflowClient(tracking_uri)
        run = client.get_run(run_id)
        if run.data.tags.get("optuna.state") == "RUNNING":
            client.set_tag(run_id, "optuna.state", state)
        if run.info.status != "RUNNING":
            return False
        client.set_tag(run_id, "error", redact_url(error)[:4000])
        client.set_terminated(run_id, "KILLED")
        return True
    except Exception:
        return False


_end_mlflow_run = end_trial_run  # old name

__all__ = ["DEFAULT_STORAGE", "HOST", "WORKER", "check_storage", "describe_storage", "end_trial_run", "open_storage",
           "reap_dead_trials", "redact", "resolve_storage", "study_name", "worker_scope"]
