"""Adaptation methods behind one interface; `METHODS` maps a name to its options and builder."""

from workbench.methods import finetune, icl, prompt_finetune
from workbench.methods.base import BuildContext, MethodSpec
from workbench.errors import WorkbenchError

METHODS: dict[str, MethodSpec] = {
    m.name: m
    for m in (
        MethodSpec("finetune", finetune.FinetuneOptions, finetune.build,
                   "all weights + a linear classification head", uses_verbalizer=False, default_lr=1e-5),
        MethodSpec("prompt-finetune", prompt_finetune.PromptFinetuneOptions, prompt_finetune.build,
                   "all weights, cloze template + label words (LM-BFF/PET)", default_lr=1e-5),
        MethodSpec("icl", icl.ICLOptions, icl.build,
                   "no training: zero/few-shot demonstrations, optional contextual calibration", trains=False),
    )
}


def get_method(name: str) -> MethodSpec:
    if name not in METHODS:
        raise WorkbenchError(f"unknown method {name!r}; methods are {', '.join(METHODS)}")
    return METHODS[name]


__all__ = ["METHODS", "BuildContext", "MethodSpec", "get_method"]
