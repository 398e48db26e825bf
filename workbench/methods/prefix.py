"""Prefix tuning (Li & Liang 2021) and P-tuning v2 (Liu et al. 2022): trainable key/value prefixes at
every layer, through PEFT, which handles both causal and masked LMs in transformers 5. The backbone is
frozen; P-tuning v2 differs by default in using no reparameterisation and a linear classification head."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from workbench.errors import ConfigError
from workbench.methods.base import BuildContext, freeze
from workbench.methods.heads import make_head
from workbench.models.backbone import ModelKind
from workbench.training.classifier import PromptClassifier


@dataclass
class PrefixOptions:
    num_virtual_tokens: int = 10
    projection: bool = True  # the MLP reparameterisation of Li & Liang
    encoder_hidden_size: int = 512
    init_std: float = 0.02  # prefixes start near zero (PEFT's default N(0, 1) hides the zero-shot model)
    head: str = "verbalizer"


@dataclass
class PTuningV2Options(PrefixOptions):
    projection: bool = False
    head: str = "linear"


def build(ctx: BuildContext, opts: PrefixOptions) -> PromptClassifier:
    from peft import PrefixTuningConfig, TaskType, get_peft_model

    kind = ctx.backbone.kind
    if kind == ModelKind.ENCODER and opts.head == "verbalizer":
        raise ConfigError("prefix tuning with the verbalizer head needs an LM head; use --head linear")
    if opts.num_virtual_tokens < 1:
        raise ConfigError("prefix tuning: num_virtual_tokens must be at least 1")
    head = make_head(ctx, opts.head, "prefix-tuning")
    freeze(ctx.backbone.model)
    config = PrefixTuningConfig(
        task_type=TaskType.CAUSAL_LM if kind == ModelKind.CAUSAL else TaskType.FEATURE_EXTRACTION,
        num_virtual_tokens=opts.num_virtual_tokens, prefix_projection=opts.projection,
        encoder_hidden_size=opts.encoder_hidden_size,
    )
    model = get_peft_model(ctx.backbone.model, config)
    _start_small(model.prompt_encoder[model.active_adapter], opts.init_std)
    return PromptClassifier(model, head)


def _start_small(encoder: nn.Module, std: float) -> None:
    """PEFT draws prefix embeddings from N(0, 1): keys and values far larger than the model's own, which
    wipes out the label-word reading a verbalizer head starts from (runs sat at chance). Start the
    prefixes near zero instead, so training begins from the zero-shot model."""
    with torch.no_grad():
        encoder.embedding.weight.normal_(0.0, std)
        transform = getattr(encoder, "transform", None)
        if transform is not None:  # the reparameterisation's last layer decides the prefix scale
            transform[-1].weight.normal_(0.0, std)
            transform[-1].bias.zero_()
