"""Task specifications: built-in ones and user tasks described by a YAML file.

A built-in task's rows come from `WORKBENCH_DATA_DIR/<task>/<split>.<ext>` when that folder exists (offline),
and from the Hugging Face hub otherwise. Without either (no folder, and the hub is not reachable or does not
hold the task) the task is refused in one line naming WORKBENCH_DATA_DIR, at once: the hub client's own
retries would take half a minute and end in a traceback. A user task names its own files (data, and
optionally its template and verbalizer files) and needs no code.
"""

from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from workbench import resources
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
    template_file: str | None = None  # None: the template file shipped for a task of this name, if any
    verbalizer_file: str | None = None  # likewise
    unlabeled_file: str | None = None  # unlabelled text for PET/iPET (the task's text fields; a label is ignored)

    @property
    def num_classes(self) -> int:
        return len(self.label_names)

    def resolve_data_dir(self) -> Path | None:
        if self.data_dir is not None:
            return Path(self.data_dir)
        root = os.environ.get(DATA_DIR_ENV)
        return Path(root) / self.name if root else None

    def prompt_file(self, what: str) -> Path | None:
        """The task's "template" or "verbalizer" file: the one its YAML names, else the one shipped for a task of
        its name, else None."""
        own = self.template_file if what == "template" else self.verbalizer_file
        if own is not None:
            return Path(own)
        shipped = resources.template_file(self.name) if what == "template" else resources.verbalizer_file(self.name)
        return shipped if shipped.exists() else None

    def load_unlabeled(self) -> list[Example]:
        """The rows of the task's `unlabeled` file, with label -1: every text field must be a column (or key)."""
        if self.unlabeled_file is None:
            raise WorkbenchError(f"task {self.name!r} names no unlabeled file")
        path = Path(self.unlabeled_file)
        table = read_table(path, "unlabeled file")
        if table.header is not None:
            missing = [f for f in self.text_fields if f not in table.header]
            if missing:
                raise ConfigError(f"{path}: line 1: the header {list(table.header)} has no column {missing[0]!r}; "
                                  f"task {self.name!r} reads text field(s) {list(self.text_fields)}")
        out = []
        for i, (n, row) in enumerate(table.rows):
            for name in self.text_fields:
                value = row.get(name)
                if not isinstance(value, str):
                    got = "missing" if name not in row else f"{type(value).__name__}, not text"
                    raise ConfigError(f"{path}: {table.unit} {n}: field {name!r} is {got} (task {self.name!r} reads "
                                      f"text field(s) {list(self.text_fields)})")
            out.append(Example(f"unlabeled-{i}", {k: str(v).strip() for k, v in row.items() if v is not None}, -1))
        return out

    def data_source(self) -> Path | HubSource:
        """Where the rows come from: the task's folder (a user task's, or WORKBENCH_DATA_DIR/<name> when it
        exists), else the hub. No folder and no reachable hub is refused here, once, in one line."""
        folder = self.resolve_data_dir()
        if self.data_dir is not None or (folder is not None and folder.is_dir()):
            return folder
        missing = f"{folder} does not exist" if folder is not None else f"{DATA_DIR_ENV} is not set"
        if self.hub is None:
            raise WorkbenchError(f"task {self.name!r}: no local data ({missing}) and no copy on the Hugging Face "
                                 f"hub; {self._data_hint()}")
        from workbench.models.backbone import hub_unreachable

        why = hub_unreachable("HF_DATASETS_OFFLINE")
        if why:
            raise WorkbenchError(f"task {self.name!r}: no local data ({missing}) and the Hugging Face hub is not "
                                 f"reachable ({why}); {self._data_hint()}")
        return self.hub

    def _data_hint(self) -> str:
        names = list(self.files.values())
        suffixes = {Path(n).suffix for n in names}
        files = (f"{{{','.join(Path(n).stem for n in names)}}}{suffixes.pop()}" if len(suffixes) == 1
                 else f"{{{','.join(names)}}}")
        return f"set {DATA_DIR_ENV} to a folder holding {self.name}/{files} (e.g. ../shared/data)"

    def load_split(self, split: str) -> list[Example]:
        if split not in self.files:
            raise WorkbenchError(f"task {self.name!r} has no split {split!r}; it has {sorted(self.files)}")
        source = self.data_source()
        if isinstance(source, HubSource):
            return self._load_hub(split)
        path = source / self.files[split]
        if not path.exists():
            fix = f"named by files.{split} in {self.source}" if self.data_dir is not None else self._data_hint()
            raise WorkbenchError(f"no data for task {self.name!r} split {split!r}: {path} does not exist; {fix}")
        return _load_file_cached(self, str(path))

    def _load_hub(self, split: str) -> list[Example]:
        import datasets  # imported lazily: slow, and only online users need it

        assert self.hub is not None
        try:
            ds = datasets.load_dataset(self.hub.path, self.hub.config, split=self.hub.splits.get(split, split))
        except Exception as e:  # whatever the hub client raises (connection, missing split, cache) is one line
            reason = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise WorkbenchError(f"task {self.name!r} split {split!r}: loading {self.hub.path} from the Hugging Face "
                                 f"hub failed ({reason}); {self._data_hint()}") from None
        rows = []
        for i, raw in enumerate(ds):
            row = {self.hub.columns.get(k, k): v for k, v in raw.items()}
            rows.append(row)
        return [self._example(row, f"{split}-{i}", f"hub:{self.hub.path}", i) for i, row in enumerate(rows)]

    def _example(self, row: dict, guid: str, where: str, line: int, unit: str = "line",
                 checked: bool = False) -> Example:
        """`checked`: the caller knows the row is a dict of strings holding every field (a .tsv/.csv row whose
        header was checked), so the per-row checks are skipped: the few-shot protocol reads every training row."""
        if not checked:
            self._check_row(row, f"{where}: {unit} {line}")
        raw = str(row[self.label_field]).strip()
        try:
            label = self.label_values.index(raw)
        except ValueError:
            raise ConfigError(
                f"{where}: {unit} {line}: label {raw!r} is not one of {list(self.label_values)} (task {self.name!r}); "
                f"fix the row or the task's label_values"
            ) from None
        fields = {str(k): str(v).strip() for k, v in row.items() if v is not None}
        return Example(guid=guid, fields=fields, label=label)

    def _check_row(self, row, at: str) -> None:
        """Refuse a record that is not an object, lacks a field, or holds null or a list/object for one."""
        if not isinstance(row, dict):
            raise ConfigError(f"{at}: expected an object of fields ({{\"{self.text_fields[0]}\": ..., "
                              f"\"{self.label_field}\": ...}}), got {type(row).__name__}")
        for name in (*self.text_fields, self.label_field):
            if name not in row:
                raise ConfigError(f"{at}: missing field {name!r} (task {self.name!r} reads text field(s) "
                                  f"{list(self.text_fields)} and label field {self.label_field!r})")
            value = row[name]
            if value is None or isinstance(value, (dict, list)):
                got = "null" if value is None else f"a {type(value).__name__}"
                raise ConfigError(f"{at}: field {name!r} is {got}; expected text (task {self.name!r})")


