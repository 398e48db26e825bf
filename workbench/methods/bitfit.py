"""BitFit (Ben Zaken et al. 2022): only bias terms train (and the head, if it has weights)."""

from __future__ import annotations

from dataclasses import dataclass

from workbench.errors import ConfigError
from workbench.methods.base import BuildContext
from workbench.methods.heads import make_head
from workbench.training.classifier import PromptClassifier

NORM_WORDS = ("norm", "ln_", "layernorm")


@dataclass
class BitFitOptions:
    # Llama- and Gemma-style models have no bias terms; their norm gains are the closest analogue.
    include_norms: bool = False
    head: str = "verbalizer"


def build(ctx: BuildContext, opts: BitFitOptions) -> PromptClassifier:
    model = ctx.backbone.model
    head = make_head(ctx, opts.head, "bitfit")
    chosen = 0
    for name, p in model.named_parameters():
        lname = name.lower()
        train = name.endswith(".bias") or (opts.include_norms and any(w in lname for w in NORM_WORDS))
        p.requires_grad_(train)
        chosen += int(train)
    if chosen == 0:
        raise ConfigError(f"BitFit: {type(model).__name__} has no bias terms; pass --option include_norms=true "
                          f"to train its normalisation gains instead, or use a model with biases (BERT, RoBERTa)")
    return PromptClassifier(model, head)
