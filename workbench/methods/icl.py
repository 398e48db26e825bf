"""In-context learning: no training. Zero-shot (no demonstrations) or few-shot demonstrations drawn
from the k-shot training split, optionally with contextual calibration (Zhao et al. 2021): the class
log-probabilities of a content-free input ("N/A") are subtracted from every prediction."""

from __future__ import annotations

import random
from dataclasses import dataclass

import torch

from workbench.methods.base import BuildContext, freeze
from workbench.methods.heads import make_head
from workbench.prompts.encoding import render
from workbench.tasks.registry import Example
from workbench.training.classifier import PromptClassifier

CONTENT_FREE = "N/A"


@dataclass
class ICLOptions:
    demos_per_class: int = 1  # 0 = zero-shot
    calibrate: bool = False
    separator: str = "\n\n"


def build(ctx: BuildContext, opts: ICLOptions) -> PromptClassifier:
    if opts.demos_per_class < 0:
        raise ValueError("demos_per_class must be >= 0")
    freeze(ctx.backbone.model)
    return PromptClassifier(ctx.backbone.model, make_head(ctx, "verbalizer", "icl"))


def demonstrations(ctx: BuildContext, opts: ICLOptions) -> str:
    """The same demonstrations for every test example of a run, chosen with the run's seed."""
    if opts.demos_per_class == 0:
        return ""
    rng = random.Random(ctx.seed)
    chosen: list[Example] = []
    for c in range(ctx.task.num_classes):
        pool = [e for e in ctx.split.train if e.label == c]
        chosen += rng.sample(pool, min(opts.demos_per_class, len(pool)))
    rng.shuffle(chosen)
    words = [w[0] for w in ctx.verbalizer.words]
    return "".join(render(ctx.template, e, ctx.task.text_fields, words[e.label]) + opts.separator for e in chosen)


def content_free_example(ctx: BuildContext) -> Example:
    fields = {f: CONTENT_FREE for f in ctx.task.text_fields}
    return Example(guid="content-free", fields=fields, label=0)


def set_calibration(model: PromptClassifier, content_free_scores: torch.Tensor) -> None:
    model.class_offset = content_free_scores.float().log_softmax(-1).reshape(-1)
