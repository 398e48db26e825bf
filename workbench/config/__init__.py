"""Typed configs: declared fields with one validator, the sections every job shares, and search spaces.

The run config (`RunConfig`: a task, a method and these sections) is `workbench.runs.RunConfig`: it names methods
and tasks, which sit above this package.
"""

from workbench.config.fields import ROLES, MethodOptions, Section, field_help, option, validate
from workbench.config.sections import DEFAULT_MODEL, EvalConfig, TrackingConfig, TrainConfig
from workbench.config.space import Categorical, Float, Int, SearchSpace, parse_param, parse_scalar

__all__ = [
    "DEFAULT_MODEL", "ROLES", "Categorical", "EvalConfig", "Float", "Int", "MethodOptions", "SearchSpace", "Section",
    "TrackingConfig", "TrainConfig", "field_help", "option", "parse_param", "parse_scalar", "validate",
]
