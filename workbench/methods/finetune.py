"""Full fine-tuning: all weights and a new linear classification head on [CLS] / the last token."""

from __future__ import annotations

from dataclasses import dataclass

from workbench.methods.base import BuildContext
from workbench.training.classifier import PromptClassifier
from workbench.training.heads import LinearHead


@dataclass
class FinetuneOptions:
    dropout: float = 0.1


def build(ctx: BuildContext, opts: FinetuneOptions) -> PromptClassifier:
    bb = ctx.backbone
    head = LinearHead(bb.hidden_size, ctx.task.num_classes, opts.dropout)
    for p in bb.model.parameters():
        p.requires_grad_(True)
    return PromptClassifier(bb.model, head)
