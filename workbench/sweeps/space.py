"""Search spaces: one YAML file per method under `experiments/`, overridable per run.

A space maps a parameter name to a distribution or a fixed value:

    method: p-tuning
    params:
      lr: {low: 1.0e-4, high: 3.0e-2, log: true}      # float range (int range when both ends are ints)
      num_soft: {low: 2, high: 16, step: 2}
      prompt_encoder: {choices: [lstm, mlp, none]}    # categorical
      warmup_ratio: 0.06                              # fixed: not searched

A name is either a field of the run (`RUN_PARAMS`) or an option of the method (its options
dataclass, read from the METHODS registry); anything else is an error that names the file.
Overrides on the command line use a compact form: `lr=1e-5..1e-3:log`, `num_soft=4..32`,
`prompt_encoder=lstm|mlp`, `warmup_ratio=0.1`, and `name=` drops a parameter.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from workbench.errors import ConfigError

REPO_ROOT = Path(__file__).resolve().parents[2]
EXPERIMENTS_DIR = REPO_ROOT / "experiments"

# RunConfig fields a sweep may search; the rest (task, model, shots, seed, ...) define the study itself.
RUN_PARAMS = ("lr", "batch_size", "grad_accum", "warmup_ratio", "weight_decay", "max_steps", "template_id",
              "multi_token", "max_seq_length")


@dataclass(frozen=True)
class Param:
    name: str
    target: str  # "run" (a RunConfig field) or "option" (a method option)
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    step: float | int | None = None
    choices: tuple | None = None
    value: Any = None  # a fixed value when neither a range nor choices
    source: str = ""  # the file, or --param

    @property
    def fixed(self) -> bool:
        return self.choices is None and self.low is None

    def suggest(self, trial) -> Any:
        if self.fixed:
            return self.value
        if self.choices is not None:
            return trial.suggest_categorical(self.name, list(self.choices))
        if isinstance(self.low, int) and isinstance(self.high, int):
            return trial.suggest_int(self.name, self.low, self.high, step=int(self.step or 1), log=self.log)
        return trial.suggest_float(self.name, float(self.low), float(self.high), step=self.step, log=self.log)

    def values(self) -> list:
        """The values to check: every choice, the fixed value, or both ends of a range."""
        if self.fixed:
            return [self.value]
        return list(self.choices) if self.choices is not None else [self.low, self.high]

    def describe(self) -> str:
        if self.fixed:
            return f"{self.name}={self.value!r}"
        if self.choices is not None:
            return f"{self.name} in {list(self.choices)}"
        return f"{self.name} in [{self.low}, {self.high}]" + (" log" if self.log else "")


@dataclass(frozen=True)
class SearchSpace:
    method: str
    params: tuple[Param, ...]
    source: str

    def sample(self, trial) -> tuple[dict, dict]:
        """Ask the trial for every parameter: (RunConfig overrides, method options)."""
        run, options = {}, {}
        for p in self.params:
            (run if p.target == "run" else options)[p.name] = p.suggest(trial)
        return run, options

    def split(self, values: dict) -> tuple[dict, dict]:
        """Map a trial's params (e.g. the best trial's) plus the fixed values back to (run fields, options)."""
        run, options = {}, {}
        for p in self.params:
            if p.fixed or p.name in values:
                (run if p.target == "run" else options)[p.name] = p.value if p.fixed else values[p.name]
        return run, options

    def to_dict(self) -> dict:
        out = {}
        for p in self.params:
            if p.fixed:
                out[p.name] = p.value
            elif p.choices is not None:
                out[p.name] = {"choices": list(p.choices)}
            else:
                out[p.name] = {k: v for k, v in (("low", p.low), ("high", p.high), ("log", p.log), ("step", p.step))
                               if v not in (None, False)}
        return {"method": self.method, "params": out}


def check_value(name: str, value: Any, owner: type, source: str, what: str = "") -> None:
    """`value` must fit the annotated type of field `name` of the dataclass `owner` (str, int, float, bool, lists)."""
    import types
    import typing

    try:
        hint = typing.get_type_hints(owner).get(name)
    except Exception:  # an annotation we cannot resolve: leave the check to the method
        return
    if hint is None:
        return
    allowed = typing.get_args(hint) if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union \
        else (hint,)

    def fits(t) -> bool:
        t = typing.get_origin(t) or t
        if t is type(None):
            return value is None
        if t is float:
            return isinstance(value, (int, float)) and not isinstance(value, bool)
        if t is int:
            return isinstance(value, int) and not isinstance(value, bool)
        return isinstance(t, type) and isinstance(value, t)

    if not any(fits(t) for t in allowed):
        raise ConfigError(f"{source}: parameter {name!r}{what}: value {value!r} is not a "
                          f"{' or '.join(getattr(t, '__name__', str(t)) for t in allowed)}")


def default_space_file(method: str) -> Path:
    return EXPERIMENTS_DIR / f"{method}.yaml"


def _read_yaml(path: Path) -> dict:
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: search space file not found") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("params", {}), dict):
        raise ConfigError(f"{path}: expected a mapping with a 'params' mapping")
    return raw


def _scalar(text: str) -> Any:
    """`1e-5` is a float here (YAML 1.1 reads it as a string), `8` an int, anything else as YAML reads it."""
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return yaml.safe_load(text)


def parse_override(text: str) -> tuple[str, Any]:
    """`lr=1e-5..1e-3:log` -> ("lr", {...}); `enc=lstm|mlp`; `x=0.1` (fixed); `x=` (drop)."""
    if "=" not in text:
        raise ConfigError(f"--param {text!r}: expected NAME=SPEC, e.g. lr=1e-5..1e-3:log or encoder=lstm|mlp")
    name, spec = (s.strip() for s in text.split("=", 1))
    if spec == "":
        return name, None
    if "|" in spec:
        return name, {"choices": [_scalar(c.strip()) for c in spec.split("|")]}
    if ".." in spec:
        rng, _, flag = spec.partition(":")
        low, high = (_scalar(v.strip()) for v in rng.split("..", 1))
        if flag not in ("", "log"):
            raise ConfigError(f"--param {text!r}: unknown flag {flag!r} (only ':log')")
        return name, {"low": low, "high": high, "log": flag == "log"}
    return name, _scalar(spec)


def _param(name: str, spec: Any, method, source: str) -> Param:
    options = {f.name for f in dataclasses.fields(method.options)}
    if name in RUN_PARAMS:
        target = "run"
    elif name in options:
        target = "option"
    else:
        raise ConfigError(
            f"{source}: parameter {name!r} is neither a run field ({', '.join(RUN_PARAMS)}) nor an option of method "
            f"{method.name!r} ({', '.join(sorted(options)) or 'it has none'})")
    if not isinstance(spec, dict):
        return Param(name, target, value=spec, source=source)
    unknown = set(spec) - {"low", "high", "log", "step", "choices"}
    if unknown:
        raise ConfigError(f"{source}: parameter {name!r} has unknown key(s) {sorted(unknown)}; "
                          f"use low/high/log/step or choices")
    if "choices" in spec:
        if not isinstance(spec["choices"], list) or not spec["choices"]:
            raise ConfigError(f"{source}: parameter {name!r}: choices must be a non-empty list")
        return Param(name, target, choices=tuple(spec["choices"]), source=source)
    low, high = spec.get("low"), spec.get("high")
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (low, high)) or low > high:
        raise ConfigError(f"{source}: parameter {name!r} needs numbers low <= high (got {low!r}, {high!r})")
    if spec.get("log") and low <= 0:
        raise ConfigError(f"{source}: parameter {name!r}: a log range needs low > 0")
    return Param(name, target, low=low, high=high, log=bool(spec.get("log", False)), step=spec.get("step"),
                 source=source)


def load_space(method: str, file: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> SearchSpace:
    """The method's space from `file` (default experiments/<method>.yaml, empty if absent), then `overrides`.

    A user file given with `file` replaces the default; its `params` are checked the same way.
    """
    from workbench.adaptation import get_method

    spec = get_method(method)
    path = Path(file) if file else default_space_file(method)
    raw = _read_yaml(path) if (file or path.exists()) else {"params": {}}
    if raw.get("method") not in (None, method):
        raise ConfigError(f"{path}: search space is for method {raw['method']!r}, not {method!r}")
    entries = dict(raw.get("params") or {})
    for text in overrides:
        name, value = parse_override(text)
        if value is None:
            entries.pop(name, None)
        else:
            entries[name] = value
    params = []
    for name, value in entries.items():
        source = str(path) if name in (raw.get("params") or {}) and not _overridden(name, overrides) else "--param"
        params.append(_param(str(name), value, spec, source))
    return SearchSpace(method, tuple(params), str(path))


def _overridden(name: str, overrides) -> bool:
    return any(o.split("=", 1)[0].strip() == name for o in overrides)
