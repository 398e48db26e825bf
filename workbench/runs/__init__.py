"""What every job shares: the run config, preparing a run (input checked, model built), what identifies it (params,
hash, name, tags), fitting and scoring it, a saved run built again, and a comparison of methods over seeds.
Recipes import this; it names no recipe.

Names are imported on first use (as `import workbench` does): preparing a run needs torch, reading its config
does not.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "PromptConfig": "workbench.runs.config", "RunConfig": "workbench.runs.config",
    "FitScores": "workbench.runs.fit", "Forecast": "workbench.runs.fit", "RunResult": "workbench.runs.fit",
    "fit_and_score": "workbench.runs.fit", "trainer_config": "workbench.runs.fit",
    "config_hash": "workbench.runs.identity", "effective_batch_size": "workbench.runs.identity",
    "effective_lr": "workbench.runs.identity", "identity_params": "workbench.runs.identity",
    "resolved_config": "workbench.runs.identity", "run_name": "workbench.runs.identity",
    "run_tags": "workbench.runs.identity",
    "CheckedInput": "workbench.runs.prepared", "PreparedRun": "workbench.runs.prepared",
    "check_input": "workbench.runs.prepared", "check_shots": "workbench.runs.prepared",
    "load_pvp": "workbench.runs.prepared", "prepare": "workbench.runs.prepared",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'workbench.runs' has no attribute {name!r}")
