"""Full fine-tuning: all weights and a new linear classification head, the baseline every method is compared with.

Its defaults were chosen by measurement (benchmarks/RESULTS.md, "A fine-tuning baseline worth beating"): with
16 examples per class a randomly initialised head at the body's learning rate barely moves in 30 steps and the
baseline sits at chance. The head gets its own, larger rate and reads the mean of the final hidden states, which
separates the classes better than a causal LM's last token.
"""

from __future__ import annotations

from dataclasses import dataclass

from workbench.adaptation.registry import BuildContext, Method, register_method
from workbench.config import Categorical, Float, MethodOptions, SearchSpace, option
from workbench.config.fields import LR_MAX


@dataclass
class FinetuneOptions(MethodOptions):
    dropout: float = option(0.1, min=0, max=0.9, help="dropout before the classification head")
    pooling: str = option("mean", choices=("mean", "readout"),
                          help="features for the head: the mean of the final hidden states over the input's tokens, "
                               "or the state at the read-out position ([CLS], or the last token of a causal LM)")
    head_lr: float | None = option(
        1e-2, above=0, max=LR_MAX, help="learning rate of the new classification head; null: train.lr. The head "
                                        "starts from random weights and needs a far larger rate than the pretrained "
                                        "body")
    head_init: str = option("random", choices=("random", "probe"),
                            help="random, or probe: fit a logistic regression on the frozen body's features of the "
                                 "training examples first and start the head there (linear probing, then "
                                 "fine-tuning: LP-FT)")


def build(ctx: BuildContext, opts: FinetuneOptions):
    from workbench.training.classifier import PromptClassifier
    from workbench.training.heads import LinearHead

    bb = ctx.backbone
    head = None if ctx.objective == "generate" else LinearHead(bb.hidden_size, ctx.task.num_classes, opts.dropout,
                                                               opts.pooling)
    for p in bb.model.parameters():
        p.requires_grad_(True)
    return PromptClassifier(bb.model, head, head_lr=opts.head_lr)


def fit_head(ctx: BuildContext, opts: FinetuneOptions, model, encoder):
    """LP-FT's first stage: the head starts as a logistic regression fitted on the untouched body's features."""
    if opts.head_init != "probe":
        return encoder
    import numpy as np
    import torch
    from sklearn.linear_model import LogisticRegression

    from workbench.prompts.encoding import collate

    device = next(model.parameters()).device
    examples = [encoder.encode(e) for e in ctx.split.train]
    was_training = model.training
    model.eval()
    with torch.no_grad():
        batch = {k: v.to(device) for k, v in collate(examples, encoder.tokenizer.pad_token_id).items()}
        inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
        features = model.head.features(model.model, batch["readout"], **inputs).float().cpu().numpy()
    model.train(was_training)
    labels = np.array([e.label for e in examples])
    probe = LogisticRegression(max_iter=2000).fit(features, labels)
    coef, bias = probe.coef_, probe.intercept_
    if coef.shape[0] == 1:  # binary: sklearn keeps one row; the head scores each class
        coef, bias = np.concatenate([-coef / 2, coef / 2]), np.concatenate([-bias / 2, bias / 2])
    weight = torch.zeros_like(model.head.proj.weight)
    weight[probe.classes_] = torch.as_tensor(coef, dtype=weight.dtype, device=weight.device)
    with torch.no_grad():
        model.head.proj.weight.copy_(weight)
        model.head.proj.bias.zero_()
        model.head.proj.bias[probe.classes_] = torch.as_tensor(bias, dtype=weight.dtype, device=weight.device)
    return encoder


register_method(Method(
    name="finetune", summary="all weights + a linear classification head", options=FinetuneOptions, build=build,
    # 16 examples a step: at 8 the baseline fell below 60% on a protocol seed (RESULTS.md). It trains on more
    # examples per step than the other methods at the same step budget, which favours the baseline.
    default_lr=2e-5, default_batch_size=16, uses_verbalizer=False, after_build=fit_head, generates=True,
    # Kept small: it is also the baseline a sweep of another method is compared with.
    space=SearchSpace({"train.lr": Float(5e-6, 1e-4, log=True), "method.head_lr": Float(1e-3, 3e-2, log=True),
                       "train.warmup_ratio": Float(0.0, 0.2), "method.dropout": Categorical([0.0, 0.1])}),
))
