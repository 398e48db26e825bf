"""Turn (template, example) into token ids and the position the label is read from.

Masked LMs read the label word at the [MASK] token. Causal LMs read it as the next token after the
template: everything after the mask is dropped and the read-out is the last token. A template with
no mask (plain classification) reads out at [CLS] (masked/encoder) or the last token (causal).
Truncation only cuts shortenable pieces, longest first, so the template and the mask always survive.
A {"special": "<sep>"} segment becomes the tokenizer's own id for that token, never the text "<sep>".
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from workbench.errors import ConfigError
from workbench.models.backbone import ModelKind
from workbench.prompts.template import PLACEHOLDERS, SPECIAL_TOKENS, Segment, Template, apply_post
from workbench.prompts.verbalizer import space_sensitive
from workbench.data.tasks import Example


@dataclass
class EncodedExample:
    input_ids: list[int]
    readout: int
    label: int
    soft_slots: list[int] = field(default_factory=list)  # positions of {"soft"} tokens, in template order
    # A teacher's class scores (distillation): trained towards their softened distribution instead of `label`.
    target: list[float] | None = None


@dataclass
class _Piece:
    ids: list[int]
    kind: str  # "text" | "mask" | "soft" | "special"
    shortenable: bool = False


def special_affixes(tokenizer) -> tuple[list[int], list[int]]:
    """The ids a tokenizer adds around a single sequence ([CLS] ... [SEP], <bos> ...), found by probing."""
    plain = tokenizer("x", add_special_tokens=False)["input_ids"]
    full = tokenizer("x")["input_ids"]
    for i in range(len(full) - len(plain) + 1):
        if full[i : i + len(plain)] == plain:
            return full[:i], full[i + len(plain) :]
    return [], []


class PromptEncoder:
    def __init__(self, template: Template | None, tokenizer, kind: ModelKind, text_fields: tuple[str, ...],
                 max_length: int, prefix_text: str = ""):
        self.template = template if template is not None else _plain_template(len(text_fields))
        self.tokenizer = tokenizer
        self.kind = ModelKind(kind)
        self.text_fields = text_fields
        self.max_length = max_length
        self.prefix_text = prefix_text
        self.prefix_ids, self.suffix_ids = special_affixes(tokenizer)
        if self.kind == ModelKind.CAUSAL:
            self.suffix_ids = []  # the label is predicted at the end: nothing may follow
        self._space = space_sensitive(tokenizer)
        self._soft_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        self._check()

    def _check(self) -> None:
        src = self.template.source
        if self.template.has_mask and self.kind == ModelKind.ENCODER:
            raise ConfigError(f"{src}: this model has no LM head, so a {{\"mask\"}} template cannot be read out; "
                              f"use a classification method (finetune) or a masked/causal LM")
        if self.template.has_mask and self.kind == ModelKind.MASKED and self.tokenizer.mask_token_id is None:
            raise ConfigError(f"{src}: the tokenizer has no mask token")
        for seg in self._kept_segments():
            if seg.kind == "special" and self._special_id(seg) is None:
                raise ConfigError(f"{src}: {{\"special\": \"<{seg.value}>\"}} but this model's tokenizer has no "
                                  f"{seg.value} token; remove it or use a model whose tokenizer has one")
        for kind, name in self.template.fields_used():
            if kind == "placeholder" and PLACEHOLDERS.index(name) >= len(self.text_fields):
                raise ConfigError(f"{src}: placeholder {name!r} but the task has only {len(self.text_fields)} "
                                  f"text field(s) {list(self.text_fields)}")
        if self.kind == ModelKind.CAUSAL and self.template.has_mask:
            after = self.template.segments[[s.kind for s in self.template.segments].index("mask") + 1 :]
            if any(s.kind in ("placeholder", "meta") for s in after):
                raise ConfigError(f"{src}: input text comes after the mask, but a causal LM predicts the label "
                                  f"word before reading it; put the mask at the end (masked-LM templates only)")
        fixed = self.fixed_length()
        if fixed > self.max_length:
            raise ConfigError(f"{src}: the template alone is {fixed} tokens, longer than the maximum length "
                              f"{self.max_length} for this model and method")

    def check_fields(self, example: Example) -> None:
        for kind, name in self.template.fields_used():
            if kind == "meta" and name not in example.fields:
                raise ConfigError(f"{self.template.source}: meta field {name!r} is not a column of the task "
                                  f"(columns: {sorted(example.fields)})")

    def _field(self, seg: Segment, example: Example | None) -> str:
        if example is None:
            return ""
        return _field_text(seg, example, self.text_fields)

    def _special_id(self, seg: Segment) -> int | None:
        return getattr(self.tokenizer, SPECIAL_TOKENS[seg.value], None)

    def _kept_segments(self) -> list[Segment]:
        """The segments that are encoded: a causal LM's input ends at the mask."""
        segs = list(self.template.segments)
        if self.kind == ModelKind.CAUSAL and self.template.has_mask:
            segs = segs[: next(i for i, s in enumerate(segs) if s.kind == "mask") + 1]
        return segs

    def _strings(self, example: Example | None) -> list[tuple[Segment, str]]:
        segs = self._kept_segments()
        out: list[tuple[Segment, str]] = []
        if self.prefix_text:
            out.append((Segment("text", self.prefix_text), self.prefix_text))
        for seg in segs:
            text = seg.value if seg.kind == "text" else self._field(seg, example) if seg.kind in ("placeholder", "meta") else ""
            out.append((seg, text))
        # Space-sensitive vocabularies: a space belongs to the word after it (" it", " great"), so move
        # trailing spaces of a piece onto the next field, and drop them before the mask (label words carry it).
        if self._space:
            for i in range(len(out) - 1):
                seg, text = out[i]
                nxt_seg, nxt = out[i + 1]
                if seg.kind == "text" and text.endswith(" "):
                    out[i] = (seg, text.rstrip(" "))
                    if nxt_seg.kind in ("placeholder", "meta") and nxt and not nxt.startswith(" "):
                        out[i + 1] = (nxt_seg, " " + nxt)
        return out

    def _encode_pieces(self, example: Example | None) -> list[_Piece]:
        pieces = []
        for seg, text in self._strings(example):
            if seg.kind == "mask":
                if self.kind == ModelKind.MASKED:
                    pieces.append(_Piece([self.tokenizer.mask_token_id], "mask"))
            elif seg.kind == "soft":
                pieces.append(_Piece([self._soft_id], "soft"))
            elif seg.kind == "special":
                pieces.append(_Piece([self._special_id(seg)], "special"))
            elif text:
                ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
                pieces.append(_Piece(ids, "text", seg.shortenable))
        return pieces

    def fixed_length(self) -> int:
        """Tokens that truncation can never remove: special tokens, template text, mask and soft tokens."""
        pieces = self._encode_pieces(None)
        return len(self.prefix_ids) + len(self.suffix_ids) + sum(len(p.ids) for p in pieces if not p.shortenable)

    def encode(self, example: Example) -> EncodedExample:
        pieces = self._encode_pieces(example)
        budget = self.max_length - len(self.prefix_ids) - len(self.suffix_ids)
        excess = sum(len(p.ids) for p in pieces) - budget
        while excess > 0:
            longest = max((p for p in pieces if p.shortenable and p.ids), key=lambda p: len(p.ids), default=None)
            if longest is None:
                raise ConfigError(f"{self.template.source}: example {example.guid} cannot fit in {self.max_length} tokens")
            longest.ids.pop()
            excess -= 1
        ids = list(self.prefix_ids)
        readout, soft = None, []
        for p in pieces:
            if p.kind == "mask":
                readout = len(ids)
            elif p.kind == "soft":
                soft.append(len(ids))
            ids.extend(p.ids)
        ids.extend(self.suffix_ids)
        if readout is None:
            readout = len(ids) - 1 if self.kind == ModelKind.CAUSAL else 0
        return EncodedExample(ids, readout, example.label, soft)


