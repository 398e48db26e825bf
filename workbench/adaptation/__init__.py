"""Adaptation methods: each module defines one method (or two close ones) and registers it.

`get_method(name)`, `all_methods()` and `register_method(Method(...))` are the interface; see
`workbench.adaptation.registry` for what a method declares.
"""

from workbench.adaptation.registry import (BuildContext, Method, MethodRegistry, all_methods, freeze, get_method,
                                           method_for_options, register_method)

# The built-in methods register themselves on import.
from workbench.adaptation import bitfit, finetune, icl, lora, pet, prefix, prompt_finetune, soft_prompts  # noqa: E402,F401,I001

__all__ = ["BuildContext", "Method", "MethodRegistry", "all_methods", "freeze", "get_method", "method_for_options",
           "register_method"]
