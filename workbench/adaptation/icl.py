"""In-context learning: no training. Zero-shot (no demonstrations) or few-shot demonstrations drawn
from the k-shot training split, optionally with contextual calibration (Zhao et al. 2021): the class
log-probabilities of a content-free input ("N/A") are subtracted from every prediction."""

from __future__ import annotations

import random
from dataclasses import dataclass

from workbench.adaptation.head_choice import make_head
from workbench.adaptation.registry import BuildContext, Method, freeze, register_method
from workbench.config import Categorical, MethodOptions, SearchSpace, option
from workbench.data.tasks import Example

CONTENT_FREE = "N/A"


@dataclass
class ICLOptions(MethodOptions):
    demos_per_class: int = option(1, min=0, max=64, help="demonstrations per class before each input (0 = zero-shot)")
    calibrate: bool = option(False, help="contextual calibration: subtract the scores of a content-free input")
    separator: str = option("\n\n", help="text between demonstrations and before the input")


def build(ctx: BuildContext, opts: ICLOptions):
    from workbench.training.classifier import PromptClassifier

    freeze(ctx.backbone.model)
    return PromptClassifier(ctx.backbone.model, make_head(ctx, "verbalizer"))


def demonstrations(ctx: BuildContext, opts: ICLOptions) -> str:
    """The same demonstrations for every test example of a run, chosen with the run's seed."""
    from workbench.prompts.encoding import render

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


def add_demonstrations(ctx: BuildContext, opts: ICLOptions, model, encoder):
    """Put the demonstrations in front of every input, and calibrate on the content-free input if asked."""
    import torch

    from workbench.prompts import PromptEncoder
    from workbench.training import predict

    demos = demonstrations(ctx, opts)
    tokenizer = encoder.tokenizer
    # Demonstrations come on top of the query's own length budget; the model's context still caps both.
    demo_len = len(tokenizer(demos, add_special_tokens=False)["input_ids"])
    encoder = PromptEncoder(encoder.template, tokenizer, encoder.kind, encoder.text_fields,
                            min(encoder.max_length + demo_len, ctx.backbone.max_length), prefix_text=demos)
    if opts.calibrate:
        scores = predict(model, [encoder.encode(content_free_example(ctx))], tokenizer.pad_token_id)
        model.class_offset = torch.from_numpy(scores).float().log_softmax(-1).reshape(-1)
    return encoder


register_method(Method(
    name="icl", summary="no training: zero/few-shot demonstrations, optional contextual calibration",
    options=ICLOptions, build=build, trains=False, after_build=add_demonstrations,
    space=SearchSpace({"method.demos_per_class": Categorical([0, 1, 2]),
                       "method.calibrate": Categorical([False, True])}),
))
