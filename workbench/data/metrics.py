"""Metrics by fixed name, so runs line up in MLflow."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


def compute_metrics(labels: Sequence[int], predictions: Sequence[int]) -> dict[str, float]:
    from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef  # slow to import: only when scoring

    return {
        "accuracy": float(accuracy_score(labels, predictions)),
        "macro_f1": float(f1_score(labels, predictions, average="macro", zero_division=0)),
        "matthews": float(matthews_corrcoef(labels, predictions)) if len(set(labels)) > 1 else 0.0,
    }


@dataclass(frozen=True)
class EvalScope:
    """Which rows a reported number was computed on. A limited evaluation (`eval.limit`, a smoke run) is said
    wherever its number appears, so that a score on 100 rows is never read as one on the whole split."""

    split: str
    rows: int  # rows scored
    total: int  # rows the split has

    @property
    def limited(self) -> bool:
        return self.rows < self.total

    def describe(self) -> str:
        """`the first 100 of 1,821 test rows` or `all 1,821 test rows`."""
        if self.limited:
            return f"the first {self.rows:,} of {self.total:,} {self.split} rows"
        return f"all {self.total:,} {self.split} rows"

    def name_suffix(self) -> str:
        """For run names: `-test100of1821` when limited, else nothing."""
        return f"-{self.split}{self.rows}of{self.total}" if self.limited else ""

    def tags(self) -> dict[str, str]:
        return {"eval_split": self.split, "eval_rows": str(self.rows), "eval_total": str(self.total),
                "eval_scope": self.describe()}
