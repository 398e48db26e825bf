"""Answer triggers and answer cleansing (Kojima et al. 2022, as Auto-CoT uses them; METHODS.md section 3).

Cleansing reads candidates out of a model's text by the task's answer type:
- number: every `-?\\d+\\.?\\d*` after removing thousands commas;
- letter: a standalone capital A-E (a word of its own, so the "A" of "Among" is not one);
- yes-no: the words yes / no;
- text: the whole text, trimmed, on one line.
Which candidate counts depends on the mode: after the answer stage of zero-shot modes, the first; in few-shot
modes the text is split on "The answer is": when that phrase is present the first candidate after its last
occurrence, otherwise the last candidate of all. A trailing "." is dropped.

One change from the reference code, on purpose: numbers are compared by value in one canonical spelling
("5.0", "5.00" and "5" are all "5"), where the reference compares raw strings and so counts "5.0" as wrong
against a gold "5".
"""

from __future__ import annotations

import math
import re

from workbench.errors import ConfigError

ANSWER_TYPES = ("number", "letter", "yes-no", "text")
FEW_SHOT_ANSWER = "The answer is"  # the phrase demonstrations end with, and that few-shot cleansing splits on

# The second-stage trigger of zero-shot-CoT, per answer type; plain zero-shot uses its capitalised tail.
_TRIGGERS = {
    "number": "\nTherefore, the answer (arabic numerals) is",
    "letter": "\nTherefore, among A through E, the answer is",
    "yes-no": "\nTherefore, the answer (Yes or No) is",
    "text": "\nTherefore, the answer is",
}
_NUMBER = re.compile(r"-?\d+\.?\d*")
_LETTER = re.compile(r"\b[A-E]\b")
_YES_NO = re.compile(r"\b(yes|no)\b")


def cot_trigger(answer_type: str) -> str:
    """Appended to the question and rationale to ask for the answer (zero-shot-CoT's second stage)."""
    return _TRIGGERS[answer_type]


def direct_trigger(answer_type: str) -> str:
    """Plain zero-shot's answer prompt: 'The answer (arabic numerals) is', 'Among A through E, the answer is'."""
    tail = _TRIGGERS[answer_type].replace("\nTherefore, ", "")
    return tail[0].upper() + tail[1:]


def canonical_number(x: float) -> str:
    """One spelling per value: integers without a decimal point, others to 6 decimals without trailing zeros
    (never an exponent, whose zeros would be stripped as if they were decimals)."""
    if x == int(x):
        return str(int(x))
    text = f"{round(x, 6):.6f}".rstrip("0").rstrip(".")
    return "0" if text in ("", "-0") else text


def normalize(value, answer_type: str, where: str) -> str:
    """A gold answer in the form cleansing produces; a value that cannot be one is an error naming `where`."""
    if answer_type == "number":
        try:
            x = float(str(value).replace(",", "").strip())
            if not math.isfinite(x):
                raise ValueError
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: the answer {value!r} is not a number (answer type number)") from None
        return canonical_number(x)
    text = str(value).strip()
    if answer_type == "letter":
        letter = text.strip("()").upper()
        if len(letter) != 1 or not letter.isalpha():
            raise ConfigError(f"{where}: the answer {value!r} is not a single letter (answer type letter)")
        return letter
    if answer_type == "yes-no":
        word = text.lower().rstrip(".")
        if isinstance(value, bool):
            word = "yes" if value else "no"
        if word not in ("yes", "no"):
            raise ConfigError(f"{where}: the answer {value!r} is not yes or no (answer type yes-no)")
        return word
    return _clean_text(text)


def _clean_text(text: str) -> str:
    return " ".join(text.split()).strip(" \"'.").lower()


def candidates(text: str, answer_type: str) -> list[str]:
    if answer_type == "number":
        found = _NUMBER.findall(text.replace(",", ""))
        return [canonical_number(float(s.rstrip("."))) for s in found]
    if answer_type == "letter":
        return _LETTER.findall(text)
    if answer_type == "yes-no":
        return _YES_NO.findall(text.lower())
    first = text.strip().split("\n")[0]
    return [_clean_text(first)] if _clean_text(first) else []


def extract(text: str, answer_type: str, few_shot: bool) -> str:
    """The answer in `text` ('' when there is none): see the module's docstring for the rules."""
    if answer_type not in ANSWER_TYPES:
        raise ValueError(f"unknown answer type {answer_type!r}")
    pick_first = True
    if few_shot:
        parts = text.split(FEW_SHOT_ANSWER)
        pick_first = len(parts) > 1
        text = parts[-1]
    found = candidates(text, answer_type)
    if not found:
        return ""
    return found[0] if pick_first else found[-1]
