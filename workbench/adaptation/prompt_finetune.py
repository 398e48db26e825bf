"""Prompt-based fine-tuning (LM-BFF / PET): all weights train, the cloze template and label words are the head."""

from __future__ import annotations

from dataclasses import dataclass

from workbench.adaptation.head_choice import make_head
from workbench.adaptation.registry import BuildContext, Method, register_method
from workbench.config import Categorical, Float, MethodOptions, SearchSpace


@dataclass
class PromptFinetuneOptions(MethodOptions):
    pass


def build(ctx: BuildContext, opts: PromptFinetuneOptions):
    from workbench.training.classifier import PromptClassifier

    for p in ctx.backbone.model.parameters():
        p.requires_grad_(True)
    return PromptClassifier(ctx.backbone.model, make_head(ctx, "verbalizer"))


register_method(Method(
    name="prompt-finetune", summary="all weights, cloze template + label words (LM-BFF/PET)",
    options=PromptFinetuneOptions, build=build,
    space=SearchSpace({"train.lr": Float(5e-6, 1e-4, log=True), "train.warmup_ratio": Float(0.0, 0.2),
                       "train.batch_size": Categorical([4, 8])}),
))
