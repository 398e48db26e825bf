"""PPT's pre-training formats (Gu et al. 2022): how unlabelled sentences become examples, and how a downstream
task is cast into the same format so that a pre-trained prompt meets what it was trained on.

- `nsp`: a sentence pair, 3 classes: adjacent (yes), same document (maybe), another document (no);
- `nss`: next-sentence selection among 6 options: the neighbour, one sentence of the same document and four of
  other documents, shuffled; the answer is the option's letter;
- `cls`: a single sentence with one of 5 pseudo labels (terrible, bad, maybe, good, great), from a classifier
  or the model's own zero-shot scores (the pre-training job assigns them);
- `unified`: every task as multiple choice; pre-training draws next-sentence selection with 2 to 16 options,
  each option shorter as the count grows.

The published templates are T5 span-filling ones; ours put the answer last so masked and causal LMs read the
same text (a causal LM predicts the answer as the next token). Only the soft prompt is trained, so the hard text
stays short and neutral: the prompt carries the task.
"""

from __future__ import annotations

import random
import string
from dataclasses import dataclass

from workbench.data.tasks import Example
from workbench.errors import ConfigError
from workbench.ppt.corpus import MIN_SENTENCES, MIN_WORDS, Document, long_documents, words
from workbench.prompts.template import Template, parse_template
from workbench.prompts.verbalizer import Verbalizer

LETTERS = string.ascii_uppercase[:16]
MAX_OPTIONS = 16
MIN_OPTIONS = 2
NSS_OPTIONS = 6
QUERY_WORDS = 60  # a question or query sentence is cut to this many words
OPTION_WORDS = (30, 15)  # an option's word cap with 2 options ... with 16 (PPT: 50 down to 20 tokens)
PAIR_LENGTH_RATIO = 100  # pairs whose lengths differ more than 100-fold are skipped, as in PPT

_PAIR = '{"placeholder": "text_a"}{"text": "\\n"}{"placeholder": "text_b"}{"text": "\\nAnswer:"} {"mask"}'
_SINGLE = '{"placeholder": "text_a"} It was {"mask"}.'
_CHOICE = '{"placeholder": "text_a"}{"text": "\\n"}%s{"text": "\\nThe correct one is"} {"mask"}'


@dataclass(frozen=True)
class Format:
    name: str
    summary: str
    words: tuple[str, ...]  # the pre-training classes' label words
    pairs: bool  # built from neighbouring sentences: needs long documents


FORMATS: dict[str, Format] = {f.name: f for f in (
    Format("nsp", "sentence pair, 3 classes: adjacent / same document / other document", ("yes", "maybe", "no"),
           True),
    Format("nss", "next-sentence selection among 6 options (letters A-F)", tuple(LETTERS[:NSS_OPTIONS]), True),
    Format("cls", "single sentence, 5 pseudo-labelled classes", ("terrible", "bad", "maybe", "good", "great"), False),
    Format("unified", "multiple choice with 2-16 options (letters A-P)", tuple(LETTERS), True),
)}


def get_format(name: str) -> Format:
    if name not in FORMATS:
        raise ConfigError(f"format: {name!r} is not a PPT format; choose one of {', '.join(FORMATS)}", field="format")
    return FORMATS[name]


def pretrain_template(fmt: Format) -> Template:
    """The template of the pre-training examples (`text_a`, and `text_b`: the second sentence or the options)."""
    if fmt.name == "nsp":
        return parse_template(_PAIR, "ppt:nsp")
    if fmt.name == "cls":
        return parse_template(_SINGLE, "ppt:cls")
    return parse_template(_CHOICE % '{"placeholder": "text_b", "shortenable": false}', f"ppt:{fmt.name}")


def pretrain_verbalizer(fmt: Format) -> Verbalizer:
    return Verbalizer.from_lines(list(fmt.words), f"ppt:{fmt.name}")


def text_fields(fmt: Format) -> tuple[str, ...]:
    return ("text_a",) if fmt.name == "cls" else ("text_a", "text_b")


# ---- building pre-training examples ---------------------------------------------------------------------------

def cut(sentence: str, max_words: int) -> str:
    parts = sentence.split()
    return sentence if len(parts) <= max_words else " ".join(parts[:max_words])


