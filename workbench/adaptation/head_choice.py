"""The head choice shared by parameter-efficient methods: label words (verbalizer) or a linear classifier."""

from __future__ import annotations

from workbench.adaptation.registry import BuildContext
from workbench.errors import ConfigError

HEADS = ("verbalizer", "linear")
HEAD_HELP = "verbalizer: label-word scores at the mask; linear: a new classification layer"


def make_head(ctx: BuildContext, head: str):
    """The head a parameter-efficient method puts on the backbone; None for the generate objective."""
    from workbench.models.backbone import ModelKind
    from workbench.training.heads import LinearHead, VerbalizerHead

    if ctx.objective == "generate":
        return None  # the language model's own output layer predicts the next token
    if head == "linear":
        return LinearHead(ctx.backbone.hidden_size, ctx.task.num_classes)
    if ctx.backbone.kind == ModelKind.ENCODER or ctx.label_words is None:
        raise ConfigError("method.head: the verbalizer head needs a masked or causal LM with a template; this model "
                          "is a plain encoder: use head=linear", field="method.head")
    return VerbalizerHead(ctx.label_words.token_ids, ctx.label_words.class_matrix)
