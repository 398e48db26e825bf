"""Manual verbalizers in OpenPrompt's file formats, label words turned into token ids.

Files (OpenPrompt publishes all of these):
  .txt (or any other name)  one line per class, comma-separated label words ("bad, terrible"); blank lines
                            at the end are ignored, a blank line between classes is an error (OpenPrompt
                            would start a second verbalizer there: give each verbalizer its own file).
                            A line may spell its label word in template syntax, as OpenPrompt's generation
                            verbalizers do ({"text": "No"}); a label word filled from the example
                            ({"meta": "choice1"}) is a generation target, not a class word, and is refused.
  .json / .jsonl            {"class name": ["word", ...] or "word", ...}, classes in the task's order; or a
                            list of such objects, several verbalizers in one file (`choice` picks one,
                            0 by default as in OpenPrompt). A .jsonl file may also hold one object per line.
Classes are matched to the task by position. A JSON file that names the task's classes in another order
is refused rather than silently reordered, so the file on disk always reads the way it is used.

Label words become token ids here, once, with every problem reported before a model is trained:
a class count that does not match the task, a word the vocabulary cannot spell, a word that needs
several tokens when no policy says how to score it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from workbench.errors import ConfigError
from workbench.prompts.template import parse_template

if TYPE_CHECKING:
    import torch

MULTI_TOKEN_POLICIES = ("first", "mean")
JSON_SUFFIXES = (".json", ".jsonl")


@dataclass(frozen=True)
class Verbalizer:
    words: tuple[tuple[str, ...], ...]  # per class
    source: str = "<string>"
    classes: tuple[str, ...] = ()  # class names when the file gives them (JSON); () = by position only
    lines: tuple[int, ...] = ()  # each class's line in the file, for messages (0 = not known)

    def line(self, c: int) -> int:
        """Class `c`'s line in the file (0 = not known); built in code, classes are numbered as lines of a .txt
        file would be."""
        if not self.lines:
            return c + 1
        return self.lines[c] if c < len(self.lines) else 0

    def where(self, c: int) -> str:
        """"file:line" of class `c` when known, else the file."""
        line = self.line(c)
        return f"{self.source}:{line}" if line else self.source

    def describe(self, c: int) -> str:
        """"class 'pos' (line 2)": class `c` by its name when the file gives one, else its number, for messages."""
        name = repr(self.classes[c]) if c < len(self.classes) else str(c + 1)
        line = f" (line {self.line(c)})" if self.line(c) else ""
        return f"class {name}{line}"

    @classmethod
    def from_lines(cls, lines: list[str], source: str = "<string>") -> Verbalizer:
        classes = []
        for i, line in enumerate(lines, start=1):
            classes.append(_line_words(line, f"{source}:{i}"))
        verbalizer = cls(tuple(classes), source, (), tuple(range(1, len(lines) + 1)))
        for problem in verbalizer.word_problems():
            raise problem
        return verbalizer

    def word_problems(self) -> list[ConfigError]:
        """A label word given twice: for two classes it makes them indistinguishable, within one class it is a
        slip (it would count double)."""
        problems = []
        owner: dict[str, int] = {}
        for c, words in enumerate(self.words):
            for i, word in enumerate(words):
                if word in words[:i]:
                    problems.append(ConfigError(f"{self.where(c)}: label word {word!r} appears twice in this class; "
                                                f"give it once"))
                elif word in owner:
                    problems.append(ConfigError(
                        f"{self.where(c)}: label word {word!r} is also a word of {self.describe(owner[word])}; a "
                        f"label word can stand for one class only"))
                else:
                    owner[word] = c
        return problems

    def check_classes(self, label_names: tuple[str, ...]) -> None:
        if len(self.words) != len(label_names):
            hint = ""
            if len(self.words) == 1 and any(" " in w for w in self.words[0]):
                hint = f"; {self.words[0][0]!r} is one label word: words are separated by commas, classes by lines"
            n = len(self.words)
            if self.classes:
                have, fix = f"{n} classes ({', '.join(self.classes)})", "give one entry per class, in that order"
            else:
                have, fix = f"{n} line{'' if n == 1 else 's'} of label words", "write one line per class, in that order"
            raise ConfigError(
                f"{self.source}: {have}, but the task has {len(label_names)} classes ({', '.join(label_names)}); "
                f"{fix}{hint}"
            )
        if self.classes:
            mine, theirs = [c.lower() for c in self.classes], [c.lower() for c in label_names]
            if sorted(mine) == sorted(theirs) and mine != theirs:
                raise ConfigError(f"{self.source}: the file lists classes in the order {list(self.classes)} but the "
                                  f"task's order is {list(label_names)}; classes are matched by position, so list "
                                  f"them in the task's order")


def _line_words(line: str, where: str) -> tuple[str, ...]:
    """The label words of one class line."""
    if '{"' in line or "{'" in line:
        # OpenPrompt's generation verbalizers write the label word in template syntax: {"text": "No"}
        segs = parse_template(line, where).segments
        filled = sorted({s.kind for s in segs if s.kind != "text"})
        if filled:
            raise ConfigError(f"{where}: this label word is filled from each example ({', '.join(filled)}), a "
                              f"generation target rather than a class word; only fixed label words are supported")
        word = "".join(s.value for s in segs).strip()
        if not word:
            raise ConfigError(f"{where}: empty label word in {line!r}")
        return (word,)
    words = tuple(w.strip() for w in line.split(","))
    if any(not w for w in words):
        raise ConfigError(f"{where}: empty label word in {line!r}")
    return words


def _read_lines(path: Path, text: str) -> tuple[list[Verbalizer], list[ConfigError]]:
    lines = text.splitlines()
    last = max((i for i, ln in enumerate(lines) if ln.strip()), default=-1)
    first = next((i for i, ln in enumerate(lines) if ln.strip()), 0)
    if last < 0:
        return [], [ConfigError(f"{path}: no label words (the file is empty)")]
    words: list[tuple[str, ...]] = []
    nums: list[int] = []
    errors: list[ConfigError] = []
    for i in range(first, last + 1):
        where = f"{path}:{i + 1}"
        if not lines[i].strip():
            errors.append(ConfigError(f"{where}: blank line; one line per class, no gaps (OpenPrompt would start "
                                      f"a second verbalizer here: give each verbalizer its own file)"))
            continue
        try:
            words.append(_line_words(lines[i], where))
        except ConfigError as e:
            errors.append(e)
            words.append(())  # still a class line, so the class count stays right
        nums.append(i + 1)
    return [Verbalizer(tuple(words), str(path), (), tuple(nums))], errors


def _key_lines(text: str, keys: list[str], pos: int) -> tuple[tuple[int, ...], int]:
    """The line of each class name in the JSON text, searched in order from `pos` (json gives no positions)."""
    out = []
    for k in keys:
        m = None
        for spelled in dict.fromkeys((json.dumps(k, ensure_ascii=False), json.dumps(k))):
            m = re.compile(re.escape(spelled) + r"\s*:").search(text, pos)
            if m:
                break
        if m:
            out.append(text.count("\n", 0, m.start()) + 1)
            pos = m.end()
        else:
            out.append(0)
    return tuple(out), pos


def _read_json(path: Path, text: str) -> tuple[list[Verbalizer], list[ConfigError]]:
    dupes: list[str] = []

    def pairs(items):
        seen = {}
        for k, v in items:
            if k in seen:
                dupes.append(k)
            seen[k] = v
        return seen

    try:
        data = json.loads(text, object_pairs_hook=pairs)
    except json.JSONDecodeError as e:
        data = None
        if path.suffix == ".jsonl" and e.msg == "Extra data":  # JSON Lines: one verbalizer object per line
            try:
                data = [json.loads(ln, object_pairs_hook=pairs) for ln in text.splitlines() if ln.strip()]
            except json.JSONDecodeError:
                data = None
        if data is None:
            return [], [ConfigError(f"{path}:{e.lineno}: invalid JSON ({e.msg}, column {e.colno})")]
    except RecursionError:
        return [], [ConfigError(f"{path}: JSON nested too deeply to be a verbalizer")]
    if dupes:
        return [], [ConfigError(f"{path}: class {dupes[0]!r} is given twice")]
    if isinstance(data, dict):
        groups = [data]
    elif isinstance(data, list) and data and all(isinstance(g, dict) for g in data):
        groups = data  # several verbalizers, as OpenPrompt's multi-verbalizer files
    else:
        return [], [ConfigError(f"{path}: expected {{\"class\": [\"label word\", ...], ...}} or a list of such "
                                f"objects, got {type(data).__name__}")]
    out: list[Verbalizer] = []
    errors: list[ConfigError] = []
    pos = 0
    for group in groups:
        names = list(group)
        lines, pos = _key_lines(text, names, pos)
        words = []
        for c, name in enumerate(names):
            where = f"{path}:{lines[c]}" if lines[c] else str(path)
            value = group[name]
            ws = [value] if isinstance(value, str) else value
            if not isinstance(ws, list) or not all(isinstance(w, str) for w in ws):
                errors.append(ConfigError(f"{where}: class {name!r} needs a label word or a list of them, "
                                          f"got {value!r}"))
                ws = []
            elif not ws or any(not w.strip() for w in ws):
                errors.append(ConfigError(f"{where}: class {name!r} has an empty label word or none"))
            words.append(tuple(w.strip() for w in ws if w.strip()))
        if not names:
            errors.append(ConfigError(f"{path}: no classes in a verbalizer object"))
        out.append(Verbalizer(tuple(words), str(path), tuple(names), lines))
    return out, errors


def read_verbalizer_file(path: str | Path) -> tuple[list[Verbalizer], list[ConfigError]]:
    """Every verbalizer in a file and every problem found, without stopping at the first one."""
    from workbench.config.yaml_io import read_text_file

    path = Path(path)
    try:
        text = read_text_file(path, "verbalizer file")
    except ConfigError as e:
        return [], [e]
    # By suffix, as OpenPrompt decides: a .txt line such as {"meta": "answers"} is valid JSON but is a label word
    if path.suffix.lower() in JSON_SUFFIXES:
        verbalizers, errors = _read_json(path, text)
    else:
        verbalizers, errors = _read_lines(path, text)
    for v in verbalizers:
        errors.extend(v.word_problems())
    return verbalizers, errors


def load_verbalizer(path: str | Path, choice: int = 0) -> Verbalizer:
    """The verbalizer in a file; `choice` picks one from a file holding several (JSON lists), as in OpenPrompt."""
    verbalizers, errors = read_verbalizer_file(path)
    if errors:
        raise errors[0]
    if not 0 <= choice < len(verbalizers):
        raise ConfigError(f"{path}: holds {len(verbalizers)} verbalizer(s); choice {choice} is out of range")
    return verbalizers[choice]


def space_sensitive(tokenizer) -> bool:
    """True for byte-BPE and SentencePiece vocabularies, where ' word' and 'word' are different tokens."""
    return tokenizer("a", add_special_tokens=False)["input_ids"] != tokenizer(" a", add_special_tokens=False)["input_ids"]


@dataclass
class LabelWordIds:
    """Sub-token ids and the [classes, tokens] matrix that turns token scores into class scores."""

    token_ids: list[int]
    class_matrix: torch.Tensor  # [C, T]
    multi_token: str | None



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
            where = verbalizer.where(c)
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
    import torch  # imported here: checking configs and files must not wait for torch

    matrix = torch.zeros(len(verbalizer.words), len(token_ids))
    words_per_class = [sum(1 for c2, _ in per_word if c2 == c) for c in range(len(verbalizer.words))]
    for c, ids in per_word:
        for t in ids:  # word score = mean of its tokens; class score = mean of its words
            matrix[c, col[t]] += 1.0 / (len(ids) * words_per_class[c])
    # Two classes whose rows are equal get equal scores on every input: "not good" and "not bad" under
    # --multi-token first are both the token "not". Such a classifier can only guess, so it is refused here.
    for c in range(len(verbalizer.words)):
        for other in range(c):
            if torch.equal(matrix[c], matrix[other]):
                pieces = tokenizer.convert_ids_to_tokens([token_ids[i] for i in matrix[c].nonzero().flatten()])
                rule = f"--multi-token {multi_token}" if needs_policy else "its label words"
                fix = "whose first tokens differ" if multi_token == "first" else "made of other tokens"
                raise ConfigError(
                    f"{verbalizer.where(c)}: {verbalizer.describe(c)} {list(verbalizer.words[c])} and "
                    f"{verbalizer.describe(other)} {list(verbalizer.words[other])} cannot be told apart under "
                    f"{rule}: both are read as the tokens {pieces}, so they score the same on every input; choose "
                    f"label words {fix}")
    return LabelWordIds(token_ids, matrix, multi_token if needs_policy else None)
