"""Seed tasks in Self-Instruct's schema: id, name, instruction, instances [{input, output}], is_classification."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from workbench.errors import ConfigError
from workbench.instruct.checks import read_text_lines

DEFAULT_SEEDS = Path(__file__).resolve().parent / "data" / "seed_tasks.jsonl"
_FIELDS = {"id": str, "name": str, "instruction": str, "instances": list, "is_classification": bool}


@dataclass(frozen=True)
class Instance:
    input: str
    output: str


@dataclass(frozen=True)
class SeedTask:
    id: str
    name: str
    instruction: str
    instances: tuple[Instance, ...]
    is_classification: bool


def load_seed_tasks(path: str | Path | None = None, flag: str = "--seeds") -> list[SeedTask]:
    """Read a seed file; any problem is reported with the file, the line and the field."""
    if path is not None and not str(path).strip():
        raise ConfigError(f"{flag}: '' is not allowed; expected a seed file (JSON lines)")
    path = Path(path) if path else DEFAULT_SEEDS
    if not path.exists():
        raise ConfigError(f"{path}: seed file not found; check {flag}")
    if path.is_dir():
        raise ConfigError(f"{path}: is a folder; {flag} expects a seed file (JSON lines)")
    tasks: list[SeedTask] = []
    seen: dict[str, int] = {}
    for line_no, text in read_text_lines(path, "seed file (JSON lines)"):
        if not text.strip():
            continue
        where = f"{path}: line {line_no}"
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as e:
            raise ConfigError(f"{where}: not valid JSON ({e.msg} at column {e.colno}); "
                              f"one JSON object per line") from None
        if not isinstance(raw, dict):
            raise ConfigError(f"{where}: expected a JSON object, got {type(raw).__name__}")
        for name, kind in _FIELDS.items():
            if name not in raw:
                raise ConfigError(f"{where}: missing field {name!r}; a seed task has "
                                  f"{', '.join(_FIELDS)}")
            if not isinstance(raw[name], kind):
                raise ConfigError(f"{where}: field {name!r} must be {kind.__name__}, "
                                  f"got {type(raw[name]).__name__}")
        if not raw["instruction"].strip():
            raise ConfigError(f"{where}: field 'instruction' is empty")
        if not raw["instances"]:
            raise ConfigError(f"{where}: field 'instances' is empty; give at least one {{input, output}}")
        instances = []
        for k, inst in enumerate(raw["instances"]):
            if not isinstance(inst, dict):
                raise ConfigError(f"{where}: instances[{k}] must be an object with 'input' and 'output'")
            for key in ("input", "output"):
                if not isinstance(inst.get(key), str):
                    raise ConfigError(f"{where}: field 'instances[{k}].{key}' must be a string")
            instances.append(Instance(inst["input"], inst["output"]))
        if raw["id"] in seen:
            raise ConfigError(f"{where}: duplicate id {raw['id']!r} (first on line {seen[raw['id']]})")
        seen[raw["id"]] = line_no
        tasks.append(SeedTask(raw["id"], raw["name"], raw["instruction"], tuple(instances),
                              raw["is_classification"]))
    if not tasks:
        raise ConfigError(f"{path}: no seed tasks; the file is empty")
    return tasks
