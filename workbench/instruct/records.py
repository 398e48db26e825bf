"""Instruction records from files: the Alpaca layout (`instruction`, `input`, `output` per line), self-instruct's
(`instruction` with `instances` of `input`/`output`), and what `workbench cot demos --format instruct` writes (the
Alpaca layout). One reader for every job that takes such records, so a record is checked the same way everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from workbench.errors import ConfigError
from workbench.instruct.checks import json_lines


@dataclass(frozen=True)
class InstructionRecord:
    instruction: str
    input: str
    output: str
    where: str  # "FILE: line N" (and the instance), for messages about this record

    def prompt(self) -> str:
        """The instruction, and its input after a blank line when there is one (Alpaca's layout without the
        preamble)."""
        return f"{self.instruction}\n\n{self.input}" if self.input.strip() else self.instruction


def read_instruction_records(path: str | Path, flag: str = "--records") -> list[InstructionRecord]:
    """Every record of a JSON-lines file; a line that is not a record is an error naming the file and line."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{flag} {path}: no such file" if not path.exists() else f"{flag} {path}: is a folder; "
                          f"expected a JSON-lines file")
    records: list[InstructionRecord] = []
    for where, raw in json_lines(path):
        if not isinstance(raw, dict):
            raise ConfigError(f"{where}: expected a JSON object with 'instruction' and 'output' (or 'instances')")
        instruction = raw.get("instruction")
        if not isinstance(instruction, str) or not instruction.strip():
            raise ConfigError(f"{where}: field 'instruction' is missing or empty")
        if "instances" in raw:  # self-instruct: one record per instance
            instances = raw["instances"]
            if not isinstance(instances, list) or not instances:
                raise ConfigError(f"{where}: field 'instances' must be a non-empty list of {{input, output}}")
            for k, inst in enumerate(instances):
                records.append(_record(instruction, inst, f"{where}, instance {k}"))
        else:
            records.append(_record(instruction, raw, where))
    if not records:
        raise ConfigError(f"{path}: no records (an empty file)")
    return records


def _record(instruction: str, raw, where: str) -> InstructionRecord:
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected an object with 'input' and 'output'")
    given = raw.get("input", "")
    output = raw.get("output")
    if not isinstance(given, str):
        raise ConfigError(f"{where}: field 'input' must be a string")
    if not isinstance(output, str) or not output.strip():
        raise ConfigError(f"{where}: field 'output' is missing or empty")
    return InstructionRecord(instruction.strip(), given.strip(), output.strip(), where)