@lru_cache(maxsize=32)
def _load_file_cached(spec: TaskSpec, path: str) -> list[Example]:
    return _load_file(spec, Path(path))


DATA_SUFFIXES = (".tsv", ".csv", ".jsonl", ".json")


@dataclass(frozen=True)
class Table:
    """The records of a data file as (number, fields): the line number, or the record number in a .json array
    (`unit` says which), and the header of a .tsv/.csv file."""

    path: Path
    header: tuple[str, ...] | None
    rows: list[tuple[int, dict]]
    unit: str = "line"  # "line" or "record"


def read_table(path: str | Path, what: str = "data file", suffix: str | None = None) -> Table:
    """A .tsv, .csv, .jsonl or .json file (by `suffix`, default the file's own) as records; every problem is a
    one-line ConfigError naming the file and line (or record)."""
    from workbench.config.yaml_io import read_text_file
    from workbench.io import DATA_MAX_BYTES

    path = Path(path)
    suffix = (suffix or path.suffix).lower()
    if suffix not in DATA_SUFFIXES:
        raise ConfigError(f"{path}: unsupported file type {path.suffix!r}; use {', '.join(DATA_SUFFIXES)}")
    text = read_text_file(path, what, DATA_MAX_BYTES)
    header: tuple[str, ...] | None = None
    rows: list[tuple[int, dict]] = []
    unit = "line"
    if suffix in (".tsv", ".csv"):
        # No quoting: RTE text contains bare quotes (see the data manifest).
        reader = csv.reader(io.StringIO(text, newline=""), delimiter="\t" if suffix == ".tsv" else ",",
                            quoting=csv.QUOTE_NONE)
        try:
            first = next(reader, None)
            if first is None or not any(c.strip() for c in first):
                raise ConfigError(f"{path}: line 1: no header; the {what} must start with a header line naming its "
                                  f"columns")
            header = tuple(c.strip() for c in first)
            twice = next((c for i, c in enumerate(header) if c in header[:i]), None)
            if twice is not None:
                raise ConfigError(f"{path}: line 1: column {twice!r} appears twice in the header; rename one")
            for values in reader:
                if not values:  # a blank line
                    continue
                if len(values) != len(header):
                    sep = "tabs" if suffix == ".tsv" else "commas"
                    raise ConfigError(f"{path}: line {reader.line_num}: {len(values)} columns, but the header has "
                                      f"{len(header)}; fields are separated by {sep}, one record per line")
                rows.append((reader.line_num, dict(zip(header, values))))
        except csv.Error as e:
            raise ConfigError(f"{path}: line {reader.line_num}: cannot read the record ({e})") from None
    elif suffix == ".jsonl":
        for line, record in enumerate(text.split("\n"), start=1):  # not splitlines: JSON text may hold U+2028
            if record.strip():
                rows.append((line, _json(record, path, f"line {line}")))
    else:
        data = _json(text, path, None)
        if not isinstance(data, list):
            raise ConfigError(f"{path}: expected a JSON array of objects (one per record), got "
                              f"{type(data).__name__}; a file of one object per line is .jsonl")
        rows, unit = list(enumerate(data, start=1)), "record"
    for n, row in rows:
        if not isinstance(row, dict):
            raise ConfigError(f"{path}: {unit} {n}: expected a JSON object of fields, got {type(row).__name__}")
    if not rows:
        after = " after the header" if header is not None else ""
        raise ConfigError(f"{path}: no records{after}; the {what} needs at least one record")
    return Table(path, header, rows, unit)


