"""Prompts: OpenPrompt-syntax templates, manual verbalizers, and the PVP that joins them to a tokenizer."""

from workbench.prompts.encoding import EncodedExample, PromptEncoder, collate
from workbench.prompts.template import Segment, Template, load_templates, parse_template
from workbench.prompts.verbalizer import Verbalizer, load_verbalizer

__all__ = [
    "EncodedExample", "PromptEncoder", "Segment", "Template", "Verbalizer", "collate", "load_templates",
    "load_verbalizer", "parse_template",
]