def option_words(n: int) -> int:
    """An option's word cap when there are n options: OPTION_WORDS[0] at 2, falling linearly to [1] at 16."""
    hi, lo = OPTION_WORDS
    return round(hi - (hi - lo) * (n - MIN_OPTIONS) / (MAX_OPTIONS - MIN_OPTIONS))


def options_text(options: list[str]) -> str:
    return "\n".join(f"{LETTERS[i]}. {o}" for i, o in enumerate(options))


def pair_documents(docs: list[Document], fmt: Format, source: str) -> list[tuple[str, ...]]:
    """The documents a pair format can draw from, or a clear refusal when there are too few."""
    long = long_documents(docs)
    if len(long) < 2:
        most = max((sum(words(s) >= MIN_WORDS for s in d.sentences) for d in docs), default=0)
        raise ConfigError(f"--corpus {source}: {len(long)} document(s) have {MIN_SENTENCES} or more sentences of "
                          f"{MIN_WORDS}+ words (the most any has is {most}); format {fmt.name!r} needs at least 2 "
                          f"such documents (neighbours, and sentences from other documents). Give a corpus of longer "
                          f"documents, or use --format cls", field="corpus")
    return long


def _other_sentence(docs: list[tuple[str, ...]], not_doc: int, rng: random.Random) -> str:
    d = rng.randrange(len(docs) - 1)
    d += d >= not_doc  # any document but `not_doc`
    return rng.choice(docs[d])


def _far_index(n: int, i: int, rng: random.Random) -> int:
    """A sentence of the same document that is not i nor next to it (documents have >= 5 sentences)."""
    return rng.choice([j for j in range(n) if abs(j - i) >= 2])


def _anchors(docs: list[tuple[str, ...]], rng: random.Random) -> list[tuple[int, int]]:
    """(document, sentence) pairs whose next sentence exists, shuffled."""
    out = [(d, i) for d, doc in enumerate(docs) for i in range(len(doc) - 1)]
    rng.shuffle(out)
    return out


def build_nsp(docs: list[tuple[str, ...]], n: int, seed: int) -> list[Example]:
    """Each anchor sentence is paired, with probability 1/3 each, with a neighbour (class 0, yes), a sentence of
    the same document at least two away (class 1, maybe) or a sentence of another document (class 2, no)."""
    rng = random.Random(seed)
    out = []
    for d, i in _anchors(docs, rng):
        doc = docs[d]
        label = rng.randrange(3)
        if label == 0:
            j = i + 1 if i == 0 or rng.random() < 0.5 else i - 1
            other = doc[j]
        elif label == 1:
            other = doc[_far_index(len(doc), i, rng)]
        else:
            other = _other_sentence(docs, d, rng)
        a, b = cut(doc[i], QUERY_WORDS), cut(other, QUERY_WORDS)
        if not (1 / PAIR_LENGTH_RATIO <= words(a) / max(words(b), 1) <= PAIR_LENGTH_RATIO):
            continue
        out.append(Example(f"nsp-{len(out)}", {"text_a": a, "text_b": b}, label))
        if len(out) == n:
            break
    return out


def build_choice(docs: list[tuple[str, ...]], n: int, seed: int, fmt: Format) -> list[Example]:
    """Next-sentence selection: the true next sentence among distractors, one from the same document (when there
    are three or more options) and the rest from other documents, shuffled. `nss` has 6 options; `unified` draws
    2 to 16 and shortens options as their number grows."""
    rng = random.Random(seed)
    out = []
    for d, i in _anchors(docs, rng):
        doc = docs[d]
        count = NSS_OPTIONS if fmt.name == "nss" else rng.randint(MIN_OPTIONS, MAX_OPTIONS)
        cap = option_words(count) if fmt.name == "unified" else OPTION_WORDS[0]
        # Options must differ as shown (after the cut), and none may be the query itself.
        shown_set = {cut(doc[i], cap)}
        options: list[str] = []
        for candidate in [doc[i + 1]] + ([doc[_far_index(len(doc), i, rng)]] if count >= 3 else []):
            if cut(candidate, cap) not in shown_set:
                shown_set.add(cut(candidate, cap))
                options.append(cut(candidate, cap))
        if not options or options[0] != cut(doc[i + 1], cap):
            continue  # the next sentence reads like the query: no answer to pick
        for _ in range(20 * count):  # a small corpus may not have enough distinct sentences: bounded tries
            if len(options) == count:
                break
            candidate = cut(_other_sentence(docs, d, rng), cap)
            if candidate not in shown_set:
                shown_set.add(candidate)
                options.append(candidate)
        if len(options) < count:
            continue
        order = list(range(count))
        rng.shuffle(order)
        shown = [options[k] for k in order]
        label = order.index(0)
        out.append(Example(f"{fmt.name}-{len(out)}", {"text_a": cut(doc[i], QUERY_WORDS),
                                                      "text_b": options_text(shown)}, label))
        if len(out) == n:
            break
    return out


