"""BitFit (Ben Zaken et al. 2022): only bias terms train (and the head, if it has weights)."""

from __future__ import annotations

from dataclasses import dataclass

from workbench.adaptation.heads import HEAD_HELP, HEADS, make_head
from workbench.adaptation.registry import BuildContext, Method, register_method
from workbench.config import Categorical, Float, MethodOptions, SearchSpace, option
from workbench.errors import ConfigError

NORM_WORDS = ("norm", "ln_", "layernorm")


@dataclass
class BitFitOptions(MethodOptions):
    # Llama- and Gemma-style models have no bias terms; their norm gains are the closest analogue.
    include_norms: bool = option(False, help="also train normalisation gains (for bias-free models: Llama, Gemma)")
    head: str = option("verbalizer", choices=HEADS, help=HEAD_HELP)


def build(ctx: BuildContext, opts: BitFitOptions):
    from workbench.training.classifier import PromptClassifier

    model = ctx.backbone.model
    head = make_head(ctx, opts.head)
    chosen = 0
    for name, p in model.named_parameters():
        lname = name.lower()
        train = name.endswith(".bias") or (opts.include_norms and any(w in lname for w in NORM_WORDS))
        p.requires_grad_(train)
        chosen += int(train)
    if chosen == 0:
        raise ConfigError(f"method.include_norms: {type(model).__name__} has no bias terms; set include_norms=true "
                          f"to train its normalisation gains instead, or use a model with biases (BERT, RoBERTa)",
                          field="method.include_norms")
    return PromptClassifier(model, head)


register_method(Method(
    name="bitfit", summary="bias terms only (optionally norm gains)", options=BitFitOptions, build=build,
    default_lr=1e-3, generates=True,
    space=SearchSpace({"train.lr": Float(1e-4, 1e-2, log=True), "method.include_norms": Categorical([False, True]),
                       "train.warmup_ratio": Float(0.0, 0.2)}),
))
