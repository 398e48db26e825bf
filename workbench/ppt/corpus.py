"""Unlabelled documents for prompt pre-training, split into sentences.

A corpus is a plain-text file, a JSON-lines file (one document per record, in a text field), a folder of such
files, or a Hugging Face dataset saved with `save_to_disk`. In plain text, a top-level heading (`= Title =` as
in WikiText, or `# Title` as in Markdown) starts a new document; a file without such headings has one
document per blank-line-separated block. Lower headings (`= = Section = =`, `## Section`) are dropped.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from workbench import io
from workbench.errors import ConfigError

TEXT_SUFFIXES = (".txt", ".md")
JSONL_SUFFIXES = (".jsonl", ".json")
MIN_WORDS = 5  # PPT's pair tasks use sentences of at least 5 tokens ...
MIN_SENTENCES = 5  # ... from documents of at least 5 such sentences

_TOP_HEADING = re.compile(r"^\s*(= [^=].*[^=] =|# .+)\s*$")
_SUB_HEADING = re.compile(r"^\s*(=( =)+ .* =( =)+|#{2,} .+)\s*$")
# A sentence ends at . ! or ? (and a closing quote or bracket) followed by a space and a capital or a digit.
_SENTENCE_END = re.compile(r"(?:(?<=[.!?])|(?<=[.!?][\"')\]]))\s+(?=[\"'(\[]?[A-Z0-9])")
# WikiText's tokenisation: `@-@` for a joined hyphen, spaces around punctuation.
_WIKI_JOINS = re.compile(r" @(.)@ ")
_SPACE_BEFORE = re.compile(r" ([,.;:!?)\]]|'s\b|n't\b|'re\b|'ve\b|'ll\b|'d\b|'m\b)")
_SPACE_AFTER = re.compile(r"([(\[]) ")


@dataclass(frozen=True)
class Document:
    source: str  # "file:line" where the document starts, or "dataset[i]"
    sentences: tuple[str, ...]


def detokenize(text: str) -> str:
    """Undo WikiText-style tokenisation (`1 @,@ 000`, `word , word`); other text passes through unchanged."""
    text = _WIKI_JOINS.sub(r"\1", text)
    text = _SPACE_BEFORE.sub(r"\1", text)
    return _SPACE_AFTER.sub(r"\1", text)


def split_sentences(paragraph: str) -> list[str]:
    return [s.strip() for s in _SENTENCE_END.split(detokenize(paragraph.strip())) if s.strip()]


def words(sentence: str) -> int:
    return len(sentence.split())


def read_corpus(path: str | Path, text_field: str = "text") -> list[Document]:
    """Every document of the corpus, in order; a corpus with no text at all is refused, naming the path."""
    root = Path(path)
    if not root.exists():
        raise ConfigError(f"--corpus {path}: no such file or folder", field="corpus")
    if root.is_dir() and any((root / f).exists() for f in ("dataset_info.json", "state.json", "dataset_dict.json")):
        docs = _read_dataset(root, text_field)
    elif root.is_dir():
        files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix in TEXT_SUFFIXES + JSONL_SUFFIXES)
        if not files:
            raise ConfigError(f"--corpus {path}: the folder holds no .txt, .md or .jsonl file", field="corpus")
        docs = [d for f in files for d in _read_file(f, text_field)]
    else:
        docs = _read_file(root, text_field)
    if not docs:
        raise ConfigError(f"--corpus {path}: no text found (0 documents); expected plain text, JSON lines with a "
                          f"{text_field!r} field, or a dataset saved with datasets' save_to_disk", field="corpus")
    return docs


def _read_text(path: Path) -> str:
    try:
        raw = io.read_bytes(path, "corpus file", io.DATA_MAX_BYTES)
    except ConfigError as e:  # a pipe, a device, a file over the cap
        raise ConfigError(str(e), field="corpus") from None
    bom = 3 if raw.startswith(b"\xef\xbb\xbf") else 0
    try:
        return raw[bom:].decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[bom : bom + e.start].count(b"\n") + 1
        raise ConfigError(f"{path}: line {line}: not UTF-8 text ({e.reason})", field="corpus") from None


def _read_file(path: Path, text_field: str) -> list[Document]:
    if path.suffix in JSONL_SUFFIXES:
        return _read_jsonl(path, text_field)
    lines = _read_text(path).splitlines()
    has_headings = any(_TOP_HEADING.match(line) and not _SUB_HEADING.match(line) for line in lines)
    docs: list[Document] = []
    sentences: list[str] = []
    start = 1

    def close(next_start: int) -> None:
        nonlocal sentences, start
        if sentences:
            docs.append(Document(f"{path}:{start}", tuple(sentences)))
        sentences, start = [], next_start

    for number, line in enumerate(lines, start=1):
        if _SUB_HEADING.match(line):
            continue
        if _TOP_HEADING.match(line):
            close(number)
        elif not line.strip():
            if not has_headings:
                close(number + 1)
        else:
            if not sentences:
                start = number
            sentences.extend(split_sentences(line))
    close(len(lines) + 1)
    return docs


def _read_jsonl(path: Path, text_field: str) -> list[Document]:
    docs = []
    # split at "\n" only: str.splitlines would also cut at U+2028 and U+0085, which JSON strings may hold raw
    for number, line in enumerate(_read_text(path).split("\n"), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            raise ConfigError(f"{path}: line {number}: not valid JSON ({e.msg})", field="corpus") from None
        text = record.get(text_field) if isinstance(record, dict) else None
        if not isinstance(text, str):
            raise ConfigError(f"{path}: line {number}: no text field {text_field!r} (a string); give --text-field "
                              f"NAME for another field", field="text_field")
        sentences = [s for para in text.split("\n") for s in split_sentences(para)]
        if sentences:
            docs.append(Document(f"{path}:{number}", tuple(sentences)))
    return docs


def _read_dataset(folder: Path, text_field: str) -> list[Document]:
    from datasets import DatasetDict, load_from_disk

    data = load_from_disk(str(folder))
    if isinstance(data, DatasetDict):  # the train split when there is one, else the first
        data = data["train"] if "train" in data else data[next(iter(data))]
    if text_field not in data.column_names:
        raise ConfigError(f"{folder}: the dataset has no column {text_field!r} (columns: {data.column_names}); give "
                          f"--text-field NAME", field="text_field")
    docs = []
    for i, text in enumerate(data[text_field]):
        sentences = [s for para in str(text or "").split("\n") for s in split_sentences(para)]
        if sentences:
            docs.append(Document(f"{folder}[{i}]", tuple(sentences)))
    return docs


def long_documents(docs: list[Document]) -> list[tuple[str, ...]]:
    """The documents the pair tasks can use: their sentences of at least MIN_WORDS words, for documents with at
    least MIN_SENTENCES of them."""
    out = []
    for doc in docs:
        kept = tuple(s for s in doc.sentences if words(s) >= MIN_WORDS)
        if len(kept) >= MIN_SENTENCES:
            out.append(kept)
    return out
