"""The run config (`RunConfig`): one typed tree for everything a run needs, mapped one-to-one onto YAML.

    task: sst2            # a built-in name, a task YAML file, or a TaskSpec object
    model: smollm2-135m
    shots: 16
    seed: 13
    method: {name: lora, r: 4}      # or just `method: lora`
    prompt: {template_id: 0}
    train: {lr: 5.0e-4, max_steps: 30}
    eval: {limit: 200}
    tracking: {save: auto}

Overrides use dotted paths (`train.lr=1e-4 method.r=4`) and are applied by `with_overrides`. Field
roles (study, search, budget, neutral: see `workbench.config.fields`) are metadata on the fields; what
identifies a run or a study is computed from them, never listed by hand.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar

from workbench.config.fields import SEED_MAX, TOKENS_MAX, MethodOptions, Section, declared_fields, meta, option, validate
from workbench.config.sections import (DEFAULT_MODEL, EvalConfig, TrackingConfig, TrainConfig, build_section,
                                       did_you_mean, flat)
from workbench.data.tasks import TaskSpec
from workbench.errors import ConfigError
from workbench.prompts.template import Template
from workbench.prompts.verbalizer import Verbalizer

DEFAULT_METHOD = "prompt-finetune"


@dataclass
class PromptConfig(Section):
    section: ClassVar[str] = "prompt"
    template: str | Template | None = option(
        None, role="search", help="template file (one OpenPrompt-syntax template per line) or a Template object; "
                                  "default: the task's built-in file")
    template_id: int = option(0, min=0, max=100_000, help="0-based line number of the template in the template file")
    verbalizer: str | Verbalizer | None = option(
        None, role="search", help="verbalizer file (one line of label words per class) or a Verbalizer object; "
                                  "default: the task's built-in file")
    multi_token: str | None = option(None, choices=("first", "mean"),
                                     help="how label words of several tokens are scored (required for such words)")
    max_seq_length: int = option(128, min=8, max=TOKENS_MAX,
                                 help="tokens per input, template included (capped by the model)")


SECTIONS: dict[str, type[Section]] = {"prompt": PromptConfig, "train": TrainConfig, "eval": EvalConfig,
                                      "tracking": TrackingConfig}


@dataclass
class RunConfig(Section):
    """One method on one few-shot split: what `workbench.train` runs.

    Strings are accepted for convenience where an object is meant: `method="lora"` is that method's
    default options, `method={"name": "lora", "r": 4}` sets some; a section may be given as a dict.
    """

    task: str | TaskSpec = option("sst2", role="study", help="built-in task name, task YAML file or TaskSpec")
    model: str = option(DEFAULT_MODEL, role="study", help="offline alias, local folder or Hugging Face id")
    shots: int = option(16, role="study", min=0, max=100_000,
                        help="training examples per class (the dev split: the same); 0: "
                             "no labelled examples (zero-shot PET/iPET)")
    seed: int = option(13, role="study", min=0, max=SEED_MAX, help="seed of the few-shot split and of training")
    method: Any = field(default=DEFAULT_METHOD)  # a MethodOptions object; its class names the method
    prompt: PromptConfig = field(default_factory=PromptConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)

    def __post_init__(self) -> None:
        self.method = method_options(self.method)
        for name, cls in SECTIONS.items():
            value = getattr(self, name)
            if isinstance(value, dict):
                setattr(self, name, build_section(cls, value, name))
            elif not isinstance(value, cls):
                raise ConfigError(f"{name}: expected a {cls.__name__} or a mapping, got {type(value).__name__}",
                                  field=name)
        validate(self)

    @property
    def method_name(self) -> str:
        from workbench.adaptation.registry import method_for_options  # see `method_options`

        return method_for_options(self.method).name

    @property
    def task_name(self) -> str:
        return self.task.name if isinstance(self.task, TaskSpec) else self.task

    def validate(self) -> RunConfig:
        """Check every field again (a field may have been set after construction); returns self."""
        for name in SECTIONS:
            validate(getattr(self, name))
        validate(self.method)
        validate(self)
        return self

    def to_dict(self) -> dict:
        return to_dict(self)

    @classmethod
    def from_dict(cls, raw: dict, source: str | None = None) -> RunConfig:
        """From the YAML tree; every error names the field's dotted path, and `source` (a file) when given."""
        try:
            return build_run(raw)
        except ConfigError as e:
            if source is None:
                raise
            raise ConfigError(f"{source}: {e}", field=e.field) from None

    def with_overrides(self, overrides: dict[str, Any], source: str | None = None) -> RunConfig:
        """A new config with dotted-path overrides applied (`{"train.lr": 1e-4, "method.r": 4}`)."""
        raw = self.to_dict()
        # Objects that have no YAML form (a TaskSpec, a Template) are kept as they are.
        raw["task"] = self.task
        raw["prompt"] = {**raw["prompt"], "template": self.prompt.template, "verbalizer": self.prompt.verbalizer}
        return RunConfig.from_dict(apply_overrides(raw, overrides, source), source)


# ---- building from plain data ---------------------------------------------------------------------------

def method_options(value: Any) -> MethodOptions:
    """A method's options object from an options object, a method name, or {name: ..., option: value}."""
    # Imported here: the registry loads the built-in methods, and they torch; a config is read and checked in
    # processes that never train (`workbench --help`, `workbench methods`, the CLI's checks before a model loads).
    from workbench.adaptation.registry import get_method, method_for_options

    if isinstance(value, MethodOptions):
        method_for_options(value)  # refuses an options class that no method registered
        return value
    if isinstance(value, str):
        return get_method(value).options()
    if isinstance(value, dict):
        if "name" not in value:
            raise ConfigError("method: a mapping needs 'name' (the method), e.g. {name: lora, r: 4}", field="method")
        values = dict(value)
        m = get_method(values.pop("name"))
        return build_section(m.options, values, "method")
    raise ConfigError(f"method: {value!r} is not allowed; expected a method name, a mapping with 'name', or a "
                      f"MethodOptions object", field="method")


