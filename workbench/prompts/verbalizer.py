"""Manual verbalizers in OpenPrompt's file format: one line per class, comma-separated label words.

Label words become token ids here, once, with every problem reported before a model is trained:
a class count that does not match the task, a word the vocabulary cannot spell, a word that needs
several tokens when no policy says how to score it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from workbench.errors import ConfigError

MULTI_TOKEN_POLICIES = ("first", "mean")


@dataclass(frozen=True)
class Verbalizer:
    words: tuple[tuple[str, ...], ...]  # per class
    source: str = "<string>"

    @classmethod
    def from_lines(cls, lines: list[str], source: str = "<string>") -> Verbalizer:
        classes = []
        for i, line in enumerate(lines, start=1):
            words = tuple(w.strip() for w in line.split(","))
            if any(not w for w in words):
                raise ConfigError(f"{source}:{i}: empty label word in {line!r}")
            classes.append(words)
        return cls(tuple(classes), source)

    def check_classes(self, label_names: tuple[str, ...]) -> None:
        if len(self.words) != len(label_names):
            raise ConfigError(
                f"{self.source}: {len(self.words)} lines of label words, but the task has {len(label_names)} classes "
                f"({', '.join(label_names)}); write one line per class, in that order"
            )


def load_verbalizer(path: str | Path) -> Verbalizer:
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: verbalizer file not found")
    lines = [ln for ln in path.read_text(encoding="utf-8").splitlines()]
    while lines and not lines[-1].strip():
        lines.pop()
    for i, ln in enumerate(lines, start=1):
        if not ln.strip():
            raise ConfigError(f"{path}:{i}: blank line; one line per class, no gaps")
    return Verbalizer.from_lines(lines, str(path))


def space_sensitive(tokenizer) -> bool:
    """True for byte-BPE and SentencePiece vocabularies, where ' word' and 'word' are different tokens."""
    return tokenizer("a", add_special_tokens=False)["input_ids"] != tokenizer(" a", add_special_tokens=False)["input_ids"]


@dataclass
class LabelWordIds:
    """Sub-token ids and the [classes, tokens] matrix that turns token scores into class scores."""

    token_ids: list[int]
    class_matrix: torch.Tensor  # [C, T]
    multi_token: str | None

    def describe(self) -> str:
        return f"{len(self.token_ids)} label tokens, multi_token={self.multi_token or 'none needed'}"


def label_word_ids(verbalizer: Verbalizer, tokenizer, multi_token: str | None = None) -> LabelWordIds:
    if multi_token is not None and multi_token not in MULTI_TOKEN_POLICIES:
        raise ConfigError(f"multi-token policy {multi_token!r}: choose one of {list(MULTI_TOKEN_POLICIES)}")
    prefix = " " if space_sensitive(tokenizer) else ""
    unk = tokenizer.unk_token_id
    per_word: list[tuple[int, list[int]]] = []  # (class, token ids)
    needs_policy = False
    for c, words in enumerate(verbalizer.words):
        for word in words:
            ids = tokenizer(prefix + word, add_special_tokens=False)["input_ids"]
            where = f"{verbalizer.source}:{c + 1}"
            if not ids or (unk is not None and unk in ids):
                raise ConfigError(f"{where}: label word {word!r} is not in the model's vocabulary")
            if len(ids) > 1:
                if multi_token is None:
                    pieces = tokenizer.convert_ids_to_tokens(ids)
                    raise ConfigError(
                        f"{where}: label word {word!r} is {len(ids)} tokens {pieces}; choose a single-token word or "
                        f"pass --multi-token first|mean to say how to score it"
                    )
                needs_policy = True
                if multi_token == "first":
                    ids = ids[:1]
            per_word.append((c, ids))
    token_ids = sorted({t for _, ids in per_word for t in ids})
    col = {t: i for i, t in enumerate(token_ids)}
    matrix = torch.zeros(len(verbalizer.words), len(token_ids))
    words_per_class = [sum(1 for c2, _ in per_word if c2 == c) for c in range(len(verbalizer.words))]
    for c, ids in per_word:
        for t in ids:  # word score = mean of its tokens; class score = mean of its words
            matrix[c, col[t]] += 1.0 / (len(ids) * words_per_class[c])
    return LabelWordIds(token_ids, matrix, multi_token if needs_policy else None)
