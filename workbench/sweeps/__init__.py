"""Optuna studies over the adaptation methods: search spaces, objective, pruning, storage.

    from workbench.sweeps import SweepConfig, run_sweep
    result = run_sweep(SweepConfig(task="sst2", method="p-tuning", trials=20))
"""

from workbench.sweeps.space import SearchSpace, load_space
from workbench.sweeps.storage import DEFAULT_STORAGE
from workbench.sweeps.study import SweepConfig, SweepResult, best_known, run_sweep, validate

__all__ = ["DEFAULT_STORAGE", "SearchSpace", "SweepConfig", "SweepResult", "best_known", "load_space", "run_sweep",
           "validate"]
