"""BitFit (Ben Zaken et al. 2022): only bias terms train (and the head, if it has weights)."""

from __future__ import annotations

from dataclasses import dataclass

from workbench.adaptation.head_choice import HEAD_HELP, HEADS, make_head
from workbench.adaptation.registry import BuildContext, Method, register_method
from workbench.config import Categorical, Float, MethodOptions, SearchSpace, option
from workbench.errors import ConfigError

NORM_WORDS = ("norm", "ln_", "layernorm")


@dataclass
class BitFitOptions(MethodOptions):
    # Llama- and Gemma-style models have no bias terms; their norm gains are the closest analogue.
    include_norms: bool | str = option("auto", choices=("auto", True, False),
                                       help="also train normalisation gains; auto: only where the model has no bias "
                                            "terms (Llama, Gemma), so BitFit builds on every model")
    head: str = option("verbalizer", choices=HEADS, help=HEAD_HELP)


def _is_norm(name: str) -> bool:
    return any(w in name.lower() for w in NORM_WORDS)


def build(ctx: BuildContext, opts: BitFitOptions):
    from workbench.training.classifier import PromptClassifier

    model = ctx.backbone.model
    head = make_head(ctx, opts.head)
    names = [name for name, _ in model.named_parameters()]
    biases = [n for n in names if n.endswith(".bias")]
    norms = opts.include_norms
    if norms == "auto":
        norms = not biases
    chosen = set(biases) | ({n for n in names if _is_norm(n)} if norms else set())
    if not chosen:
        raise ConfigError(f"method.include_norms: {type(model).__name__} has no bias terms; set include_norms to "
                          f"auto or true to train its normalisation gains instead", field="method.include_norms")
    for name, p in model.named_parameters():
        p.requires_grad_(name in chosen)
    built = PromptClassifier(model, head)
    trains = "bias terms" + (" and normalisation gains" if norms and biases else "") if biases else \
        "normalisation gains (the model has no bias terms)"
    built.decisions = {"include_norms": norms, "trains": f"{trains}: {len(chosen)} tensors"}
    return built


register_method(Method(
    name="bitfit", summary="bias terms only (optionally norm gains)", options=BitFitOptions, build=build,
    default_lr=1e-3, generates=True,
    space=SearchSpace({"train.lr": Float(1e-4, 1e-2, log=True), "method.include_norms": Categorical(["auto", True]),
                       "train.warmup_ratio": Float(0.0, 0.2)}),
))
