"""MLflow helpers shared by sweeps and comparisons: a reachable-store check, a parent run that can be
re-opened (a resumed sweep keeps its parent), and finding a finished run whose config matches."""

from __future__ import annotations

import contextlib
import os
import re

from workbench.errors import WorkbenchError
from workbench.tracking import environment_tags, resolve_tracking_uri


@contextlib.contextmanager
def sqlite_lock(url: str):
    """Hold an exclusive lock beside a SQLite store while it may be created: two workers starting at once
    would otherwise both create (and migrate) its tables. Other URLs need no lock."""
    path = url.split("///", 1)[1] if url.startswith("sqlite:///") else ""
    if not path or path == ":memory:" or not os.path.isdir(os.path.dirname(os.path.abspath(path))):
        yield
        return
    import fcntl

    with open(os.path.abspath(path) + ".lock", "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def check_tracking_uri(uri: str | None) -> str:
    """Fail with one line, before any trial starts, when the MLflow store cannot be reached."""
    import mlflow

    uri = resolve_tracking_uri(uri)
    saved = {k: os.environ.get(k) for k in ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLFLOW_HTTP_REQUEST_TIMEOUT")}
    os.environ.update({"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"})
    try:
        with sqlite_lock(uri):
            mlflow.MlflowClient(uri).search_experiments(max_results=1)
    except Exception as e:
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise WorkbenchError(f"cannot use MLflow tracking URI {uri!r}: {msg[:300]}") from None
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return uri


@contextlib.contextmanager
def parent_run(experiment: str, name: str, uri: str | None, run_id: str | None = None, tags: dict | None = None):
    """Start (or, with `run_id`, re-open) a parent run; runs started inside it nest under it."""
    import mlflow

    mlflow.set_tracking_uri(resolve_tracking_uri(uri))
    try:
        mlflow.set_experiment(experiment)
    except Exception as e:
        raise WorkbenchError(f"cannot use MLflow tracking URI {resolve_tracking_uri(uri)!r}: "
                             f"{str(e).splitlines()[0]}") from None
    run = mlflow.start_run(run_id=run_id) if run_id else mlflow.start_run(run_name=name)
    if run_id is None:
        mlflow.set_tags({**environment_tags(), **(tags or {})})
    status = "FINISHED"
    try:
        yield run
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    except BaseException as e:
        status = "FAILED"
        mlflow.set_tag("error", f"{type(e).__name__}: {e}"[:4000])
        raise
    finally:
        mlflow.end_run(status=status)


def find_matching_run(experiment: str, uri: str | None, tags: dict[str, str], params: dict[str, str]) -> str | None:
    """The newest FINISHED run in `experiment` with these tags and exactly these params, or None."""
    import mlflow

    client = mlflow.MlflowClient(resolve_tracking_uri(uri))
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return None
    # values with quotes or brackets (a model's identity) cannot go in a filter string: compare those here
    simple = {k: v for k, v in tags.items() if re.fullmatch(r"[\w.:/@+-]*", v) and re.fullmatch(r"[\w.:/-]+", k)}
    filt = " and ".join([f"tags.`{k}` = '{v}'" for k, v in simple.items()] + ["attributes.status = 'FINISHED'"])
    for run in client.search_runs([exp.experiment_id], filt, order_by=["attributes.start_time DESC"],
                                  max_results=200):
        have = run.data
        if have.tags.get("reused_from") or any(have.tags.get(k) != v for k, v in tags.items()):
            continue
        if all(have.params.get(k) == v for k, v in params.items()) and "test/accuracy" in have.metrics:
            return run.info.run_id
    return None
