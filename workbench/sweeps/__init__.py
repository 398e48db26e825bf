"""Optuna studies driven by an objective function: storage, resume, pruning, MLflow parent runs.

The sweep recipe (`workbench.recipes.sweep`) turns a run config into a study spec and an objective;
this package never imports the recipes.
"""

from workbench.sweeps.storage import DEFAULT_STORAGE, check_storage, study_name
from workbench.sweeps.study import (KnownBest, StudyResult, StudySpec, TrialHandle, TrialOutcome, best_known, run_study,
                                    study_name_problem)

__all__ = ["DEFAULT_STORAGE", "KnownBest", "StudyResult", "StudySpec", "TrialHandle", "TrialOutcome", "best_known",
           "check_storage", "run_study", "study_name", "study_name_problem"]
