"""Rows for the mixture: the classification tasks through `workbench.data`, and readers for the arithmetic sets.

Every row becomes a flat dict of strings (the fields templates may use) with `answer` set, plus the class
options for classification tasks. The arithmetic files' formats are described in the data manifest.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from workbench.errors import ConfigError, WorkbenchError
from workbench.data import get_task
from workbench.data.registry import DATA_DIR_ENV

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


def _number(value) -> str:
    x = float(value)
    return str(int(x)) if x == int(x) else repr(x)


def _gsm8k(folder: Path) -> list[Row]:
    # Only the train file goes into training mixtures; the test file stays for evaluation.
    path = folder / "train.jsonl"
    rows = []
    for line_no, text in _lines(path):
        try:
            raw = json.loads(text)
            solution, answer = raw["answer"].rsplit("####", 1)
        except (json.JSONDecodeError, KeyError, ValueError, AttributeError):
            raise ConfigError(f"{path}: line {line_no}: expected JSON with 'question' and 'answer' ending in '#### n'")
        rationale = "\n".join(s.strip() for s in _CALC.sub("", solution).strip().splitlines() if s.strip())
        rows.append(Row(f"train-{line_no}", {"question": raw["question"].strip(), "answer": answer.strip(),
                                             "rationale": rationale}))
    return rows


def _multiarith(folder: Path) -> list[Row]:
    # MultiArith and SVAMP ship a single (test) file; a mixture that includes them cannot evaluate on them.
    path = folder / "test.json"
    return [Row(f"test-{r['iIndex']}", {"question": r["sQuestion"].strip(), "answer": _number(r["lSolutions"][0])})
            for r in _json_array(path)]


def _svamp(folder: Path) -> list[Row]:
    path = folder / "test.json"
    rows = []
    for r in _json_array(path):
        body, question = r["Body"].strip(), r["Question"].strip()
        full = body + (" " if body.endswith(".") else ". ") + question
        rows.append(Row(f"test-{r['ID']}", {"question": full, "answer": _number(r["Answer"])}))
    return rows


def _lines(path: Path):
    if not path.exists():
        raise WorkbenchError(f"{path} does not exist (check {DATA_DIR_ENV})")
    with open(path, encoding="utf-8") as f:
        for i, text in enumerate(f, start=1):
            if text.strip():
                yield i, text


def _json_array(path: Path) -> list[dict]:
    if not path.exists():
        raise WorkbenchError(f"{path} does not exist (check {DATA_DIR_ENV})")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path}: line {e.lineno}: not JSON ({e.msg})") from None
    if not isinstance(data, list):
        raise ConfigError(f"{path}: expected a JSON array")
    return data
