"""Search spaces: typed objects in Python, YAML files on disk, one compact syntax on the command line.

A space maps a dotted config path to a distribution or a fixed value:

    SearchSpace({"train.lr": Float(1e-4, 3e-2, log=True),
                 "method.num_soft": Int(2, 16, step=2),
                 "method.prompt_encoder": Categorical(["lstm", "mlp", "none"]),
                 "train.warmup_ratio": 0.06})                 # fixed: not searched

The same space as YAML (`SearchSpace.from_yaml` / `to_yaml`):

    params:
      train.lr: {low: 1.0e-4, high: 3.0e-2, log: true}
      method.num_soft: {low: 2, high: 16, step: 2}
      method.prompt_encoder: {choices: [lstm, mlp, none]}
      train.warmup_ratio: 0.06

and on the command line (`parse_param`, the only parser of that syntax): `lr=1e-5..1e-3:log`,
`num_soft=2..16`, `prompt_encoder=lstm|mlp`, `warmup_ratio=0.1` (fixed), `name=` (drop). Which config
field a name refers to (`lr` is `train.lr`) is decided by the run config, not here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from workbench.errors import ConfigError


@dataclass(frozen=True)
class Float:
    low: float
    high: float
    log: bool = False
    step: float | None = None

    def suggest(self, trial, name: str) -> float:
        return trial.suggest_float(name, float(self.low), float(self.high), log=self.log, step=self.step)

    def values(self) -> list:
        return [self.low, self.high]

    def to_yaml(self) -> dict:
        return {"low": self.low, "high": self.high, **({"log": True} if self.log else {}),
                **({"step": self.step} if self.step is not None else {})}


@dataclass(frozen=True)
class Int:
    low: int
    high: int
    log: bool = False
    step: int = 1

    def suggest(self, trial, name: str) -> int:
        return trial.suggest_int(name, self.low, self.high, step=self.step, log=self.log)

    def values(self) -> list:
        return [self.low, self.high]

    def to_yaml(self) -> dict:
        return {"low": self.low, "high": self.high, **({"log": True} if self.log else {}),
                **({"step": self.step} if self.step != 1 else {})}


@dataclass(frozen=True)
class Categorical:
    choices: tuple

    def __init__(self, choices):
        object.__setattr__(self, "choices", tuple(choices))

    def suggest(self, trial, name: str) -> Any:
        return trial.suggest_categorical(name, list(self.choices))

    def values(self) -> list:
        return list(self.choices)

    def to_yaml(self) -> dict:
        return {"choices": list(self.choices)}


Distribution = Float | Int | Categorical


def is_searched(spec: Any) -> bool:
    return isinstance(spec, (Float, Int, Categorical))


def candidate_values(spec: Any) -> list:
    """The values to check before a study starts: every choice, both ends of a range, or the fixed value."""
    return spec.values() if is_searched(spec) else [spec]


@dataclass(frozen=True)
class SearchSpace:
    params: dict[str, Any] = field(default_factory=dict)  # dotted path -> Float | Int | Categorical | fixed value
    source: str = "<python>"

    def __post_init__(self):
        for name, spec in self.params.items():
            if is_searched(spec) and not isinstance(spec, Categorical):
                if not spec.low <= spec.high:
                    raise ConfigError(f"{self.source}: parameter {name!r} needs low <= high "
                                      f"(got {spec.low!r}, {spec.high!r})")
                if spec.log and spec.low <= 0:
                    raise ConfigError(f"{self.source}: parameter {name!r}: a log range needs low > 0")
            if isinstance(spec, Categorical) and not spec.choices:
                raise ConfigError(f"{self.source}: parameter {name!r}: choices must not be empty")

    def searched(self) -> dict[str, Any]:
        return {k: v for k, v in self.params.items() if is_searched(v)}

    def fixed(self) -> dict[str, Any]:
        return {k: v for k, v in self.params.items() if not is_searched(v)}

    def sample(self, trial) -> dict[str, Any]:
        """One value per parameter: asked of the trial when searched, as given when fixed."""
        return {k: (v.suggest(trial, k) if is_searched(v) else v) for k, v in self.params.items()}

    def updated(self, params: dict[str, Any], source: str) -> SearchSpace:
        """This space with `params` replacing or adding entries; a value of None drops the entry."""
        merged = dict(self.params)
        for k, v in params.items():
            if v is None:
                merged.pop(k, None)
            else:
                merged[k] = v
        return SearchSpace(merged, f"{self.source} + {source}" if params else self.source)

    def renamed(self, resolve) -> SearchSpace:
        """The same space with every name passed through `resolve` (short names to dotted paths)."""
        out: dict[str, Any] = {}
        for name, spec in self.params.items():
            out[resolve(name, self.source)] = spec
        return SearchSpace(out, self.source)

    def to_yaml(self) -> dict:
        return {"params": {k: (v.to_yaml() if is_searched(v) else v) for k, v in self.params.items()}}

    @classmethod
    def from_yaml(cls, path: str | Path) -> SearchSpace:
        from workbench.config.yaml_io import yaml_kind, yaml_mapping

        doc = yaml_mapping(path, "search space file", "a mapping with a 'params' mapping",
                           ", e.g. params: {train.lr: {low: 1.0e-4, high: 1.0e-2, log: true}}")
        raw = doc.data
        if not isinstance(raw.get("params", {}), dict):
            raise ConfigError(f"{doc.where('params')}: params: expected a mapping of parameter -> range, choices or "
                              f"value, got a YAML {yaml_kind(raw['params'])}")
        unknown = set(raw) - {"params", "method"}
        if unknown:
            raise ConfigError(f"{path}: unknown key(s) {sorted(map(str, unknown))}; a space file holds 'params' "
                              f"(and optionally 'method')")
        return cls({str(k): spec_from_yaml(str(k), v, doc.where("params", k)) for k, v in
                    (raw.get("params") or {}).items()}, str(path))


def spec_from_yaml(name: str, spec: Any, source: str) -> Any:
    if not isinstance(spec, dict):
        return spec
    unknown = set(spec) - {"low", "high", "log", "step", "choices"}
    if unknown:
        raise ConfigError(f"{source}: parameter {name!r} has unknown key(s) {sorted(map(str, unknown))}; "
                          f"use low/high/log/step or choices")
    if "choices" in spec:
        if not isinstance(spec["choices"], list) or not spec["choices"]:
            raise ConfigError(f"{source}: parameter {name!r}: choices must be a non-empty list")
        return Categorical(spec["choices"])
    low, high = (_number(spec.get(k)) for k in ("low", "high"))
    if low is None or high is None:
        raise ConfigError(f"{source}: parameter {name!r} needs numbers low and high (got {spec.get('low')!r}, "
                          f"{spec.get('high')!r})")
    log = spec.get("log", False)
    if not isinstance(log, bool):
        raise ConfigError(f"{source}: parameter {name!r}: log must be true or false, got {log!r}")
    step = _number(spec.get("step"))
    if spec.get("step") is not None and (step is None or step <= 0):
        raise ConfigError(f"{source}: parameter {name!r}: step must be a number > 0, got {spec.get('step')!r}")
    if isinstance(low, int) and isinstance(high, int):
        if step is not None and not isinstance(step, int):
            raise ConfigError(f"{source}: parameter {name!r}: an integer range needs an integer step, got {step!r}")
        return Int(low, high, log, step or 1)
    return Float(float(low), float(high), log, float(step) if step is not None else None)


def _number(v: Any) -> int | float | None:
    if isinstance(v, bool) or v is None:
        return None
    if isinstance(v, (int, float)):
        return v
    number = parse_scalar(v)
    return number if isinstance(number, (int, float)) and not isinstance(number, bool) else None


def parse_scalar(text: str) -> Any:
    """`1e-5` is a float here (YAML 1.1 reads it as a string), `8` an int, anything else as YAML reads it."""
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    from workbench.config.yaml_io import parse_yaml

    try:  # the same safe loader as files: no aliases, so a typed value cannot expand into gigabytes
        return parse_yaml(text, "value").data
    except ConfigError:
        return text


def parse_param(text: str) -> tuple[str, Any]:
    """`lr=1e-5..1e-3:log` -> ("lr", Float(...)); `enc=lstm|mlp`; `x=0.1` (fixed); `x=` -> (x, None): drop."""
    if "=" not in text:
        raise ConfigError(f"--param {text!r}: expected NAME=SPEC, e.g. lr=1e-5..1e-3:log or encoder=lstm|mlp")
    name, spec = (s.strip() for s in text.split("=", 1))
    if spec == "":
        return name, None
    if "|" in spec:
        return name, Categorical([parse_scalar(c.strip()) for c in spec.split("|")])
    if ".." in spec:
        rng, _, flag = spec.partition(":")
        if flag not in ("", "log"):
            raise ConfigError(f"--param {text!r}: unknown flag {flag!r} (only ':log')")
        low, high = (parse_scalar(v.strip()) for v in rng.split("..", 1))
        return name, spec_from_yaml(name, {"low": low, "high": high, "log": flag == "log"}, "--param")
    return name, parse_scalar(spec)
