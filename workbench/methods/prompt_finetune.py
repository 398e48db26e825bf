"""Prompt-based fine-tuning (LM-BFF / PET): all weights train, the cloze template and label words are the head."""

from __future__ import annotations

from dataclasses import dataclass

from workbench.methods.base import BuildContext
from workbench.training.classifier import PromptClassifier
from workbench.training.heads import VerbalizerHead


@dataclass
class PromptFinetuneOptions:
    pass


def verbalizer_head(ctx: BuildContext) -> VerbalizerHead:
    assert ctx.label_words is not None
    return VerbalizerHead(ctx.label_words.token_ids, ctx.label_words.class_matrix)


def build(ctx: BuildContext, opts: PromptFinetuneOptions) -> PromptClassifier:
    for p in ctx.backbone.model.parameters():
        p.requires_grad_(True)
    return PromptClassifier(ctx.backbone.model, verbalizer_head(ctx))
