"""Prefix tuning (Li & Liang 2021) and P-tuning v2 (Liu et al. 2022): trainable key/value prefixes at
every layer, through PEFT, which handles both causal and masked LMs in transformers 5. The backbone is
frozen; P-tuning v2 differs by default in using no reparameterisation and a linear classification head."""

from __future__ import annotations

from dataclasses import dataclass

from workbench.adaptation.head_choice import HEAD_HELP, HEADS, make_head
from workbench.adaptation.registry import BuildContext, Method, freeze, register_method
from workbench.config import Categorical, Float, MethodOptions, SearchSpace, option


@dataclass
class PrefixOptions(MethodOptions):
    num_virtual_tokens: int = option(10, min=1, max=1024, help="prefix length at every layer")
    projection: bool = option(True, help="the MLP reparameterisation of Li & Liang")
    encoder_hidden_size: int = option(512, min=1, max=65536, help="hidden size of the reparameterisation MLP")
    init_std: float = option(0.02, min=0, max=10, help="prefixes start near zero (PEFT's N(0, 1) hides the zero-shot "
                                               "model)")
    head: str = option("verbalizer", choices=HEADS, help=HEAD_HELP)


@dataclass
class PTuningV2Options(PrefixOptions):
    projection: bool = option(False, help="the MLP reparameterisation (off in P-tuning v2)")
    head: str = option("linear", choices=HEADS, help=HEAD_HELP)


def build(ctx: BuildContext, opts: PrefixOptions):
    from peft import PrefixTuningConfig, TaskType, get_peft_model

    from workbench.models.backbone import ModelKind
    from workbench.training.classifier import PromptClassifier

    kind = ctx.backbone.kind
    head = make_head(ctx, opts.head)
    freeze(ctx.backbone.model)
    config = PrefixTuningConfig(
        task_type=TaskType.CAUSAL_LM if kind == ModelKind.CAUSAL else TaskType.FEATURE_EXTRACTION,
        num_virtual_tokens=opts.num_virtual_tokens, prefix_projection=opts.projection,
        encoder_hidden_size=opts.encoder_hidden_size,
    )
    model = get_peft_model(ctx.backbone.model, config)
    _start_small(model.prompt_encoder[model.active_adapter], opts.init_std)
    return PromptClassifier(model, head)


def _start_small(encoder, std: float) -> None:
    """PEFT draws prefix embeddings from N(0, 1): keys and values far larger than the model's own, which
    wipes out the label-word reading a verbalizer head starts from (runs sat at chance). Start the
    prefixes near zero instead, so training begins from the zero-shot model."""
    import torch

    with torch.no_grad():
        encoder.embedding.weight.normal_(0.0, std)
        transform = getattr(encoder, "transform", None)
        if transform is not None:  # the reparameterisation's last layer decides the prefix scale
            transform[-1].weight.normal_(0.0, std)
            transform[-1].bias.zero_()


register_method(Method(
    name="prefix-tuning", summary="frozen backbone, key/value prefixes at every layer, MLP reparameterisation (PEFT)",
    options=PrefixOptions, build=build, default_lr=5e-3, generates=True,
    space=SearchSpace({"train.lr": Float(1e-3, 3e-2, log=True),
                       "method.num_virtual_tokens": Categorical([5, 10, 20]),
                       "method.encoder_hidden_size": Categorical([256, 512]), "train.warmup_ratio": Float(0.0, 0.2)}),
))

register_method(Method(
    name="p-tuning-v2", summary="deep prompts at every layer, no reparameterisation, linear head by default (PEFT)",
    options=PTuningV2Options, build=build, default_lr=5e-3, generates=True,
    space=SearchSpace({"train.lr": Float(1e-3, 3e-2, log=True),
                       "method.num_virtual_tokens": Categorical([5, 10, 20]), "train.warmup_ratio": Float(0.0, 0.2)}),
))
