"""LoRA through PEFT, injected into the model in place; target modules chosen per architecture."""

from __future__ import annotations

from dataclasses import dataclass

from workbench.adaptation.head_choice import HEAD_HELP, HEADS, make_head
from workbench.adaptation.registry import BuildContext, Method, freeze, register_method
from workbench.config import Categorical, Float, MethodOptions, SearchSpace, option
from workbench.errors import ConfigError

# Attention query and value projections, as in Hu et al. (2021), by the names each family uses.
DEFAULT_TARGETS = {
    "llama": ["q_proj", "v_proj"], "gemma3_text": ["q_proj", "v_proj"], "gemma3": ["q_proj", "v_proj"],
    "gemma": ["q_proj", "v_proj"], "qwen2": ["q_proj", "v_proj"], "mistral": ["q_proj", "v_proj"],
    "gpt2": ["c_attn"], "bert": ["query", "value"], "roberta": ["query", "value"], "xlm-roberta": ["query", "value"],
    "deberta-v2": ["query_proj", "value_proj"], "distilbert": ["q_lin", "v_lin"],
}


@dataclass
class LoraOptions(MethodOptions):
    r: int = option(8, min=1, max=1024, help="rank of the low-rank update")
    alpha: int = option(16, min=1, max=65536, help="scaling numerator: the update is scaled by alpha / r")
    dropout: float = option(0.05, min=0, max=0.9, help="dropout on the adapter's input")
    target_modules: list[str] | None = option(None, help="names of the linear modules to adapt; null: the "
                                                         "architecture's query and value projections")
    head: str = option("verbalizer", choices=HEADS, help=HEAD_HELP)


def linear_module_names(model) -> list[str]:
    from torch import nn

    return sorted({n.split(".")[-1] for n, m in model.named_modules() if isinstance(m, nn.Linear)})


def build(ctx: BuildContext, opts: LoraOptions):
    from peft import LoraConfig, inject_adapter_in_model

    from workbench.training.classifier import PromptClassifier

    model = ctx.backbone.model
    model_type = model.config.model_type
    targets = opts.target_modules or DEFAULT_TARGETS.get(model_type)
    available = linear_module_names(model)
    if targets is None:
        raise ConfigError(f"method.target_modules: no default target modules for model type {model_type!r}; "
                          f"choose from {available}", field="method.target_modules")
    missing = [t for t in targets if t not in available]
    if missing:
        raise ConfigError(f"method.target_modules: {missing} do not exist in {model_type!r}; "
                          f"linear modules are {available}", field="method.target_modules")
    head = make_head(ctx, opts.head)
    freeze(model)
    config = LoraConfig(r=opts.r, lora_alpha=opts.alpha, lora_dropout=opts.dropout, target_modules=targets)
    model = inject_adapter_in_model(config, model)
    for n, p in model.named_parameters():
        p.requires_grad_("lora_" in n)
    return PromptClassifier(model, head)


register_method(Method(
    name="lora", summary="low-rank adapters on attention projections (PEFT)", options=LoraOptions, build=build,
    default_lr=5e-4, generates=True,
    space=SearchSpace({"train.lr": Float(1e-4, 3e-3, log=True), "method.r": Categorical([4, 8, 16]),
                       "method.alpha": Categorical([8, 16, 32]), "method.dropout": Float(0.0, 0.1),
                       "train.warmup_ratio": Float(0.0, 0.2)}),
))
