"""Task specifications: built-in ones and user tasks described by a YAML file.

A task's rows come from `WORKBENCH_DATA_DIR/<task>/<split>.<ext>` when that folder exists (offline), and
from the Hugging Face hub otherwise. A user task names its own files and needs no code.
"""

from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import yaml

from workbench.errors import ConfigError, WorkbenchError

DATA_DIR_ENV = "WORKBENCH_DATA_DIR"
METRICS = ("accuracy", "macro_f1", "matthews")


@dataclass(frozen=True)
class Example:
    guid: str
    fields: dict[str, str]
    label: int  # index into TaskSpec.label_names


@dataclass(frozen=True)
class HubSource:
    """Where a task lives on the Hugging Face hub, and how its columns map onto ours."""

    path: str
    config: str | None = None
    splits: dict[str, str] = field(default_factory=dict)  # our split -> hub split
    columns: dict[str, str] = field(default_factory=dict)  # hub column -> our column


@dataclass(frozen=True, eq=False)  # hashed by identity: the row cache is keyed on it
class TaskSpec:
    name: str
    text_fields: tuple[str, ...]
    label_field: str
    label_names: tuple[str, ...]
    # The raw label values in the files, one per class in label_names order.
    label_values: tuple[str, ...]
    files: dict[str, str]  # split -> file name (relative to data_dir)
    eval_split: str  # the split the reported number comes from
    metric: str = "accuracy"
    description: str = ""
    data_dir: str | None = None  # None: WORKBENCH_DATA_DIR/<name>
    hub: HubSource | None = None
    source: str = "builtin"  # or the YAML path

    @property
    def num_classes(self) -> int:
        return len(self.label_names)

    def resolve_data_dir(self) -> Path | None:
        if self.data_dir is not None:
            return Path(self.data_dir)
        root = os.environ.get(DATA_DIR_ENV)
        return Path(root) / self.name if root else None

    def load_split(self, split: str) -> list[Example]:
        if split not in self.files:
            raise WorkbenchError(f"task {self.name!r} has no split {split!r}; it has {sorted(self.files)}")
        folder = self.resolve_data_dir()
        if folder is not None and (folder / self.files[split]).exists():
            return _load_file_cached(self, str(folder / self.files[split]))
        if self.hub is not None and self.data_dir is None:
            return self._load_hub(split)
        where = folder / self.files[split] if folder else f"${DATA_DIR_ENV}/{self.name}/{self.files[split]}"
        raise WorkbenchError(
            f"no data for task {self.name!r} split {split!r}: {where} does not exist. "
            f"Set {DATA_DIR_ENV} to a folder with one sub-folder per task (e.g. ../shared/data)."
        )

    def _load_hub(self, split: str) -> list[Example]:
        import datasets  # imported lazily: slow, and only online users need it

        assert self.hub is not None
        ds = datasets.load_dataset(self.hub.path, self.hub.config, split=self.hub.splits.get(split, split))
        rows = []
        for i, raw in enumerate(ds):
            row = {self.hub.columns.get(k, k): v for k, v in raw.items()}
            rows.append(row)
        return [self._example(row, f"{split}-{i}", f"hub:{self.hub.path}", i) for i, row in enumerate(rows)]

    def _example(self, row: dict, guid: str, where: str, line: int) -> Example:
        for name in (*self.text_fields, self.label_field):
            if name not in row:
                raise ConfigError(f"{where}: line {line}: missing field {name!r} (task {self.name!r})")
        raw = str(row[self.label_field]).strip()
        try:
            label = self.label_values.index(raw)
        except ValueError:
            raise ConfigError(
                f"{where}: line {line}: label {raw!r} is not one of {list(self.label_values)} (task {self.name!r})"
            ) from None
        fields = {k: str(v).strip() for k, v in row.items() if v is not None}
        return Example(guid=guid, fields=fields, label=label)


@lru_cache(maxsize=32)
def _load_file_cached(spec: TaskSpec, path: str) -> list[Example]:
    return _load_file(spec, Path(path))


def _load_file(spec: TaskSpec, path: Path) -> list[Example]:
    split = path.stem
    rows: list[tuple[int, dict]] = []
    if path.suffix in (".tsv", ".csv"):
        with open(path, newline="", encoding="utf-8") as f:
            # No quoting: RTE text contains bare quotes (see the data manifest).
            reader = csv.reader(f, delimiter="\t" if path.suffix == ".tsv" else ",", quoting=csv.QUOTE_NONE)
            header = next(reader, None)
            if header is None:
                raise ConfigError(f"{path}: empty file")
            for line, values in enumerate(reader, start=2):
                if len(values) != len(header):
                    raise ConfigError(f"{path}: line {line}: {len(values)} columns, header has {len(header)}")
                rows.append((line, dict(zip(header, values))))
    elif path.suffix == ".jsonl":
        with open(path, encoding="utf-8") as f:
            for line, text in enumerate(f, start=1):
                if text.strip():
                    try:
                        rows.append((line, json.loads(text)))
                    except json.JSONDecodeError as e:
                        raise ConfigError(f"{path}: line {line}: not JSON ({e.msg})") from None
    elif path.suffix == ".json":
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, list):
            raise ConfigError(f"{path}: expected a JSON array of objects")
        rows = list(enumerate(data, start=1))
    else:
        raise ConfigError(f"{path}: unsupported file type {path.suffix!r} (use .tsv, .csv, .jsonl or .json)")
    return [spec._example(row, f"{split}-{i}", str(path), line) for i, (line, row) in enumerate(rows)]


