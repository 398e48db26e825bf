"""OpenPrompt's template text syntax, parsed without eval.

A template is text with `{...}` fragments:
    {"placeholder": "text_a"}            an input field (text_a = first text field, text_b = second)
    {"meta": "field"}                    any other column of the example
    {"mask"}                             where the label word goes (exactly one)
    {"soft"} / {"soft": "great"}         a trainable token, random or initialised from a word
    {"soft": null, "duplicate": 3}       several soft tokens
    {"text": "...", "shortenable": true} literal text with options
Placeholders and meta fields are shortenable by default, literal text is not; `"shortenable"` overrides.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from workbench.errors import ConfigError

PLACEHOLDERS = ("text_a", "text_b")
_KNOWN_KEYS = {"placeholder", "meta", "mask", "soft", "text", "shortenable", "duplicate", "add_prefix_space"}


@dataclass(frozen=True)
class Segment:
    kind: str  # "text" | "placeholder" | "meta" | "mask" | "soft"
    value: str = ""  # literal text, field name, or a soft token's init word ("" = random)
    shortenable: bool = False


@dataclass(frozen=True)
class Template:
    segments: tuple[Segment, ...]
    source: str = "<string>"  # "file:line" for error messages and run params
    text: str = ""

    @property
    def has_mask(self) -> bool:
        return any(s.kind == "mask" for s in self.segments)

    @property
    def num_soft(self) -> int:
        return sum(s.kind == "soft" for s in self.segments)

    def fields_used(self) -> set[tuple[str, str]]:
        return {(s.kind, s.value) for s in self.segments if s.kind in ("placeholder", "meta")}


def _split_fragments(text: str, where: str) -> list[tuple[bool, str]]:
    """Split into (is_fragment, content) pieces; braces inside quoted strings do not count."""
    pieces: list[tuple[bool, str]] = []
    i, start = 0, 0
    while i < len(text):
        if text[i] == "}":
            raise ConfigError(f"{where}: unmatched '}}' at column {i + 1}")
        if text[i] != "{":
            i += 1
            continue
        if i > start:
            pieces.append((False, text[start:i]))
        j, in_str = i + 1, False
        while j < len(text):
            c = text[j]
            if in_str:
                if c == "\\":
                    j += 1
                elif c == '"':
                    in_str = False
            elif c == '"':
                in_str = True
            elif c == "{":
                raise ConfigError(f"{where}: '{{' at column {i + 1} is never closed before the next '{{' at column {j + 1}")
            elif c == "}":
                break
            j += 1
        else:
            raise ConfigError(f"{where}: '{{' at column {i + 1} is never closed")
        pieces.append((True, text[i + 1 : j]))
        i = start = j + 1
    if start < len(text):
        pieces.append((False, text[start:]))
    return pieces


def _parse_fragment(body: str, where: str) -> dict:
    body = body.strip()
    try:
        value = json.loads("{" + body + "}")
    except json.JSONDecodeError:
        # OpenPrompt's bare keys: {"mask"}, {"soft"}
        try:
            bare = json.loads("[" + body + "]")
        except json.JSONDecodeError:
            raise ConfigError(f"{where}: cannot parse fragment {{{body}}}: expected {{\"key\": value, ...}}") from None
        if not all(isinstance(k, str) for k in bare):
            raise ConfigError(f"{where}: cannot parse fragment {{{body}}}")
        value = {k: None for k in bare}
    unknown = set(value) - _KNOWN_KEYS
    if unknown:
        hint = " (post_processing is not supported: templates are data, never code)" if "post_processing" in unknown else ""
        raise ConfigError(f"{where}: unknown key(s) {sorted(unknown)} in {{{body}}}{hint}")
    return value


def _as_bool(value, where: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise ConfigError(f"{where}: 'shortenable' must be true or false, got {value!r}")


def parse_template(text: str, source: str = "<string>") -> Template:
    segments: list[Segment] = []
    for is_fragment, content in _split_fragments(text, source):
        if not is_fragment:
            segments.append(Segment("text", content))
            continue
        frag = _parse_fragment(content, source)
        short = frag.get("shortenable")
        if "placeholder" in frag:
            name = frag["placeholder"]
            if name not in PLACEHOLDERS:
                raise ConfigError(f"{source}: unknown placeholder {name!r}; use one of {list(PLACEHOLDERS)} or {{\"meta\": ...}}")
            segments.append(Segment("placeholder", name, True if short is None else _as_bool(short, source)))
        elif "meta" in frag:
            if not isinstance(frag["meta"], str) or not frag["meta"]:
                raise ConfigError(f"{source}: 'meta' needs a field name")
            segments.append(Segment("meta", frag["meta"], True if short is None else _as_bool(short, source)))
        elif "mask" in frag:
            segments.append(Segment("mask"))
        elif "soft" in frag:
            init = frag["soft"] or ""
            if not isinstance(init, str):
                raise ConfigError(f"{source}: 'soft' takes a word to initialise from, got {init!r}")
            count = frag.get("duplicate") or 1
            if not isinstance(count, int) or count < 1:
                raise ConfigError(f"{source}: 'duplicate' must be a positive integer, got {count!r}")
            # "soft": "very good" initialises one soft token per word, as OpenPrompt does
            words = init.split() if init else [""] * count
            segments.extend(Segment("soft", w) for w in words)
        elif "text" in frag:
            segments.append(Segment("text", str(frag["text"]), bool(short is not None and _as_bool(short, source))))
        else:
            raise ConfigError(f"{source}: fragment {{{content}}} has no placeholder, meta, mask, soft or text key")
    masks = sum(s.kind == "mask" for s in segments)
    if masks > 1:
        raise ConfigError(f"{source}: template has {masks} masks; exactly one {{\"mask\"}} is allowed")
    return Template(tuple(segments), source, text)


def load_templates(path: str | Path) -> dict[int, Template]:
    """One template per line; ids are 0-based line numbers. Blank and '#' lines are skipped."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: template file not found")
    out: dict[int, Template] = {}
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines()):
        if line.strip() and not line.lstrip().startswith("#"):
            out[i] = parse_template(line, f"{path}:{i + 1}")
    if not out:
        raise ConfigError(f"{path}: no templates in file")
    return out
