"""The tasks a CoT evaluation reads: the six arithmetic sets of the data folder, and a user's own task described by
a small YAML file (data file, question field, answer field, answer type), with no code change.

Every task becomes a list of `Question`s with the gold answer already in the form the answer cleansing produces
(`answers.normalize`), so accuracy is a plain string comparison.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from workbench import io
from workbench.config.yaml_io import load_yaml_file
from workbench.cot.answers import ANSWER_TYPES, normalize
from workbench.data.tasks import DATA_DIR_ENV
from workbench.errors import ConfigError, WorkbenchError


@dataclass(frozen=True)
class Question:
    qid: str
    question: str  # the text the model reads (AQuA: with its answer choices)
    gold: str  # normalised (answers.normalize)


@dataclass(frozen=True)
class CotTask:
    name: str
    answer_type: str  # number | letter | yes-no | text
    demos: int  # Auto-CoT's k (clusters, demonstrations) for this task
    questions: tuple[Question, ...]
    source: str  # the file read, for messages


@dataclass(frozen=True)
class _Builtin:
    path: str  # under the data folder
    answer_type: str
    demos: int


# Auto-CoT's k: 8 for the arithmetic sets, 4 for AQuA (METHODS.md section 3).
BUILTIN = {
    "multiarith": _Builtin("multiarith/test.json", "number", 8),
    "gsm8k": _Builtin("gsm8k/test.jsonl", "number", 8),
    "svamp": _Builtin("svamp/test.json", "number", 8),
    "addsub": _Builtin("addsub/test.json", "number", 8),
    "singleeq": _Builtin("singleeq/test.json", "number", 8),
    "aqua": _Builtin("aqua/test.jsonl", "letter", 4),
}


def load_cot_task(name: str, flag: str = "--task") -> CotTask:
    """A built-in task by name, or a user task from a YAML file (a path ending in .yaml/.yml)."""
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(f"{flag}: required; give a task ({', '.join(BUILTIN)}) or a task YAML file")
    if name.endswith((".yaml", ".yml")):
        return _user_task(Path(name), flag)
    if name not in BUILTIN:
        raise ConfigError(f"{flag}: {name!r} is not a CoT task; expected one of {', '.join(BUILTIN)}, or a task YAML "
                          f"file (see docs: `question_field`, `answer_field`, `answer_type`)")
    spec = BUILTIN[name]
    root = os.environ.get(DATA_DIR_ENV)
    if not root:
        raise WorkbenchError(f"set {DATA_DIR_ENV} to the data folder (one sub-folder per dataset) to read {name}")
    path = Path(root) / spec.path
    records = _read_records(path)
    questions = tuple(_builtin_question(name, k, r, f"{path}: record {k}") for k, r in enumerate(records))
    return CotTask(name, spec.answer_type, spec.demos, questions, str(path))


def _builtin_question(name: str, k: int, r: dict, where: str) -> Question:
    def field(key: str):
        if key not in r:
            raise ConfigError(f"{where}: missing field {key!r}")
        return r[key]

    if name == "gsm8k":
        gold = str(field("answer")).rsplit("####", 1)[-1]
        return Question(str(k), str(field("question")).strip(), normalize(gold, "number", where))
    if name == "svamp":
        body, q = str(field("Body")).strip(), str(field("Question")).strip()
        return Question(str(field("ID")), f"{body} {q}", normalize(field("Answer"), "number", where))
    if name == "aqua":
        choices = " ".join(f"({o.strip()[0]}) {o.strip()[2:].strip()}" for o in field("options"))
        return Question(str(k), f"{str(field('question')).strip()} Answer Choices: {choices}",
                        normalize(field("correct"), "letter", where))
    solutions = field("lSolutions")  # MultiArith, AddSub, SingleEq
    if not isinstance(solutions, list) or not solutions:
        raise ConfigError(f"{where}: field 'lSolutions' must be a non-empty list")
    return Question(str(field("iIndex")), str(field("sQuestion")).strip(), normalize(solutions[0], "number", where))


# ---- a user's task -------------------------------------------------------------------------------------------

USER_KEYS = {"name": "the task's name (MLflow, demo files)", "data": "the data file (.json array or .jsonl), "
             "relative to the YAML file", "question_field": "the record field holding the question",
             "answer_field": "the record field holding the gold answer",
             "answer_type": f"one of {', '.join(ANSWER_TYPES)}", "demos": "Auto-CoT's k (default 8)"}


def _user_task(path: Path, flag: str) -> CotTask:
    if not path.is_file():
        raise ConfigError(f"{flag} {path}: no such file")
    # the one safe loader: aliases, duplicate keys and deep nesting are refused, each naming file and line
    spec = load_yaml_file(path, "task file")
    if not isinstance(spec, dict):
        raise ConfigError(f"{path}: expected a mapping with {', '.join(USER_KEYS)}")
    unknown = sorted(set(spec) - set(USER_KEYS))
    if unknown:
        raise ConfigError(f"{path}: unknown key {unknown[0]!r}; expected " +
                          "; ".join(f"{k}: {v}" for k, v in USER_KEYS.items()))
    for key in ("name", "data", "question_field", "answer_field", "answer_type"):
        if not isinstance(spec.get(key), str) or not spec[key].strip():
            raise ConfigError(f"{path}: key {key!r} is required ({USER_KEYS[key]})")
    if spec["answer_type"] not in ANSWER_TYPES:
        raise ConfigError(f"{path}: answer_type {spec['answer_type']!r} is not allowed; expected one of "
                          f"{', '.join(ANSWER_TYPES)}")
    demos = spec.get("demos", 8)
    if not isinstance(demos, int) or isinstance(demos, bool) or demos < 1:
        raise ConfigError(f"{path}: demos {demos!r} is not allowed; expected an integer >= 1")
    data = (path.parent / spec["data"]).resolve()
    records = _read_records(data)
    questions = []
    for k, r in enumerate(records):
        where = f"{data}: record {k}"
        for key in (spec["question_field"], spec["answer_field"]):
            if key not in r:
                raise ConfigError(f"{where}: missing field {key!r} (named in {path})")
        q = r[spec["question_field"]]
        if not isinstance(q, str) or not q.strip():
            raise ConfigError(f"{where}: field {spec['question_field']!r} must be a non-empty string")
        questions.append(Question(str(k), q.strip(), normalize(r[spec["answer_field"]], spec["answer_type"], where)))
    if not questions:
        raise ConfigError(f"{data}: no records")
    return CotTask(spec["name"], spec["answer_type"], demos, tuple(questions), str(data))


def _read_records(path: Path) -> list[dict]:
    """A JSON array, or JSON lines (AQuA's file is JSON lines whatever its name)."""
    if not path.is_file():
        raise WorkbenchError(f"{path} does not exist (check {DATA_DIR_ENV}, or the YAML file's `data`)")
    try:
        text = io.read_bytes(path, "data file", io.DATA_MAX_BYTES).decode("utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: not readable as UTF-8 text ({e})") from None
    if text.lstrip().startswith("["):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise ConfigError(f"{path}: line {e.lineno}: not JSON ({e.msg})") from None
    else:
        data = []
        for no, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    data.append(json.loads(line))
                except json.JSONDecodeError as e:
                    raise ConfigError(f"{path}: line {no}: not JSON ({e.msg})") from None
    for k, r in enumerate(data):
        if not isinstance(r, dict):
            raise ConfigError(f"{path}: record {k}: expected a JSON object, got {type(r).__name__}")
    return data
