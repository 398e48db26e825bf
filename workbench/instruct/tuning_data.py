"""Instruction data for tuning: read from any of the layouts the workbench writes or users bring, put in the model's
prompt format, and tokenized with the loss on the response only.

Layouts read (`read_tuning_data`):
- what `workbench instruct mix` writes: its folder, its `mixture.jsonl`, or its `hf/` dataset (`inputs`, `targets`,
  `task`, `template_id`);
- instruction records as JSON lines: Alpaca (`instruction`, `input`, `output`) or self-instruct (`instruction` with
  `instances`), as `workbench instruct self-instruct` writes them; or Alpaca's JSON array file;
- any Hugging Face dataset saved to disk (`save_to_disk`) with `instruction` / `input` / `output` fields, or
  `inputs` / `targets` (a DatasetDict: its `train` split).

The prompt format is the model's chat template when its tokenizer has one (the instruction as the user's turn,
the response as the assistant's), else `PLAIN_FORMAT`. The same format is used by zero-shot evaluation, so a
tuned model is asked in the form it was taught.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from workbench.errors import ConfigError
from workbench.instruct.checks import json_array, json_lines, read_text_lines
from workbench.instruct.records import read_instruction_records
from workbench.training.causal_lm import EncodedLM
from workbench.training.linear_ce import IGNORE

PLAIN_FORMAT = "### Instruction:\n{prompt}\n\n### Response:\n"  # for models without a chat template
MIXTURE_FILE = "mixture.jsonl"
SUMMARY_FILE = "summary.json"


@dataclass(frozen=True)
class TuningRecord:
    prompt: str
    response: str
    where: str  # "FILE: line N" / "FILE: record N", for messages about this record
    task: str | None = None  # the mixture's task (None for free instruction records)
    template_id: str | None = None  # "task:k": the instruction template it was rendered with


@dataclass
class TuningData:
    records: list[TuningRecord]
    source: str  # the file or folder read
    layout: str  # "mixture", "records", "hf"
    summary: dict = field(default_factory=dict)  # the mixture's summary.json, when there is one

    def trained_templates(self) -> dict[str, list[str]]:
        """task -> the template ids its records were rendered with."""
        out: dict[str, set[str]] = {}
        for r in self.records:
            if r.task and r.template_id:
                out.setdefault(r.task, set()).add(r.template_id)
        return {t: sorted(ids, key=_template_number) for t, ids in sorted(out.items())}

    def task_counts(self) -> dict[str, int]:
        return dict(Counter(r.task or "records" for r in self.records))


def _template_number(template_id: str) -> int:
    tail = template_id.rsplit(":", 1)[-1]
    return int(tail) if tail.isdigit() else -1


def read_tuning_data(path: str | Path, flag: str = "--data") -> TuningData:
    """Every record of the data at `path`; a record that cannot be used is an error naming the file and record."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{flag} {path}: no such file or folder")
    if path.is_dir():
        if (path / MIXTURE_FILE).is_file():
            return _mixture_jsonl(path / MIXTURE_FILE, flag)
        if any((path / name).is_file() for name in ("dataset_info.json", "state.json", "dataset_dict.json")):
            return _hf_dataset(path, flag)
        raise ConfigError(f"{flag} {path}: a folder with neither {MIXTURE_FILE} (`workbench instruct mix --out`) nor "
                          f"a Hugging Face dataset saved with save_to_disk")
    if path.suffix == ".json":
        return _json_array(path, flag)
    first = next((text for _, text in read_text_lines(path, "JSON-lines file") if text.strip()), None)
    if first is None:
        raise ConfigError(f"{flag} {path}: no records (an empty file)")
    try:
        head = json.loads(first)
    except json.JSONDecodeError:
        head = None
    if isinstance(head, dict) and "inputs" in head:
        return _mixture_jsonl(path, flag)
    records = read_instruction_records(path, flag)
    return TuningData([TuningRecord(r.prompt(), r.output, r.where) for r in records], str(path), "records")


def _mixture_record(raw, where: str) -> TuningRecord:
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a JSON object with 'inputs' and 'targets'")
    for key in ("inputs", "targets"):
        if not isinstance(raw.get(key), str) or not raw[key].strip():
            raise ConfigError(f"{where}: field {key!r} is missing or empty")
    task, template = raw.get("task"), raw.get("template_id")
    return TuningRecord(raw["inputs"], raw["targets"], where, task if isinstance(task, str) else None,
                        template if isinstance(template, str) else None)


def _summary(folder: Path) -> dict:
    path = folder / SUMMARY_FILE
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path}: not JSON ({e.msg}); it is the mixture's summary: rebuild the mixture") from None


def _mixture_jsonl(path: Path, flag: str) -> TuningData:
    records = [_mixture_record(raw, where) for where, raw in json_lines(path)]
    if not records:
        raise ConfigError(f"{flag} {path}: no records (an empty file)")
    return TuningData(records, str(path), "mixture", _summary(path.parent))


def _alpaca_record(raw, where: str) -> TuningRecord:
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected an object with 'instruction' and 'output'")
    instruction, given, output = raw.get("instruction"), raw.get("input", ""), raw.get("output")
    if not isinstance(instruction, str) or not instruction.strip():
        raise ConfigError(f"{where}: field 'instruction' is missing or empty")
    if given is None:
        given = ""
    if not isinstance(given, str):
        raise ConfigError(f"{where}: field 'input' must be a string")
    if not isinstance(output, str) or not output.strip():
        raise ConfigError(f"{where}: field 'output' is missing or empty")
    prompt = f"{instruction.strip()}\n\n{given.strip()}" if given.strip() else instruction.strip()
    return TuningRecord(prompt, output.strip(), where)


