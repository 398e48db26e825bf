"""Prompt-based fine-tuning (LM-BFF / PET): all weights train, the cloze template and label words are the head."""

from __future__ import annotations

from dataclasses import dataclass

from workbench.methods.base import BuildContext
from workbench.methods.heads import make_head
from workbench.training.classifier import PromptClassifier


@dataclass
class PromptFinetuneOptions:
    pass


def build(ctx: BuildContext, opts: PromptFinetuneOptions) -> PromptClassifier:
    for p in ctx.backbone.model.parameters():
        p.requires_grad_(True)
    return PromptClassifier(ctx.backbone.model, make_head(ctx, "verbalizer", "prompt-finetune"))
