"""Declared fields and the one validator that checks them.

Every field of a config section (and of a method's options) is declared with `option(...)`: its
default, help text, role and constraints are written once, next to the field, and `validate` checks
them with one message shape:

    train.lr: -1.0 is not allowed; expected a number > 0

Roles say what a field means to the experiment, so no list of field names is kept anywhere else:

- `study`: what is being studied (task, model, shots, seed, method): a sweep's identity;
- `search`: a setting a sweep may search; part of a run's identity;
- `budget`: how much training and evaluation a run gets: the same for every side of a comparison;
- `neutral`: changes no result (progress bars, where runs are logged, whether weights are saved).
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import MISSING
from typing import Any, ClassVar

from workbench.errors import ConfigError

ROLES = ("study", "search", "budget", "neutral")

# Upper bounds shared by the fields that count the same things. Generous: far above any run of this workbench, far
# below what turns a typo (`--grad-accum 8000000`, `--seed 1e30`) into a late overflow, an 8-million-example step or
# an allocation of hundreds of gigabytes after the model has loaded. Every int and float field has an upper bound
# (tests/test_config.py walks them all).
SEED_MAX = 2**32 - 1  # numpy's seeds are 32-bit; torch's and Python's take these too
STEPS_MAX = 10_000_000  # optimizer steps, evaluation and checkpoint intervals
ROWS_MAX = 1_000_000_000  # rows, records and examples of a split
BATCH_MAX = 4096  # examples in one forward pass
TOKENS_MAX = 1_048_576  # tokens of one input or one generation
LR_MAX = 10.0  # a learning rate; 10 is already far past any that trains
TRIALS_MAX = 100_000  # trials of a study, models of a job


def option(default: Any = MISSING, *, help: str, role: str = "search", choices: typing.Iterable | None = None,
           min: float | None = None, max: float | None = None, above: float | None = None,
           default_factory: Any = MISSING) -> Any:
    """A dataclass field with help text, a role and constraints (`min`/`max` inclusive, `above` exclusive)."""
    if role not in ROLES:
        raise ValueError(f"role {role!r}: choose one of {ROLES}")
    metadata = {"help": help, "role": role, "choices": tuple(choices) if choices is not None else None,
                "min": min, "max": max, "above": above}
    return dataclasses.field(default=default, default_factory=default_factory, metadata=metadata)


def meta(f: dataclasses.Field, key: str, default: Any = None) -> Any:
    return f.metadata.get(key, default)


class Section:
    """Base of every config section: validated when built, and again by `validate` before a run starts.

    `section` is the section's name in the config tree (`train`, `method`, ...), so an error can name
    the field by its full dotted path.
    """

    section: ClassVar[str] = ""

    def __post_init__(self) -> None:
        validate(self)

    def check(self) -> None:
        """Cross-field rules of a section; raise ConfigError with `field=` set. Called after field checks."""


def path_of(obj: Any, name: str) -> str:
    section = getattr(obj, "section", "")
    return f"{section}.{name}" if section else name


# ---- types ---------------------------------------------------------------------------------------------

def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def alternatives(hint: Any) -> tuple:
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        return typing.get_args(hint)
    return (hint,)


_NAMES = {int: "an integer", float: "a number", bool: "true or false", str: "a string", type(None): "null",
          dict: "a mapping"}


def describe_type(hint: Any) -> str:
    parts = []
    for t in alternatives(hint):
        origin = typing.get_origin(t)
        if origin in (list, tuple):
            inner = typing.get_args(t)
            parts.append(f"a list of {describe_type(inner[0]).removeprefix('a ').removeprefix('an ')}s"
                         if inner else "a list")
        elif origin is dict:
            parts.append("a mapping")
        else:
            parts.append(_NAMES.get(t, f"a {getattr(t, '__name__', str(t))}"))
    return " or ".join(parts)


def _fits(value: Any, t: Any) -> bool:
    origin = typing.get_origin(t)
    if origin in (list, tuple):
        inner = typing.get_args(t)
        return isinstance(value, (list, tuple)) and all(_fits(v, inner[0]) for v in value) if inner else \
            isinstance(value, (list, tuple))
    if origin is dict:
        return isinstance(value, dict)
    if t is Any:
        return True
    if t is type(None):
        return value is None
    if t is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if t is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(t, type) and isinstance(value, t)


def coerce(value: Any, hint: Any) -> Any:
    """Numbers that arrive as text become numbers (YAML 1.1 reads `1e-4` as a string; command-line values
    are text), an int becomes a float where only floats are allowed, and a number becomes text where only
    text is allowed (`--model 123`). Nothing else is converted."""
    kinds = alternatives(hint)
    numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
    if numeric and str in kinds and int not in kinds and float not in kinds:
        return str(value)
    if not isinstance(value, str):
        if numeric and isinstance(value, int) and float in kinds and int not in kinds:
            return float(value)
        return value
    if bool in kinds and value.lower() in ("true", "false"):
        return value.lower() == "true"
    if str in kinds:
        return value
    for t in (int, float):
        if t in kinds:
            try:
                return t(value)
            except ValueError:
                continue
    return value


def _bound(x: float | None) -> str | None:
    """A bound as its reader expects it: an integer in full (4294967295, not 4.29497e+09), a float short."""
    if x is None:
        return None
    return str(x) if isinstance(x, int) else f"{x:g}"


def expectation(f: dataclasses.Field, hint: Any) -> str:
    """What the field accepts, in words: the second half of every validation message."""
    if meta(f, "choices") is not None:
        allowed = ", ".join(repr(c) for c in meta(f, "choices"))
        return f"one of {allowed}" + (" or null" if type(None) in alternatives(hint) else "")
    text = describe_type(hint)
    lo, hi, above = (_bound(meta(f, k)) for k in ("min", "max", "above"))
    if lo is not None and hi is not None:
        text += f" in [{lo}, {hi}]"
    elif lo is not None:
        text += f" >= {lo}"
    elif above is not None and hi is not None:
        text += f" > {above} and <= {hi}"
    elif above is not None:
        text += f" > {above}"
    elif hi is not None:
        text += f" <= {hi}"
    return text


def check_value(f: dataclasses.Field, hint: Any, value: Any, path: str) -> Any:
    """The value (coerced if it was a number written as text), or a ConfigError in the one message shape."""
    given, value = value, coerce(value, hint)

    def refuse() -> typing.NoReturn:
        raise ConfigError(f"{path}: {given!r} is not allowed; expected {expectation(f, hint)}", field=path)

    if not any(_fits(value, t) for t in alternatives(hint)):
        refuse()
    if value is None:
        return value
    choices = meta(f, "choices")
    if choices is not None and value not in choices:
        refuse()
    # A list of numbers (seeds) holds each to the field's bounds.
    numbers = value if isinstance(value, (list, tuple)) else [value]
    for number in numbers:
        if isinstance(number, (int, float)) and not isinstance(number, bool):
            if isinstance(number, float) and not math.isfinite(number):  # nan, inf and -inf: never a setting
                refuse()
            lo, hi, above = meta(f, "min"), meta(f, "max"), meta(f, "above")
            if (lo is not None and number < lo) or (hi is not None and number > hi) or \
                    (above is not None and number <= above):
                refuse()
    return value


def check_each_once(values: list | tuple, path: str, what: str, why: str = "") -> None:
    """A cross-value rule of a list field (a Section's `check()`), in the validator's message shape:
    `compare.seeds: [13, 13] is not allowed; expected each seed once (13 is given twice)`."""
    seen: set = set()
    for value in values:
        if value in seen:
            raise ConfigError(f"{path}: {list(values)!r} is not allowed; expected each {what} once ({value!r} is "
                              f"given twice{'; ' + why if why else ''})", field=path)
        seen.add(value)


def validate(obj: Any) -> None:
    """Check every declared field of a section (type, choices, range), then its cross-field rules."""
    hints = _hints(type(obj))
    for f in dataclasses.fields(obj):
        if "help" not in f.metadata:
            continue  # a nested section validates itself
        value = check_value(f, hints[f.name], getattr(obj, f.name), path_of(obj, f.name))
        object.__setattr__(obj, f.name, value)
    if isinstance(obj, Section):
        obj.check()


def declared_fields(cls: type) -> list[dataclasses.Field]:
    return [f for f in dataclasses.fields(cls) if "help" in f.metadata]


def field_help(cls: type) -> list[tuple[str, str, str, str]]:
    """(name, type and constraints, default, help) for every declared field: what `workbench methods NAME` prints."""
    hints = _hints(cls)
    rows = []
    for f in declared_fields(cls):
        if f.default is not MISSING:
            default = f.default
        elif f.default_factory is not MISSING:
            default = f.default_factory()
        else:
            default = "(required)"
        rows.append((f.name, expectation(f, hints[f.name]), repr(default), meta(f, "help")))
    return rows


class MethodOptions(Section):
    """Base of every method's options dataclass: fields declared with `option(...)`, checked when built.

    Subclass it, declare fields with `option`, and override `check` for rules that join several fields.
    """

    section: ClassVar[str] = "method"