def cls_candidates(docs: list[Document], n: int, seed: int, min_words: int = MIN_WORDS) -> list[Example]:
    """Sentences to pseudo-label for `cls` (label -1 until the job labels them): of `min_words` to QUERY_WORDS
    words, each once, shuffled."""
    seen: set[str] = set()
    pool = []
    for doc in docs:
        for s in doc.sentences:
            if min_words <= words(s) <= QUERY_WORDS and s not in seen:
                seen.add(s)
                pool.append(s)
    random.Random(seed).shuffle(pool)
    return [Example(f"cls-{i}", {"text_a": s}, -1) for i, s in enumerate(pool[:n])]


def build_examples(docs: list[Document], fmt: Format, n: int, seed: int, source: str) -> list[Example]:
    """Up to n labelled pre-training examples of a pair or choice format (`cls` is labelled by the job)."""
    if not fmt.pairs:
        raise ValueError("cls examples are pseudo-labelled by the pre-training job: use cls_candidates")
    long = pair_documents(docs, fmt, source)
    return build_nsp(long, n, seed) if fmt.name == "nsp" else build_choice(long, n, seed, fmt)


# ---- casting a downstream task into a format ------------------------------------------------------------------

def cast_prompt(fmt: Format, num_fields: int, verbalizer: Verbalizer, task_name: str) -> tuple[Template, Verbalizer]:
    """The template and label words of a downstream task in the prompt's format:

    - `nsp`: a sentence-pair task (RTE) reads "yes" / "no" (/ "maybe" for a third class), in its class order;
    - `cls`: a single-sentence task (SST-2, SST-5) keeps its own label words;
    - `nss` / `unified`: any task becomes multiple choice, its classes' first label words as options A, B, ...
    """
    classes = len(verbalizer.words)
    if fmt.name == "nsp":
        if num_fields != 2:
            raise ConfigError(f"method.init: a prompt pre-trained in format 'nsp' (sentence pairs) needs a "
                              f"sentence-pair task; {task_name!r} has {num_fields} text field(s). Pre-train with "
                              f"--format cls or unified for it", field="method.init")
        if classes > 3:
            raise ConfigError(f"method.init: format 'nsp' has 3 answers (yes, no, maybe); {task_name!r} has "
                              f"{classes} classes. Pre-train with --format unified for it", field="method.init")
        return pretrain_template(fmt), Verbalizer.from_lines(["yes", "no", "maybe"][:classes], "ppt:nsp")
    if fmt.name == "cls":
        if num_fields != 1:
            raise ConfigError(f"method.init: a prompt pre-trained in format 'cls' (single sentences) needs a "
                              f"single-sentence task; {task_name!r} has {num_fields} text fields. Pre-train with "
                              f"--format nsp or unified for it", field="method.init")
        return pretrain_template(fmt), verbalizer
    if classes > MAX_OPTIONS:
        raise ConfigError(f"method.init: the multiple-choice format has at most {MAX_OPTIONS} options; "
                          f"{task_name!r} has {classes} classes", field="method.init")
    query = '{"placeholder": "text_a"}' + ('{"text": "\\n"}{"placeholder": "text_b"}' if num_fields > 1 else "")
    options = options_text([words[0] for words in verbalizer.words]).replace("\n", "\\n").replace('"', '\\"')
    text = (_CHOICE % ('{"text": "%s"}' % options)).replace('{"placeholder": "text_a"}', query, 1)
    return (parse_template(text, f"ppt:{fmt.name}:{task_name}"),
            Verbalizer.from_lines(list(LETTERS[:classes]), f"ppt:{fmt.name}"))
