"""Full fine-tuning: all weights and a new linear classification head on [CLS] / the last token."""

from __future__ import annotations

from dataclasses import dataclass

from workbench.adaptation.registry import BuildContext, Method, register_method
from workbench.config import Categorical, Float, MethodOptions, SearchSpace, option


@dataclass
class FinetuneOptions(MethodOptions):
    dropout: float = option(0.1, min=0, max=0.9, help="dropout before the classification head")


def build(ctx: BuildContext, opts: FinetuneOptions):
    from workbench.training.heads import LinearHead
    from workbench.training.classifier import PromptClassifier

    bb = ctx.backbone
    head = LinearHead(bb.hidden_size, ctx.task.num_classes, opts.dropout)
    for p in bb.model.parameters():
        p.requires_grad_(True)
    return PromptClassifier(bb.model, head)


register_method(Method(
    name="finetune", summary="all weights + a linear classification head", options=FinetuneOptions, build=build,
    uses_verbalizer=False,
    # Kept small: it is also the baseline a sweep of another method is compared with.
    space=SearchSpace({"train.lr": Float(5e-6, 1e-4, log=True), "train.warmup_ratio": Float(0.0, 0.2),
                       "method.dropout": Categorical([0.0, 0.1]), "train.batch_size": Categorical([4, 8])}),
))
