"""The interface every adaptation method implements, and the registry that maps a name to it.

A method is a small options dataclass plus a `build` function: given the backbone and the prompt
context, it freezes what it does not train, adds what it does (a head, soft prompts, adapters), and
returns a PromptClassifier. Adding a method means adding one module and one registry line.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from workbench.errors import ConfigError
from workbench.models.backbone import Backbone
from workbench.prompts.template import Template
from workbench.prompts.verbalizer import LabelWordIds, Verbalizer
from workbench.tasks.fewshot import FewShotSplit
from workbench.tasks.registry import TaskSpec
from workbench.training.classifier import PromptClassifier


@dataclass
class BuildContext:
    backbone: Backbone
    task: TaskSpec
    template: Template | None  # None for methods that read plain input
    verbalizer: Verbalizer | None
    label_words: LabelWordIds | None
    split: FewShotSplit
    seed: int


@dataclass(frozen=True)
class MethodSpec:
    name: str
    options: type  # a dataclass of the method's own options
    build: Callable[[BuildContext, Any], PromptClassifier]
    summary: str
    uses_verbalizer: bool = True  # needs a template with a mask and label words
    trains: bool = True
    default_lr: float = 1e-5
    # Rewrites the template before encoding (P-tuning adds soft slots when the template has none).
    adapt_template: Callable[[Template, Any], Template] | None = None
    # Positions the method adds to every input (prompt tuning's virtual tokens): they count against the context.
    extra_tokens: Callable[[Any], int] | None = None

    def parse_options(self, raw: dict | None) -> Any:
        raw = dict(raw or {})
        names = {f.name for f in dataclasses.fields(self.options)}
        unknown = set(raw) - names
        if unknown:
            raise ConfigError(
                f"method {self.name!r} has no option(s) {sorted(unknown)}; its options are {sorted(names) or 'none'}"
            )
        try:
            return self.options(**raw)
        except (TypeError, ValueError) as e:
            raise ConfigError(f"method {self.name!r}: {e}") from None


def freeze(module) -> None:
    for p in module.parameters():
        p.requires_grad_(False)