def build_run(raw: Any) -> RunConfig:
    if not isinstance(raw, dict):
        raise ConfigError(f"expected a mapping of run fields, got {type(raw).__name__}")
    top = [f.name for f in dataclasses.fields(RunConfig)]
    unknown = [k for k in raw if k not in top]
    if unknown:
        paths = all_paths(None)
        suggestions = [p for p in paths if p.split(".")[-1] == unknown[0]]
        hint = f" (did you mean {suggestions[0]}?)" if suggestions else did_you_mean(unknown[0], top)
        raise ConfigError(f"unknown field(s) {sorted(map(str, unknown))}{hint}; top-level fields: {', '.join(top)}",
                          field=str(unknown[0]))
    return RunConfig(**raw)


def plain(value: Any) -> Any:
    """A config value as YAML can hold it: objects become their name, path or text."""
    if isinstance(value, TaskSpec):
        return value.source if value.source not in ("builtin", "") else value.name
    if isinstance(value, Template):
        return value.text or value.source
    if isinstance(value, Verbalizer):
        return [list(w) for w in value.words]
    if isinstance(value, tuple):
        return list(value)
    return value


def section_dict(section: Any) -> dict:
    """A section's declared fields as YAML can hold them."""
    return {k.name: plain(getattr(section, k.name)) for k in declared_fields(type(section))}


def to_dict(cfg: RunConfig) -> dict:
    out: dict[str, Any] = {}
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if f.name == "method":
            out["method"] = {"name": cfg.method_name, **section_dict(value)}
        elif isinstance(value, Section):
            out[f.name] = section_dict(value)
        else:
            out[f.name] = plain(value)
    return out


def apply_overrides(raw: dict, overrides: dict[str, Any], source: str | None) -> dict:
    """Set dotted paths in a config tree: `train.lr`, `method.r`, `seed`. Unknown paths are refused here,
    with the closest known path, so a typo never silently does nothing."""
    raw = {k: (dict(v) if isinstance(v, dict) else v) for k, v in raw.items()}
    for path, value in overrides.items():
        head, _, rest = path.partition(".")
        if not rest:
            current = raw.get("method")
            current_name = current.get("name") if isinstance(current, dict) else current
            if head == "method" and value == current_name:
                continue  # the same method again (`--method lora` over a lora config file) keeps its options
            raw[head] = value  # a new method starts from its own defaults, not the old method's options
            continue
        if head == "method":
            current = raw.get("method", DEFAULT_METHOD)
            raw["method"] = {"name": current} if isinstance(current, str) else dict(current)
        elif head not in SECTIONS:
            raise ConfigError(f"{source or 'override'}: no config section {head!r} in {path!r}; sections are "
                              f"{', '.join(['method', *SECTIONS])}", field=path)
        raw.setdefault(head, {})
        raw[head][rest] = value
    return raw


# ---- roles and paths ------------------------------------------------------------------------------------

def top_level_fields() -> list[str]:
    """The declared fields at the top of the tree (task, model, shots, seed): not in a section."""
    return [f.name for f in declared_fields(RunConfig)]


def section_fields(method_cls: type | None) -> list[tuple[str, dataclasses.Field]]:
    """(dotted path, field) for every declared field of the tree, method options included when given."""
    out = [(f.name, f) for f in declared_fields(RunConfig)]
    for name, cls in SECTIONS.items():
        out += [(f"{name}.{f.name}", f) for f in declared_fields(cls)]
    if method_cls is not None:
        out += [(f"method.{f.name}", f) for f in declared_fields(method_cls)]
    return out


def all_paths(method_cls: type | None) -> list[str]:
    return [p for p, _ in section_fields(method_cls)]


def paths_with_role(role: str, method_cls: type | None = None) -> list[str]:
    return [p for p, f in section_fields(method_cls) if meta(f, "role") == role]


def resolve_path(name: str, method_cls: type | None, source: str = "parameter") -> str:
    """A dotted path from a dotted path or a short name (`lr` -> `train.lr`, `r` -> `method.r`).

    A short name must name exactly one searchable field; method options win, since `--param` and
    `--option` mostly name them."""
    paths = all_paths(method_cls)
    if name in paths:
        return name
    if "." not in name:
        searchable = [p for p, f in section_fields(method_cls) if meta(f, "role") == "search"]
        matches = [p for p in searchable if p.split(".")[-1] == name]
        if len(matches) > 1:
            matches = [p for p in matches if p.startswith("method.")] or matches
        if len(matches) == 1:
            return matches[0]
    hint = did_you_mean(name, paths)
    raise ConfigError(f"{source}: {name!r} is not a config field{hint}; searchable fields: "
                      f"{', '.join(paths_with_role('search', method_cls))}", field=name)


def identity(cfg: RunConfig, drop_roles: tuple[str, ...] = ("neutral",)) -> dict[str, Any]:
    """The flattened config without fields of `drop_roles`: equal identities mean the same experiment."""
    dropped = set()
    for role in drop_roles:
        dropped.update(paths_with_role(role, type(cfg.method)))
    return {k: v for k, v in flat(cfg.to_dict()).items() if k not in dropped}
