"""The head choice shared by parameter-efficient methods: label words (verbalizer) or a linear classifier."""

from __future__ import annotations

from torch import nn

from workbench.errors import ConfigError
from workbench.methods.base import BuildContext
from workbench.models.backbone import ModelKind
from workbench.training.heads import LinearHead, VerbalizerHead

HEADS = ("verbalizer", "linear")


def make_head(ctx: BuildContext, head: str, method: str) -> nn.Module:
    if head not in HEADS:
        raise ConfigError(f"method {method!r}: head {head!r}; choose one of {list(HEADS)}")
    if head == "linear":
        return LinearHead(ctx.backbone.hidden_size, ctx.task.num_classes)
    if ctx.backbone.kind == ModelKind.ENCODER or ctx.label_words is None:
        raise ConfigError(f"method {method!r}: the verbalizer head needs a masked or causal LM with a template; "
                          f"this model is a plain encoder: use --head linear")
    return VerbalizerHead(ctx.label_words.token_ids, ctx.label_words.class_matrix)
