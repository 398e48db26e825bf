"""Prefix tuning (Li & Liang 2021) and P-tuning v2 (Liu et al. 2022): trainable key/value prefixes at
every layer, through PEFT, which handles both causal and masked LMs in transformers 5. The backbone is
frozen; P-tuning v2 differs by default in using no reparameterisation and a linear classification head."""

from __future__ import annotations

from dataclasses import dataclass

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
    return PromptClassifier(model, head)