def _json_array(path: Path, flag: str) -> TuningData:
    raw = json_array(path, "JSON file")  # Alpaca's layout: one array of {instruction, input, output}
    if not raw:
        raise ConfigError(f"{flag} {path}: no records (an empty array)")
    return TuningData([_alpaca_record(r, f"{path}: record {k}") for k, r in enumerate(raw)], str(path), "records")


def _saved_empty(folder: Path) -> bool:
    """Whether `folder` holds an empty dataset (or a DatasetDict with an empty train split): `datasets` saves one
    with no data file at all and then cannot load it back (an IndexError), so it is recognised from its state.json."""
    state = folder / "state.json"
    if not state.is_file():
        state = folder / "train" / "state.json"
    try:
        return json.loads(state.read_text(encoding="utf-8")).get("_data_files") == []
    except (OSError, ValueError, AttributeError):
        return False


def _hf_dataset(folder: Path, flag: str) -> TuningData:
    import datasets

    try:
        ds = datasets.load_from_disk(str(folder))
    except Exception as e:  # datasets raises several types for a folder it cannot read
        if _saved_empty(folder):
            raise ConfigError(f"{flag} {folder}: no records (an empty dataset)") from None
        raise ConfigError(f"{flag} {folder}: not a readable Hugging Face dataset ({str(e).splitlines()[0][:200]})"
                          ) from None
    if isinstance(ds, datasets.DatasetDict):
        if "train" not in ds:
            raise ConfigError(f"{flag} {folder}: a DatasetDict without a 'train' split (splits: {', '.join(ds)})")
        ds = ds["train"]
    columns = set(ds.column_names)
    if len(ds) == 0:
        raise ConfigError(f"{flag} {folder}: no records (an empty dataset)")
    if {"inputs", "targets"} <= columns:
        read = _mixture_record
    elif {"instruction", "output"} <= columns:
        read = _alpaca_record
    else:
        raise ConfigError(f"{flag} {folder}: the dataset has fields {sorted(columns)}; expected instruction / input / "
                          f"output, or inputs / targets")
    records = [read(row, f"{folder}: record {k}") for k, row in enumerate(ds)]
    summary = _summary(folder.parent) if folder.name == "hf" else {}  # `instruct mix` writes hf/ beside the summary
    return TuningData(records, str(folder), "hf", summary)


# ---- the prompt format and tokens ------------------------------------------------------------------------------

def has_chat_template(tokenizer) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


def prompt_text(tokenizer, prompt: str) -> str:
    """The text the model reads before its answer: the chat template's user turn and assistant header, or
    `PLAIN_FORMAT`."""
    if has_chat_template(tokenizer):
        return tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                             add_generation_prompt=True)
    return PLAIN_FORMAT.format(prompt=prompt)


def prompt_ids(tokenizer, prompt: str) -> list[int]:
    # A chat template writes its own special tokens as text; a plain prompt gets the tokenizer's (<bos>).
    return tokenizer(prompt_text(tokenizer, prompt), add_special_tokens=not has_chat_template(tokenizer))["input_ids"]


def end_ids(tokenizer) -> list[int]:
    """The token(s) a response ends with: the chat template's end of turn, else the end of text."""
    eos = tokenizer.eos_token_id
    if eos is None:
        raise ConfigError(f"{type(tokenizer).__name__} has no end-of-text token: a tuned model could not learn "
                          f"where a response ends")
    return [eos]


def encode_record(tokenizer, record: TuningRecord) -> EncodedLM:
    """Prompt tokens (labels IGNORE: they contribute nothing to the loss), then the response's tokens and the end
    token (labelled)."""
    ids = prompt_ids(tokenizer, record.prompt)
    response = tokenizer(record.response, add_special_tokens=False)["input_ids"] + end_ids(tokenizer)
    return EncodedLM(ids + response, [IGNORE] * len(ids) + response, record.where)


@dataclass
class Encoded:
    examples: list[EncodedLM]
    too_long: list[str]  # where each record that did not fit is (prompt + response over max_length)


def encode_records(tokenizer, records: list[TuningRecord], max_length: int, flag: str = "--max-length") -> Encoded:
    """Every record tokenized. A response that cannot fit even after a one-token prompt is an error naming the
    record (the model could never be taught it); a record whose prompt and response together run over
    `max_length` is left out and listed, since cutting it would teach a response to a question it never saw."""
    examples, too_long = [], []
    for r in records:
        e = encode_record(tokenizer, r)
        n_response = e.response_tokens
        if n_response >= max_length:
            raise ConfigError(f"{r.where}: the response is {n_response} tokens, longer than the context of "
                              f"{max_length} ({flag}); shorten it, remove the record or raise {flag}")
        if len(e.input_ids) > max_length:
            too_long.append(r.where)
            continue
        examples.append(e)
    if not examples:
        raise ConfigError(f"{flag} {max_length}: every record is longer than that (the first: {too_long[0]}); "
                          f"raise {flag}")
    return Encoded(examples, too_long)
