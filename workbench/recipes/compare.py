"""`workbench compare`: several methods on the same few-shot splits, one parent MLflow run (`workbench.runs.comparison`
holds what it does; this job runs each method through the job table)."""

from __future__ import annotations

from workbench.recipes.train import check_run, train
from workbench.runs.comparison import CompareConfig, CompareResult
from workbench.runs.comparison import compare as run_comparison


def compare(cfg: CompareConfig, log=print) -> CompareResult:
    """Every method on every seed's few-shot split, one parent MLflow run with a table and plots."""
    return run_comparison(cfg, train, check_run, log)


__all__ = ["CompareConfig", "CompareResult", "compare"]
