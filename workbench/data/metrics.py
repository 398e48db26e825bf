"""Metrics by fixed name, so runs line up in MLflow."""

from __future__ import annotations

from collections.abc import Sequence


def compute_metrics(labels: Sequence[int], predictions: Sequence[int]) -> dict[str, float]:
    from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef  # slow to import: only when scoring

    return {
        "accuracy": float(accuracy_score(labels, predictions)),
        "macro_f1": float(f1_score(labels, predictions, average="macro", zero_division=0)),
        "matthews": float(matthews_corrcoef(labels, predictions)) if len(set(labels)) > 1 else 0.0,
    }