BUILTIN_TASKS: dict[str, TaskSpec] = {
    t.name: t
    for t in (
        TaskSpec(
            name="sst2",
            description="SST-2 binary sentiment (GLUE train/dev, labelled SentEval test)",
            text_fields=("sentence",),
            label_field="label",
            label_names=("negative", "positive"),
            label_values=("0", "1"),
            files={"train": "train.tsv", "dev": "dev.tsv", "test": "test.tsv"},
            eval_split="test",
            hub=HubSource("SetFit/sst2", splits={"dev": "validation"}, columns={"text": "sentence"}),
        ),
        TaskSpec(
            name="sst5",
            description="SST-5 fine-grained sentiment",
            text_fields=("sentence",),
            label_field="label",
            label_names=("very negative", "negative", "neutral", "positive", "very positive"),
            label_values=("0", "1", "2", "3", "4"),
            files={"train": "train.tsv", "dev": "dev.tsv", "test": "test.tsv"},
            eval_split="test",
            hub=HubSource("SetFit/sst5", splits={"dev": "validation"}, columns={"text": "sentence"}),
        ),
        TaskSpec(
            name="trec",
            description="TREC question classification, 6 coarse classes",
            text_fields=("sentence",),
            label_field="label",
            label_names=("abbreviation", "description", "entity", "human", "location", "number"),
            label_values=("ABBR", "DESC", "ENTY", "HUM", "LOC", "NUM"),
            files={"train": "train.tsv", "test": "test.tsv"},
            eval_split="test",
            hub=None,  # the hub copy stores coarse labels as integers; offline files are the reference
        ),
        TaskSpec(
            name="rte",
            description="RTE textual entailment (GLUE); reported on dev, as the test labels are hidden",
            text_fields=("sentence1", "sentence2"),
            label_field="label",
            label_names=("entailment", "not_entailment"),
            label_values=("entailment", "not_entailment"),
            files={"train": "train.tsv", "dev": "dev.tsv"},
            eval_split="dev",
            hub=None,
        ),
    )
}


def load_task_yaml(path: str | Path) -> TaskSpec:
    """Read a user task. Every problem names the file and the field."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: task file not found") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of task fields")
    known = {"name", "data_dir", "files", "text_fields", "label_field", "label_names", "label_values",
             "metric", "eval_split", "description"}
    unknown = set(raw) - known
    if unknown:
        raise ConfigError(f"{path}: unknown field(s) {sorted(unknown)}; known fields are {sorted(known)}")
    for required in ("name", "files", "text_fields", "label_names"):
        if required not in raw:
            raise ConfigError(f"{path}: missing required field {required!r}")

    def str_list(key: str) -> tuple[str, ...]:
        value = raw[key]
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not value or not all(isinstance(v, (str, int)) for v in value):
            raise ConfigError(f"{path}: field {key!r} must be a non-empty list of strings")
        return tuple(str(v) for v in value)

    files = raw["files"]
    if not isinstance(files, dict) or "train" not in files:
        raise ConfigError(f"{path}: field 'files' must map split names to files and include 'train'")
    label_names = str_list("label_names")
    label_values = str_list("label_values") if "label_values" in raw else label_names
    if len(label_values) != len(label_names):
        raise ConfigError(f"{path}: 'label_values' has {len(label_values)} entries, 'label_names' {len(label_names)}")
    metric = raw.get("metric", "accuracy")
    if metric not in METRICS:
        raise ConfigError(f"{path}: field 'metric' is {metric!r}; choose one of {list(METRICS)}")
    eval_split = raw.get("eval_split", "test" if "test" in files else ("dev" if "dev" in files else "train"))
    if eval_split not in files:
        raise ConfigError(f"{path}: 'eval_split' {eval_split!r} is not one of the files {sorted(files)}")
    data_dir = (path.parent / raw.get("data_dir", ".")).resolve()
    for split, name in files.items():
        if not (data_dir / name).exists():
            raise ConfigError(f"{path}: files.{split}: {data_dir / name} does not exist")
    return TaskSpec(
        name=str(raw["name"]),
        text_fields=str_list("text_fields"),
        label_field=str(raw.get("label_field", "label")),
        label_names=label_names,
        label_values=label_values,
        files={str(k): str(v) for k, v in files.items()},
        eval_split=eval_split,
        metric=metric,
        description=str(raw.get("description", "")),
        data_dir=str(data_dir),
        source=str(path),
    )


def get_task(name_or_path: str | TaskSpec) -> TaskSpec:
    """A built-in task by name, a user task from a YAML path, or a TaskSpec (returned as it is)."""
    if isinstance(name_or_path, TaskSpec):
        return name_or_path
    if name_or_path in BUILTIN_TASKS:
        return BUILTIN_TASKS[name_or_path]
    if name_or_path.endswith((".yaml", ".yml")) or os.path.sep in name_or_path:
        return load_task_yaml(name_or_path)
    raise ConfigError(
        f"task: unknown task {name_or_path!r}; built-in tasks are {sorted(BUILTIN_TASKS)}, or pass a task YAML file",
        field="task")
