"""Tasks: what a dataset looks like, where its rows come from, k-shot splits and metrics."""

from workbench.data.fewshot import FewShotSplit, check_classes, check_no_leakage, few_shot_split
from workbench.data.metrics import compute_metrics
from workbench.data.tasks import BUILTIN_TASKS, Example, TaskSpec, get_task, load_task_yaml

__all__ = [
    "BUILTIN_TASKS", "Example", "FewShotSplit", "TaskSpec", "check_classes", "check_no_leakage", "compute_metrics",
    "few_shot_split",
    "get_task", "load_task_yaml",
]
