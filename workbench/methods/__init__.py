"""Adaptation methods behind one interface; `METHODS` maps a name to its options and builder."""

from workbench.errors import WorkbenchError
from workbench.methods import bitfit, finetune, icl, lora, prefix, prompt_finetune, soft_prompts
from workbench.methods.base import BuildContext, MethodSpec

METHODS: dict[str, MethodSpec] = {
    m.name: m
    for m in (
        MethodSpec("finetune", finetune.FinetuneOptions, finetune.build,
                   "all weights + a linear classification head", uses_verbalizer=False),
        MethodSpec("prompt-finetune", prompt_finetune.PromptFinetuneOptions, prompt_finetune.build,
                   "all weights, cloze template + label words (LM-BFF/PET)"),
        MethodSpec("prompt-tuning", soft_prompts.PromptTuningOptions, soft_prompts.build_prompt_tuning,
                   "frozen backbone, n soft tokens prepended (Lester et al.)", default_lr=3e-2,
                   extra_tokens=lambda o: o.num_virtual_tokens),
        MethodSpec("p-tuning", soft_prompts.PTuningOptions, soft_prompts.build_p_tuning,
                   "soft tokens inside the template from an LSTM/MLP prompt encoder (Liu et al.)",
                   default_lr=1e-3, adapt_template=soft_prompts.add_soft_slots),
        MethodSpec("prefix-tuning", prefix.PrefixOptions, prefix.build,
                   "frozen backbone, key/value prefixes at every layer, MLP reparameterisation (PEFT)",
                   default_lr=5e-3),
        MethodSpec("p-tuning-v2", prefix.PTuningV2Options, prefix.build,
                   "deep prompts at every layer, no reparameterisation, linear head by default (PEFT)",
                   default_lr=5e-3),
        MethodSpec("lora", lora.LoraOptions, lora.build, "low-rank adapters on attention projections (PEFT)",
                   default_lr=5e-4),
        MethodSpec("bitfit", bitfit.BitFitOptions, bitfit.build, "bias terms only (optionally norm gains)",
                   default_lr=1e-3),
        MethodSpec("icl", icl.ICLOptions, icl.build,
                   "no training: zero/few-shot demonstrations, optional contextual calibration", trains=False),
    )
}


def get_method(name: str) -> MethodSpec:
    if name not in METHODS:
        raise WorkbenchError(f"unknown method {name!r}; methods are {', '.join(METHODS)}")
    return METHODS[name]


__all__ = ["METHODS", "BuildContext", "MethodSpec", "get_method"]