def _json(text: str, path: Path, where: str | None):
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        at = where or f"line {e.lineno}"
        raise ConfigError(f"{path}: {at}: not valid JSON ({e.msg} at column {e.colno})") from None
    except RecursionError:
        raise ConfigError(f"{path}: {where or 'the file'}: JSON nested too deeply to be a record") from None


def _load_file(spec: TaskSpec, path: Path) -> list[Example]:
    split = path.stem
    table = read_table(path, "data file")
    if table.header is not None:
        missing = [f for f in (*spec.text_fields, spec.label_field) if f not in table.header]
        if missing:
            raise ConfigError(f"{path}: line 1: the header {list(table.header)} has no column {missing[0]!r}; task "
                              f"{spec.name!r} reads text field(s) {list(spec.text_fields)} and label field "
                              f"{spec.label_field!r}")
    where, checked = str(path), table.header is not None
    return [spec._example(row, f"{split}-{i}", where, n, table.unit, checked) for i, (n, row) in enumerate(table.rows)]


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


TASK_FIELDS = ("name", "data_dir", "files", "text_fields", "label_field", "label_names", "label_values", "metric",
               "eval_split", "description", "templates", "verbalizer", "unlabeled")


def load_task_yaml(path: str | Path) -> TaskSpec:
    """Read a user task. Every problem names the file, the line and the field."""
    import yaml

    from workbench.config.yaml_io import yaml_mapping, yaml_repr
    from workbench.io import DATA_MAX_BYTES, TEXT_MAX_BYTES

    path = Path(path)
    doc = yaml_mapping(path, "task file", f"a mapping of task fields ({', '.join(TASK_FIELDS)})")
    raw = doc.data
    unknown = [k for k in raw if k not in TASK_FIELDS]
    if unknown:
        raise ConfigError(f"{doc.where(unknown[0])}: unknown field(s) {sorted(map(str, unknown))}; known fields are "
                          f"{sorted(TASK_FIELDS)}")
    for required in ("name", "files", "text_fields", "label_names"):
        if required not in raw:
            raise ConfigError(f"{path}: missing required field {required!r}")

    def text(key: str, default: str | None = None) -> str:
        value = raw.get(key, default)
        if isinstance(value, bool) or not isinstance(value, (str, int, float)) or not str(value).strip():
            raise ConfigError(f"{doc.where(key)}: {key}: {yaml_repr(value)} is not allowed; expected a non-empty "
                              f"string")
        return str(value).strip()

    def str_list(key: str, what: str) -> tuple[str, ...]:
        value = raw[key]
        if isinstance(value, str):
            value = [value]
        if isinstance(value, list):
            for i, v in enumerate(value):
                if isinstance(v, bool):  # YAML 1.1 reads yes/no/on/off as booleans
                    node = doc.node(key, i)
                    spelled = node.value if isinstance(node, yaml.ScalarNode) else str(v).lower()
                    raise ConfigError(f"{doc.where(key, i)}: {key}: {spelled} reads as a boolean in YAML; quote it: "
                                      f"'{spelled}'")
        if (not isinstance(value, list) or not value
                or not all(isinstance(v, (str, int)) and not isinstance(v, bool) and str(v).strip() for v in value)):
            raise ConfigError(f"{doc.where(key)}: {key}: {yaml_repr(value)} is not allowed; expected a non-empty "
                              f"list of strings")
        out = tuple(str(v).strip() for v in value)
        for i, v in enumerate(out):
            if v in out[:i]:
                raise ConfigError(f"{doc.where(key, i)}: {key}: {v!r} appears twice; {what}")
        return out

    name = text("name")
    files = raw["files"]
    if not isinstance(files, dict) or "train" not in files:
        raise ConfigError(f"{doc.where('files')}: files: expected a mapping of split -> file that includes 'train', "
                          f"e.g. {{train: train.tsv, test: test.tsv}}")
    data_dir = (path.parent / text("data_dir", ".")).resolve()
    for split, file in files.items():
        at = f"{doc.where('files', split)}: files.{split}"
        if not isinstance(split, str):
            raise ConfigError(f"{at}: a split name must be a string (train, dev, test, ...)")
        if not isinstance(file, str) or not file.strip():
            raise ConfigError(f"{at}: {yaml_repr(file)} is not allowed; expected a file name, relative to the task "
                              f"file (e.g. {split}.tsv)")
        where = data_dir / file.strip()
        if where.suffix.lower() not in DATA_SUFFIXES:
            raise ConfigError(f"{at}: {file!r} has an unsupported file type; use {', '.join(DATA_SUFFIXES)}")
        if where.is_dir():
            raise ConfigError(f"{at}: {where} is a directory, not a data file")
        if not where.exists():
            raise ConfigError(f"{at}: {where} does not exist")
        _regular_file(where, "data file", DATA_MAX_BYTES, at)
    text_fields = str_list("text_fields", "each text field once")
    label_names = str_list("label_names", "every class needs its own name")
    label_values = (str_list("label_values", "two classes cannot share a raw label value")
                    if "label_values" in raw else label_names)
    if len(label_values) != len(label_names):
        raise ConfigError(f"{doc.where('label_values')}: label_values has {len(label_values)} entries but "
                          f"label_names has {len(label_names)}; give one raw value per class, in the same order")
    label_field = text("label_field", "label")
    metric = raw.get("metric", "accuracy")
    if metric not in METRICS:
        raise ConfigError(f"{doc.where('metric')}: field 'metric' is {metric!r}; choose one of {list(METRICS)}")
    eval_split = raw.get("eval_split", "test" if "test" in files else ("dev" if "dev" in files else "train"))
    if not isinstance(eval_split, str) or eval_split not in files:
        raise ConfigError(f"{doc.where('eval_split')}: 'eval_split' {eval_split!r} is not one of the files "
                          f"{sorted(files)}")

    if len(label_names) < 2:
        raise ConfigError(f"{doc.where('label_names')}: label_names: {list(label_names)} names one class; a "
                          f"classification task needs at least two")

    def prompt_file(key: str, example: str) -> str | None:
        """A template, verbalizer or unlabelled file, relative to the task file; its lines are checked when a run
        reads it."""
        if key not in raw:
            return None
        value = raw[key]
        if not isinstance(value, str) or not value.strip():
            raise ConfigError(f"{doc.where(key)}: {key}: {yaml_repr(value)} is not allowed; expected a file name, "
                              f"relative to the task file (e.g. {example})")
        where = (path.parent / value.strip()).resolve()
        if where.is_dir():
            raise ConfigError(f"{doc.where(key)}: {key}: {where} is a directory, not a file")
        if not where.exists():
            raise ConfigError(f"{doc.where(key)}: {key}: {where} does not exist")
        _regular_file(where, f"{key} file", DATA_MAX_BYTES if key == "unlabeled" else TEXT_MAX_BYTES,
                      f"{doc.where(key)}: {key}")
        return str(where)

    return TaskSpec(
        name=name,
        text_fields=text_fields,
        label_field=label_field,
        label_names=label_names,
        label_values=label_values,
        files={split: file.strip() for split, file in files.items()},
        eval_split=eval_split,
        metric=metric,
        description=str(raw.get("description") or ""),
        data_dir=str(data_dir),
        source=str(path),
        template_file=prompt_file("templates", "templates.txt"),
        verbalizer_file=prompt_file("verbalizer", "verbalizer.txt"),
        unlabeled_file=prompt_file("unlabeled", "unlabeled.tsv"),
    )


def _regular_file(path: Path, what: str, max_bytes: int, at: str) -> None:
    """A file the task YAML names must be a regular file within the cap (`workbench.io`): a pipe would block the
    run when the file is read, later; here the message names the YAML's line."""
    from workbench.io import check_regular_file

    try:
        check_regular_file(path, what, max_bytes)
    except ConfigError as e:
        raise ConfigError(f"{at}: {e}") from None


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
