"""Typed configs: declared fields with one validator, the run config tree, and search spaces."""

from workbench.config.fields import ROLES, MethodOptions, Section, field_help, option, validate
from workbench.config.run import (DEFAULT_MODEL, EvalConfig, PromptConfig, RunConfig, TrackingConfig, TrainConfig,
                                  identity, paths_with_role, resolve_path)
from workbench.config.space import Categorical, Float, Int, SearchSpace, parse_param, parse_scalar

__all__ = [
    "DEFAULT_MODEL", "ROLES", "Categorical", "EvalConfig", "Float", "Int", "MethodOptions", "PromptConfig",
    "RunConfig", "SearchSpace", "Section", "TrackingConfig", "TrainConfig", "field_help", "identity", "option",
    "parse_param", "parse_scalar", "paths_with_role", "resolve_path", "validate",
]