def render(template: Template, example: Example, text_fields: tuple[str, ...], label_word: str) -> str:
    """The template as plain text with the label word in place of the mask (a demonstration)."""
    out = ""
    for seg in template.segments:  # soft and special tokens have no text: a demonstration leaves them out
        if seg.kind == "text":
            out += seg.value
        elif seg.kind in ("placeholder", "meta"):
            out += _field_text(seg, example, text_fields)
        elif seg.kind == "mask":
            out += label_word if not out or out[-1].isspace() else " " + label_word
    return out


def _field_text(seg: Segment, example: Example, text_fields: tuple[str, ...]) -> str:
    """A placeholder's or meta field's text, after the template's post-processing (e.g. drop_last)."""
    name = text_fields[PLACEHOLDERS.index(seg.value)] if seg.kind == "placeholder" else seg.value
    return apply_post(seg.post, example.fields[name])


def _plain_template(num_fields: int) -> Template:
    segs = [Segment("placeholder", "text_a", True)]
    if num_fields > 1:
        segs += [Segment("text", " "), Segment("placeholder", "text_b", True)]
    return Template(tuple(segs), "<plain input>", "")


def padded_width(longest: int, multiple: int) -> int:
    """`longest` rounded up to a multiple of `multiple`: compiled steps see few distinct shapes (length buckets)."""
    return -(-longest // multiple) * multiple


def collate(batch: list[EncodedExample], pad_id: int, multiple: int = 1) -> dict[str, torch.Tensor]:
    """Right-padded tensors, as wide as the longest example rounded up to `multiple`."""
    width = padded_width(max(len(e.input_ids) for e in batch), multiple)
    n_soft = max((len(e.soft_slots) for e in batch), default=0)
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    soft = torch.full((len(batch), n_soft), -1, dtype=torch.long)
    for i, e in enumerate(batch):
        ids[i, : len(e.input_ids)] = torch.tensor(e.input_ids)
        mask[i, : len(e.input_ids)] = 1
        soft[i, : len(e.soft_slots)] = torch.tensor(e.soft_slots, dtype=torch.long)
    out = {
        "input_ids": ids,
        "attention_mask": mask,
        "readout": torch.tensor([e.readout for e in batch]),
        "soft_slots": soft,
        "labels": torch.tensor([e.label for e in batch]),
    }
    with_target = sum(e.target is not None for e in batch)
    if with_target == len(batch):
        out["targets"] = torch.tensor([e.target for e in batch], dtype=torch.float32)
    elif with_target:  # a silent mix would train some examples on labels, others on nothing
        raise ValueError(f"{with_target} of {len(batch)} examples in a batch carry a target; all or none must")
    return out
