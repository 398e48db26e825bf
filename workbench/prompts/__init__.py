"""Prompts: OpenPrompt-syntax templates, manual verbalizers, and the PVP that joins them to a tokenizer.

The encoder (which needs torch) is imported on first use, so that checking a config or a prompt file
does not wait for torch.
"""

import importlib

from workbench.prompts.file_check import Problem, check_files, format_problems
from workbench.prompts.template import Segment, Template, load_templates, parse_template
from workbench.prompts.verbalizer import Verbalizer, load_verbalizer

_LAZY = {"EncodedExample": "workbench.prompts.encoding", "PromptEncoder": "workbench.prompts.encoding",
         "collate": "workbench.prompts.encoding"}

__all__ = [
    "EncodedExample", "Problem", "PromptEncoder", "Segment", "Template", "Verbalizer", "check_files", "collate",
    "format_problems", "load_templates", "load_verbalizer", "parse_template",
]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'workbench.prompts' has no attribute {name!r}")
