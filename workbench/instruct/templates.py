"""Instruction templates (FLAN style) kept as YAML data files, one file per task, 10 templates each.

File format (see docs/instruct.md):

    task: rte                  # the mixture task these templates belong to
    dataset: rte               # optional: the dataset it reads (default: same as task)
    answers: ["yes", "no"]     # optional: option text per class, in label order
    templates:
      - input: "{sentence1} ... {options_}"
        target: "{answer}"
        turned_around: false   # optional; the turned-around ones come last

Placeholders are Python `str.format` fields: the task's fields, `answer`, and `options_` (FLAN's rendered
option list). `{{` and `}}` are literal braces. Every placeholder is checked against the task's fields when
the file is loaded, so a typo fails before any data is written, naming the file and line.
"""

from __future__ import annotations

import os
import string
from dataclasses import dataclass
from pathlib import Path

import yaml

from workbench.errors import ConfigError
from workbench.instruct.checks import read_text_lines

TEMPLATES_DIR_ENV = "WORKBENCH_TEMPLATES_DIR"
OPTIONS_FIELD = "options_"
TEMPLATES_PER_TASK = 10
MAX_TURNED_AROUND = 3


@dataclass(frozen=True)
class InstructionTemplate:
    template_id: int
    input: str
    target: str
    turned_around: bool
    line: int  # where it starts in its file, for error messages

    def fields(self) -> set[str]:
        return _placeholders(self.input) | _placeholders(self.target)

    @property
    def has_options(self) -> bool:
        return OPTIONS_FIELD in _placeholders(self.input)


@dataclass(frozen=True)
class TemplateSet:
    task: str
    dataset: str
    templates: tuple[InstructionTemplate, ...]
    answers: tuple[str, ...] | None
    path: str


def default_templates_dir() -> Path:
    env = os.environ.get(TEMPLATES_DIR_ENV)
    if env:
        return Path(env)
    from workbench.resources import instruct_templates_dir

    return instruct_templates_dir()


def _placeholders(text: str) -> set[str]:
    names = set()
    for _, name, _, _ in string.Formatter().parse(text):
        if name is not None:
            names.add(name)
    return names


def load_template_set(path: str | Path, available_fields: set[str] | None = None,
                      num_classes: int | None = None) -> TemplateSet:
    """Read and validate one template file. `available_fields` are the fields the task's examples have."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: template file not found; check --templates-dir or {TEMPLATES_DIR_ENV}")
    from workbench.config.yaml_io import parse_yaml

    # The shared loader: aliases (a "billion laughs" file), duplicate keys and bad UTF-8 are refused by line.
    text = "\n".join(line for _, line in read_text_lines(path, "template file (YAML)"))
    doc = parse_yaml(text, str(path))
    root, raw = doc.root, doc.data
    if not isinstance(raw, dict) or not isinstance(raw.get("templates"), list):
        raise ConfigError(f"{path}: expected a mapping with a 'templates' list")
    for key in ("task",):
        if not isinstance(raw.get(key), str):
            raise ConfigError(f"{path}: field {key!r} must be a string")
    if "dataset" in raw and not isinstance(raw["dataset"], str):
        raise ConfigError(f"{path}: field 'dataset' must be a string")
    lines = _template_lines(root)
    templates = []
    for i, item in enumerate(raw["templates"]):
        line = lines[i] if i < len(lines) else 0
        if not isinstance(item, dict):
            raise ConfigError(f"{path}: line {line}: template {i} must be a mapping with 'input' and 'target'")
        for key in ("input", "target"):
            if not isinstance(item.get(key), str) or not item[key].strip():
                raise ConfigError(f"{path}: line {line}: template {i}: field {key!r} must be a non-empty string")
        unknown = set(item) - {"input", "target", "turned_around"}
        if unknown:
            raise ConfigError(f"{path}: line {line}: template {i}: unknown key(s) {sorted(unknown)}")
        if not isinstance(item.get("turned_around", False), bool):
            raise ConfigError(f"{path}: line {line}: template {i}: 'turned_around' must be true or false, "
                              f"got {item['turned_around']!r}")
        try:
            tpl = InstructionTemplate(i, item["input"], item["target"], item.get("turned_around", False), line)
            tpl.fields()
        except ValueError as e:  # unbalanced braces
            raise ConfigError(f"{path}: line {line}: template {i}: bad placeholder syntax ({e})") from None
        if available_fields is not None:
            allowed = available_fields | {"answer", OPTIONS_FIELD}
            missing = sorted(tpl.fields() - allowed)
            if missing:
                raise ConfigError(
                    f"{path}: line {line}: template {i} uses {{{missing[0]}}}, which task {raw['task']!r} does not "
                    f"have (fields: {', '.join(sorted(allowed))})"
                )
        if OPTIONS_FIELD in _placeholders(tpl.target):
            raise ConfigError(f"{path}: line {line}: template {i}: {{{OPTIONS_FIELD}}} belongs in the input")
        templates.append(tpl)
    _check_layout(path, templates)
    answers = raw.get("answers")
    if answers is not None:
        if not isinstance(answers, list) or not all(isinstance(a, str) for a in answers):
            raise ConfigError(f"{path}: 'answers' must be a list of strings")
        if num_classes is not None and len(answers) != num_classes:
            raise ConfigError(f"{path}: 'answers' has {len(answers)} entries, task has {num_classes} classes")
    return TemplateSet(task=raw["task"], dataset=str(raw.get("dataset", raw["task"])), templates=tuple(templates),
                       answers=tuple(answers) if answers else None, path=str(path))


def _check_layout(path: Path, templates: list[InstructionTemplate]) -> None:
    if len(templates) != TEMPLATES_PER_TASK:
        raise ConfigError(f"{path}: {len(templates)} templates, expected {TEMPLATES_PER_TASK}")
    # As in FLAN, turned-around templates are the last ones, so "the first N templates" ablations stay plain.
    flags = [t.turned_around for t in templates]
    n_turned = sum(flags)
    if n_turned > MAX_TURNED_AROUND or any(flags[: len(flags) - n_turned]):
        raise ConfigError(f"{path}: at most {MAX_TURNED_AROUND} turned-around templates, and only at the end")


def _template_lines(root) -> list[int]:
    """1-based start line of each item of the top-level 'templates' list."""
    if not isinstance(root, yaml.MappingNode):
        return []
    for key, value in root.value:
        if getattr(key, "value", None) == "templates" and isinstance(value, yaml.SequenceNode):
            return [item.start_mark.line + 1 for item in value.value]
    return []


def render_options(options: tuple[str, ...] | list[str]) -> str:
    """FLAN's `{options_}`: the literal OPTIONS: and one `- option` line per option."""
    return "OPTIONS:\n" + "\n".join(f"- {o}" for o in options)


def render(template: InstructionTemplate, fields: dict[str, str], options: tuple[str, ...] | None,
           with_options: bool) -> tuple[str, str]:
    """Fill a template. Without options, `{options_}` is deleted (as FLAN v2 builds its no-options variants)."""
    values = dict(fields)
    values[OPTIONS_FIELD] = render_options(options) if (with_options and options) else ""
    inputs = template.input.format(**values)
    targets = template.target.format(**values)
    return inputs.rstrip(), targets.strip()
