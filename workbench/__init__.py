"""Prompt Workbench: prompt-based learning and instruction data, with honest experiment tracking.

    import workbench as wb

    result = wb.train(wb.RunConfig(task="sst2", method={"name": "lora", "r": 4}, train={"max_steps": 30}))
    print(result.test_accuracy, result.run_id)

    wb.sweep(wb.SweepConfig(run=wb.RunConfig(task="sst2", method="p-tuning"), trials=20))
    wb.compare(wb.CompareConfig(task="sst2", methods=["finetune", "lora", "p-tuning"], seeds=[13, 21, 42]))

A new method is one module that calls `wb.register_method(wb.Method(...))`; see `workbench.adaptation`.
Names are imported on first use, so `import workbench` stays fast.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS = {
    "RunConfig": "workbench.runs", "PromptConfig": "workbench.runs", "TrainConfig": "workbench.config",
    "EvalConfig": "workbench.config", "TrackingConfig": "workbench.config", "MethodOptions": "workbench.config",
    "option": "workbench.config", "SearchSpace": "workbench.config", "Float": "workbench.config",
    "Int": "workbench.config", "Categorical": "workbench.config",
    "Method": "workbench.adaptation.registry", "BuildContext": "workbench.adaptation.registry",
    "register_method": "workbench.adaptation.registry", "get_method": "workbench.adaptation.registry",
    "TaskSpec": "workbench.data", "Template": "workbench.prompts", "Verbalizer": "workbench.prompts",
    "parse_template": "workbench.prompts", "load_templates": "workbench.prompts",
    "load_verbalizer": "workbench.prompts",
    "train": "workbench.recipes.train", "RunResult": "workbench.runs",
    "sweep": "workbench.recipes.sweep", "SweepConfig": "workbench.recipes.sweep",
    "SweepResult": "workbench.recipes.sweep",
    "compare": "workbench.recipes.compare", "CompareConfig": "workbench.recipes.compare",
    "CompareResult": "workbench.recipes.compare",
    "pretrain_prompt": "workbench.recipes.ppt", "PretrainConfig": "workbench.recipes.ppt",
    "PretrainResult": "workbench.recipes.ppt",
    "build_demos": "workbench.recipes.cot", "CotDemosConfig": "workbench.recipes.cot",
    "evaluate_cot": "workbench.recipes.cot", "CotEvalConfig": "workbench.recipes.cot",
    "tune": "workbench.recipes.instruct", "TuneConfig": "workbench.recipes.instruct",
    "evaluate_zero_shot": "workbench.recipes.instruct", "ZeroShotConfig": "workbench.recipes.instruct",
    "flan": "workbench.recipes.instruct", "FlanConfig": "workbench.recipes.instruct",
    "LocalBackend": "workbench.instruct.backends", "HTTPBackend": "workbench.instruct.backends",
    "WorkbenchError": "workbench.errors", "ConfigError": "workbench.errors",
}

__all__ = sorted([*_EXPORTS, "load_task", "methods", "tasks"])


def methods() -> dict:
    """Every registered method (built-in and plugins) by name: `Method` objects with their options and space."""
    from workbench.adaptation import all_methods

    return all_methods()


def tasks() -> dict:
    """The built-in tasks by name (`TaskSpec`); a task of your own is a YAML file given to `load_task`."""
    from workbench.data import BUILTIN_TASKS

    return dict(BUILTIN_TASKS)


def load_task(name_or_path):
    """A built-in task by name, or a user task from its YAML file (checked, with errors naming the field)."""
    from workbench.data import get_task

    return get_task(name_or_path)


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'workbench' has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__


if TYPE_CHECKING:  # for type checkers and editors; at run time __getattr__ imports on first use
    from workbench.adaptation.registry import BuildContext, Method, get_method, register_method  # noqa: F401
    from workbench.config import (Categorical, EvalConfig, Float, Int, MethodOptions, SearchSpace,  # noqa: F401
                                  TrackingConfig, TrainConfig, option)
    from workbench.data import TaskSpec  # noqa: F401
    from workbench.errors import ConfigError, WorkbenchError  # noqa: F401
    from workbench.prompts import Template, Verbalizer, load_templates, load_verbalizer, parse_template  # noqa: F401
    from workbench.instruct.backends import HTTPBackend, LocalBackend  # noqa: F401
    from workbench.recipes.compare import CompareConfig, CompareResult, compare  # noqa: F401
    from workbench.recipes.cot import CotDemosConfig, CotEvalConfig, build_demos, evaluate_cot  # noqa: F401
    from workbench.recipes.instruct import (FlanConfig, TuneConfig, ZeroShotConfig, evaluate_zero_shot, flan,  # noqa: F401
                                            tune)
    from workbench.recipes.train import train  # noqa: F401
    from workbench.recipes.ppt import PretrainConfig, PretrainResult, pretrain_prompt  # noqa: F401
    from workbench.recipes.sweep import SweepConfig, SweepResult, sweep  # noqa: F401
    from workbench.runs import PromptConfig, RunConfig, RunResult  # noqa: F401
