"""A thin layer over MLflow that fixes metric names, tags and artifacts for every run.

Metric names are part of the interface (DESIGN.md): train/loss, eval/accuracy, test/accuracy,
trainable_params, trainable_fraction, train/seconds, train/examples_per_s, peak_mem_mb. Add, never rename.
"""

from __future__ import annotations

import csv
import io
import json
import os
import platform
import subprocess
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path

import yaml

from workbench.errors import WorkbenchError

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
PACKAGES = ("torch", "transformers", "peft", "optuna", "mlflow", "datasets", "prompt-workbench")


def resolve_tracking_uri(uri: str | None = None) -> str:
    return uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI


def git_commit() -> str:
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5)
        commit = out.stdout.strip() if out.returncode == 0 else "unknown"
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return commit + ("-dirty" if dirty and commit != "unknown" else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def environment_tags() -> dict[str, str]:
    tags = {"git_commit": git_commit(), "python": platform.python_version()}
    for name in PACKAGES:
        try:
            tags[f"version/{name}"] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return tags


def _flatten(d: dict, prefix: str = "") -> dict[str, str]:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = str(v)[:500]
    return out


class RunTracker:
    """Context manager for one MLflow run; nested under an active run when `nested=True`."""

    def __init__(self, experiment: str, run_name: str, tracking_uri: str | None = None, nested: bool = False,
                 tags: dict[str, str] | None = None):
        import mlflow

        self.mlflow = mlflow
        self.uri = resolve_tracking_uri(tracking_uri)
        self.experiment, self.run_name, self.nested = experiment, run_name, nested
        self.tags = tags or {}
        self.run_id: str | None = None

    def __enter__(self) -> RunTracker:
        mlflow = self.mlflow
        mlflow.set_tracking_uri(self.uri)
        try:
            mlflow.set_experiment(self.experiment)
        except Exception as e:  # MLflow raises many types for a bad store; the user needs the URI
            raise WorkbenchError(f"cannot use MLflow tracking URI {self.uri!r}: {str(e).splitlines()[0]}") from None
        run = mlflow.start_run(run_name=self.run_name, nested=self.nested)
        self.run_id = run.info.run_id
        mlflow.set_tags({**environment_tags(), **self.tags})
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        status = "FINISHED" if exc_type is None else ("KILLED" if exc_type is KeyboardInterrupt else "FAILED")
        if exc is not None:
            self.mlflow.set_tag("error", f"{exc_type.__name__}: {exc}"[:4000])
        self.mlflow.end_run(status=status)

    def log_config(self, config: dict) -> None:
        self.mlflow.log_params(_flatten(config))
        self.mlflow.log_text(yaml.safe_dump(config, sort_keys=False), "config.yaml")

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        self.mlflow.log_metrics({k: float(v) for k, v in metrics.items()}, step=step)

    def set_tags(self, tags: dict[str, str]) -> None:
        self.mlflow.set_tags({k: str(v) for k, v in tags.items()})

    def log_dict(self, data: dict, name: str) -> None:
        self.mlflow.log_dict(data, name)

    def log_predictions(self, guids: Sequence[str], labels: Sequence[int], predictions: Sequence[int],
                        scores, label_names: Sequence[str], name: str = "predictions.csv") -> None:
        buf = io.StringIO()
        writer = csv.writer(buf)
        writer.writerow(["guid", "label", "prediction", *[f"score_{n}" for n in label_names]])
        for g, y, p, s in zip(guids, labels, predictions, scores):
            writer.writerow([g, label_names[y], label_names[p], *[f"{v:.5f}" for v in s]])
        self.mlflow.log_text(buf.getvalue(), name)

    def log_confusion(self, labels: Sequence[int], predictions: Sequence[int], label_names: Sequence[str],
                      name: str = "confusion_matrix.png") -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from sklearn.metrics import ConfusionMatrixDisplay

        fig, ax = plt.subplots(figsize=(1.2 * len(label_names) + 2, 1.2 * len(label_names) + 1.5))
        ConfusionMatrixDisplay.from_predictions(labels, predictions, labels=list(range(len(label_names))),
                                                display_labels=list(label_names), ax=ax, colorbar=False)
        ax.set_title("test confusion matrix")
        fig.tight_layout()
        self.mlflow.log_figure(fig, name)
        plt.close(fig)

    def log_artifacts(self, folder: str, artifact_path: str) -> None:
        self.mlflow.log_artifacts(folder, artifact_path)

    def log_json(self, data, name: str) -> None:
        self.mlflow.log_text(json.dumps(data, indent=1), name)
