"""A small, self-contained MLflow logger for the instruct commands (tracking URI from MLFLOW_TRACKING_URI)."""

from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Any, Iterator

DEFAULT_URI = "sqlite:///mlflow.db"
EXPERIMENT = "instruct"


@contextmanager
def instruct_run(run_name: str, params: dict[str, Any] | None = None, enabled: bool = True) -> Iterator[Any]:
    """Yield an active MLflow run (or None when disabled) in the `instruct` experiment."""
    if not enabled:
        yield None
        return
    import mlflow  # imported lazily: slow to import, and only needed when logging

    mlflow.set_tracking_uri(os.environ.get("MLFLOW_TRACKING_URI", DEFAULT_URI))
    mlflow.set_experiment(EXPERIMENT)
    with mlflow.start_run(run_name=run_name) as run:
        if params:
            # MLflow caps a param value's length; long values (lists) are shortened, the full config is an artifact.
            mlflow.log_params({k: str(v)[:490] for k, v in params.items()})
            mlflow.log_dict(params, "config.json")
        yield run


def log_metrics(metrics: dict[str, float], step: int | None = None) -> None:
    import mlflow

    clean = {_metric_name(k): float(v) for k, v in metrics.items()}
    mlflow.log_metrics(clean, step=step)


def log_dict(data: dict, name: str) -> None:
    import mlflow

    mlflow.log_dict(data, name)


def log_figure(fig, name: str) -> None:
    import mlflow

    mlflow.log_figure(fig, name)


def _metric_name(name: str) -> str:
    # MLflow allows alphanumerics, _ - . / and space; template ids and reasons can carry other characters.
    return "".join(c if c.isalnum() or c in "_-./ " else "_" for c in name)
