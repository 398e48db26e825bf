"""Self-Instruct's instruction and instance filters, and the parsers for the generator's raw text.

Rules and their order follow the reference code (see ../shared/reference/METHODS.md section 1); each
rejection returns a short reason that is counted in the progress bar and the final report.
"""

from __future__ import annotations

import random
import re
import string

from workbench.instruct.seeds import Instance

SELF_INSTRUCT_BLACKLIST = ("image", "images", "graph", "graphs", "picture", "pictures", "file", "files", "map",
                           "maps", "draw", "plot", "go to")
ALPACA_EXTRA_BLACKLIST = ("video", "audio", "music", "flowchart", "diagram")
MAX_INSTANCES = 5


def blacklist_pattern(words: tuple[str, ...]) -> re.Pattern:
    return re.compile(r"\b(?:" + "|".join(re.escape(w) for w in words) + r")\b", re.IGNORECASE)


def instruction_reject_reason(text: str, blacklist: re.Pattern) -> str | None:
    """The reason to drop an instruction, or None to keep it (before the ROUGE-L novelty check)."""
    if not text:
        return "empty"
    n_words = len(text.split())
    if n_words <= 3 or n_words > 150:
        return "length"
    if blacklist.search(text):
        return "blacklist"
    if text.startswith("Write a program"):
        return "write_a_program"
    if text[0] in string.punctuation:
        return "punctuation"
    if not text[0].isascii():
        return "non_ascii"
    return None


def clean_instruction(text: str) -> str:
    # As the reference code: collapse whitespace, then str.capitalize(), which also lowercases the rest.
    return re.sub(r"\s+", " ", text).strip().capitalize()


def parse_instruction_list(text: str, finish_reason: str) -> list[str]:
    """Split a continuation of a numbered list ("9. ...\\n10. ...") into instructions."""
    if finish_reason == "length":
        return []  # the reference code drops a truncated response whole
    return [clean_instruction(part) for part in re.split(r"\n\d+\s?\. ", text)]


def parse_alpaca(text: str, finish_reason: str, first_index: int) -> list[tuple[str, Instance]]:
    """Parse Alpaca's `k. Instruction: / k. Input: / k. Output:` blocks separated by `###`."""
    full = f"{first_index}. Instruction:" + text
    blocks = re.split("###", full)
    if finish_reason == "length":
        blocks = blocks[:-1]
    out = []
    for block in blocks:
        parts = re.split(r"\d+\s*\.\s*(Instruction|Input|Output):", block)
        if len(parts) != 7:
            continue
        instruction = re.sub(r"\s+", " ", parts[2]).strip().capitalize()
        inp = parts[4].strip()
        inp = "" if inp.lower() == "<noinput>" else inp
        out.append((instruction, Instance(inp, parts[6].strip())))
    return out


def parse_classification_instances(text: str) -> list[Instance]:
    """Output-first text: `Class label: L` then the input that has that label."""
    instances = []
    for piece in re.split(r"Class label:", text)[1:]:
        lines = piece.strip().split("\n", 1)
        label = lines[0].strip()
        inp = lines[1].strip() if len(lines) > 1 else ""
        instances.append(Instance(inp, label))
    return instances


def parse_generation_instances(text: str) -> list[Instance]:
    """Input-first text: `Example k` blocks with an input and `Output:`; or a single `Output:`."""
    if re.search(r"Example\s?\d*\.?", text):
        chunks = [c for c in re.split(r"Example\s?\d*\.?", text) if c.strip()]
    elif "Output:" in text:
        chunks = [text]
    else:
        return []
    instances = []
    for chunk in chunks:
        halves = re.split(r"Output\s*\d*\s*:", chunk, maxsplit=1)
        if len(halves) != 2:
            continue
        inp = re.sub(r"^\s*Input\s*\d*\s*:", "", halves[0]).strip()
        out = re.split(r"Input\s*\d*\s*:", halves[1])[0].strip()
        instances.append(Instance(inp, out))
    return instances


def filter_instances(instances: list[Instance], truncated: bool, rng: random.Random,
                     max_instances: int = MAX_INSTANCES) -> tuple[list[Instance], str | None]:
    """Apply the instance rules; returns the kept instances and, when none is kept, the reason."""
    if truncated and instances:
        instances = instances[:-1]
    kept = [i for i in instances
            if i.output.strip() and i.input.strip() != i.output.strip()
            and not i.input.strip().endswith(":") and not i.output.strip().endswith(":")]
    if not kept:
        return [], "no_valid_instance" if instances else "unparsable_instances"
    outputs_by_input: dict[str, set[str]] = {}
    for i in kept:
        if i.input.strip():
            outputs_by_input.setdefault(i.input.strip(), set()).add(i.output.strip())
    if any(len(v) > 1 for v in outputs_by_input.values()):
        return [], "conflicting_instances"
    unique = list(dict.fromkeys(kept))
    if len(unique) > max_instances:
        unique = rng.sample(unique, max_instances)
    return unique, None
