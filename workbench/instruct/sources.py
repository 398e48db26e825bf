"""Rows for the mixture: the classification tasks through `workbench.data`, and readers for the arithmetic sets.

Every row becomes a flat dict of strings (the fields templates may use) with `answer` set, plus the class
options for classification tasks. The arithmetic files' formats are described in the data manifest.
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path

from workbench.data import get_task
from workbench.data.tasks import DATA_DIR_ENV
from workbench.errors import ConfigError, WorkbenchError
from workbench.instruct.checks import json_array, read_text_lines

CLASSIFICATION = ("sst2", "sst5", "trec", "rte")
ARITHMETIC = ("gsm8k", "multiarith", "svamp")
# FLAN-style clusters: `--holdout` accepts a cluster name too.
CLUSTERS = {"sentiment": ("sst2", "sst5"), "question_classification": ("trec",), "nli": ("rte",),
            "math": ARITHMETIC}
_CALC = re.compile(r"<<[^>]*>>")


@dataclass(frozen=True)
class Row:
    guid: str
    fields: dict[str, str]  # includes "answer"


@dataclass(frozen=True)
class SourceData:
    dataset: str
    rows: list[Row]
    options: tuple[str, ...] | None  # class names in label order; None for generation tasks
    fields: frozenset[str]  # fields every row has


def cluster_of(dataset: str) -> str:
    for cluster, members in CLUSTERS.items():
        if dataset in members:
            return cluster
    return dataset


def load_source(dataset: str, answers: tuple[str, ...] | None = None, max_rows: int | None = None) -> SourceData:
    if dataset in CLASSIFICATION:
        return _classification(dataset, answers, max_rows)
    if dataset in ARITHMETIC:
        rows = {"gsm8k": _gsm8k, "multiarith": _multiarith, "svamp": _svamp}[dataset](_data_dir(dataset))
        rows = rows[:max_rows] if max_rows else rows
        return SourceData(dataset, rows, None, frozenset(rows[0].fields) if rows else frozenset())
    raise WorkbenchError(f"unknown dataset {dataset!r}; built-in: {', '.join(CLASSIFICATION + ARITHMETIC)}")


def _classification(name: str, answers: tuple[str, ...] | None, max_rows: int | None) -> SourceData:
    task = get_task(name)
    options = answers or task.label_names
    examples = task.load_split("train")
    # FLAN truncates each training set to its first 30,000 examples; keep file order for the same reason.
    examples = examples[:max_rows] if max_rows else examples
    rows = [Row(ex.guid, {**{f: ex.fields[f] for f in task.text_fields}, "answer": options[ex.label]})
            for ex in examples]
    return SourceData(name, rows, tuple(options), frozenset((*task.text_fields, "answer")))


def _data_dir(name: str) -> Path:
    root = os.environ.get(DATA_DIR_ENV)
    if not root:
        raise WorkbenchError(f"set {DATA_DIR_ENV} to the data folder (one sub-folder per dataset) to read {name}")
    return Path(root) / name


def _number(value, where: str, key: str) -> str:
    try:
        x = float(value)
        if not math.isfinite(x):
            raise ValueError
    except (TypeError, ValueError):
        raise ConfigError(f"{where}: field {key!r} must be a number, got {value!r}") from None
    return str(int(x)) if x == int(x) else repr(x)


def _field(record: dict, key: str, where: str, kind: type = str):
    if key not in record:
        raise ConfigError(f"{where}: missing field {key!r}")
    value = record[key]
    if kind is not None and not isinstance(value, kind):
        raise ConfigError(f"{where}: field {key!r} must be {kind.__name__}, got {type(value).__name__}")
    return value


def _gsm8k(folder: Path) -> list[Row]:
    # Only the train file goes into training mixtures; the test file stays for evaluation.
    path = folder / "train.jsonl"
    rows = []
    for line_no, text in _lines(path):
        where = f"{path}: line {line_no}"
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as e:
            raise ConfigError(f"{where}: not valid JSON ({e.msg}); expected one object with 'question' and "
                              f"'answer' per line") from None
        if not isinstance(raw, dict):
            raise ConfigError(f"{where}: expected a JSON object with 'question' and 'answer'")
        question = _field(raw, "question", where)
        full = _field(raw, "answer", where)
        if "####" not in full:
            raise ConfigError(f"{where}: field 'answer' must end in '#### <number>'")
        solution, answer = full.rsplit("####", 1)
        rationale = "\n".join(s.strip() for s in _CALC.sub("", solution).strip().splitlines() if s.strip())
        rows.append(Row(f"train-{line_no}", {"question": question.strip(), "answer": answer.strip(),
                                             "rationale": rationale}))
    return rows


def _multiarith(folder: Path) -> list[Row]:
    # MultiArith and SVAMP ship a single (test) file; a mixture that includes them cannot evaluate on them.
    path = folder / "test.json"
    rows = []
    for k, r in enumerate(_json_array(path)):
        where = f"{path}: record {k}"
        solutions = _field(r, "lSolutions", where, list)
        if not solutions:
            raise ConfigError(f"{where}: field 'lSolutions' is empty")
        rows.append(Row(f"test-{_field(r, 'iIndex', where, None)}",
                        {"question": _field(r, "sQuestion", where).strip(),
                         "answer": _number(solutions[0], where, "lSolutions")}))
    return rows


def _svamp(folder: Path) -> list[Row]:
    path = folder / "test.json"
    rows = []
    for k, r in enumerate(_json_array(path)):
        where = f"{path}: record {k}"
        body, question = _field(r, "Body", where).strip(), _field(r, "Question", where).strip()
        full = body + (" " if body.endswith(".") else ". ") + question
        rows.append(Row(f"test-{_field(r, 'ID', where, None)}",
                        {"question": full, "answer": _number(_field(r, "Answer", where, None), where, "Answer")}))
    return rows


def _check_exists(path: Path) -> None:
    if not path.exists():
        raise WorkbenchError(f"{path} does not exist (check {DATA_DIR_ENV})")
    if path.is_dir():
        raise ConfigError(f"{path}: is a folder; expected a data file (check {DATA_DIR_ENV})")


def _lines(path: Path):
    _check_exists(path)
    for i, text in read_text_lines(path, "data file"):
        if text.strip():
            yield i, text


def _json_array(path: Path) -> list[dict]:
    _check_exists(path)
    return json_array(path)
