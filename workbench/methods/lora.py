"""LoRA through PEFT, injected into the model in place; target modules chosen per architecture."""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import nn

from workbench.errors import ConfigError
from workbench.methods.base import BuildContext, freeze
from workbench.methods.heads import make_head
from workbench.training.classifier import PromptClassifier

# Attention query and value projections, as in Hu et al. (2021), by the names each family uses.
DEFAULT_TARGETS = {
    "llama": ["q_proj", "v_proj"], "gemma3_text": ["q_proj", "v_proj"], "gemma3": ["q_proj", "v_proj"],
    "gemma": ["q_proj", "v_proj"], "qwen2": ["q_proj", "v_proj"], "mistral": ["q_proj", "v_proj"],
    "gpt2": ["c_attn"], "bert": ["query", "value"], "roberta": ["query", "value"], "xlm-roberta": ["query", "value"],
    "deberta-v2": ["query_proj", "value_proj"], "distilbert": ["q_lin", "v_lin"],
}


@dataclass
class LoraOptions:
    r: int = 8
    alpha: int = 16
    dropout: float = 0.05
    target_modules: list[str] | None = None  # None: the architecture's default
    head: str = "verbalizer"


def linear_module_names(model: nn.Module) -> list[str]:
    return sorted({n.split(".")[-1] for n, m in model.named_modules() if isinstance(m, nn.Linear)})


def build(ctx: BuildContext, opts: LoraOptions) -> PromptClassifier:
    from peft import LoraConfig, inject_adapter_in_model

    model = ctx.backbone.model
    model_type = model.config.model_type
    targets = opts.target_modules or DEFAULT_TARGETS.get(model_type)
    available = linear_module_names(model)
    if targets is None:
        raise ConfigError(f"LoRA: no default target modules for model type {model_type!r}; pass "
                          f"--option target_modules=[...] from {available}")
    missing = [t for t in targets if t not in available]
    if missing:
        raise ConfigError(f"LoRA target module(s) {missing} do not exist in {model_type!r}; "
                          f"linear modules are {available}")
    if opts.r < 1:
        raise ConfigError("LoRA: r must be at least 1")
    head = make_head(ctx, opts.head, "lora")
    freeze(model)
    config = LoraConfig(r=opts.r, lora_alpha=opts.alpha, lora_dropout=opts.dropout, target_modules=targets)
    model = inject_adapter_in_model(config, model)
    for n, p in model.named_parameters():
        p.requires_grad_("lora_" in n)
    return PromptClassifier(model, head)
