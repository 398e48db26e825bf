"""OpenPrompt's template text syntax, parsed without eval.

A template is text with `{...}` fragments:
    {"placeholder": "text_a"}            an input field (text_a = first text field, text_b = second)
    {"meta": "field"}                    any other column of the example
    {"mask"}                             where the label word goes (exactly one)
    {"soft"} / {"soft": "great"}         a trainable token, random or initialised from a word
    {"soft": null, "duplicate": 3}       several soft tokens
    {"text": "...", "shortenable": true} literal text with options
    {"special": "<sep>"}                 the tokenizer's own special token: <sep>, <cls>, <eos> or <bos>
Placeholders and meta fields are shortenable by default, literal text is not; `"shortenable"` overrides.
`"add_prefix_space": " "` (or "") on any fragment replaces the spaces written before it, as in OpenPrompt.

OpenPrompt evaluates each fragment as Python, so its published files spell Python literals (`False`,
`True`, `None`, single quotes) and lambdas. Here a fragment is JSON, or else a Python *literal* read with
`ast` (never evaluated): any other expression is refused with a one-line message naming file:line.

Post-processing transforms a placeholder's or meta field's text before it is tokenized:
    {"placeholder": "text_a", "post_processing": "drop_last"}
    {"meta": "answer", "post_processing": ["strip", "append:."]}     several, applied in order
The operations, by name (`name:ARG` passes an argument; everything after the first ':' is the argument):
    lower, upper            the whole text
    lower_first, upper_first  only the first character
    strip[:CHARS], lstrip[:CHARS], rstrip[:CHARS]  whitespace, or the given characters, from the ends
    rstrip_punct            trailing ASCII punctuation (Python's string.punctuation)
    drop_last               the last character, whatever it is
    append:TEXT, prepend:TEXT  add literal text after / before
OpenPrompt's lambdas (`lambda s: s[:-1]`, `lambda x: x + "."`, `lambda x: x.strip('.')`, `lambda s:
s[:1].lower() + s[1:]`, `lambda s: s.rstrip(string.punctuation)`, also as a quoted string) are read
with `ast` and matched to these operations, including chains such as `lambda x: x.strip().lower()`.
Any other lambda is refused: a template file is data, and running code from it would let a downloaded
prompt file execute anything.

Also refused, each in one line: templates with several masks (PTR-style relation templates, LM-BFF's
template-search files: every method here reads one label word at one position); shared soft tokens
("soft_id", "same": true) and "post_processing": "mlp", which need machinery the soft-prompt methods do
not have; `"sep".join(x)` (fields here are single strings, not lists of turns); a key that does not
apply to its fragment kind (e.g. "shortenable" on a mask), rather than ignoring it silently. A special
token the model's tokenizer lacks (<sep> on GPT-2) is reported when the PromptEncoder is built.
"""

from __future__ import annotations

import ast
import json
import string
import warnings
from dataclasses import dataclass
from pathlib import Path

from workbench.errors import ConfigError

PLACEHOLDERS = ("text_a", "text_b")
# Soft tokens one template may ask for: far above any published prompt (P-tuning: a few dozen), far below a count
# (`"duplicate": 100000000`) whose embeddings would exhaust memory before any input could fit the context.
MAX_SOFT_TOKENS = 1024
# A template with no placeholder or meta field (`{"mask"}` alone) gives every example the same prompt.
NO_INPUT = ('template has no input field ({"placeholder": "text_a"} or {"meta": ...}); every example would read '
            'the same prompt')
# OpenPrompt's special-token names -> the tokenizer attribute holding that token's id
SPECIAL_TOKENS = {"sep": "sep_token_id", "cls": "cls_token_id", "eos": "eos_token_id", "bos": "bos_token_id"}

_KINDS = ("placeholder", "meta", "mask", "soft", "text", "special")
# The options each kind of fragment takes; anything else on that kind is an error, not silently ignored.
_OPTIONS = {
    "placeholder": {"shortenable", "post_processing", "add_prefix_space"},
    "meta": {"shortenable", "post_processing", "add_prefix_space"},
    "text": {"shortenable", "add_prefix_space"},
    "mask": {"add_prefix_space"},
    "soft": {"duplicate", "same", "add_prefix_space"},
    "special": {"add_prefix_space"},
}
_KNOWN_KEYS = set(_KINDS) | {k for opts in _OPTIONS.values() for k in opts} | {"soft_id"}

# name -> whether it takes an argument: "no", "optional" or "required"
POST_OPS = {
    "lower": "no", "upper": "no", "lower_first": "no", "upper_first": "no",
    "strip": "optional", "lstrip": "optional", "rstrip": "optional", "rstrip_punct": "no",
    "drop_last": "no", "append": "required", "prepend": "required",
}
_POST_HELP = ("lower, upper, lower_first, upper_first, strip[:CHARS], lstrip[:CHARS], rstrip[:CHARS], "
              "rstrip_punct, drop_last, append:TEXT, prepend:TEXT")


@dataclass(frozen=True)
class Segment:
    kind: str  # "text" | "placeholder" | "meta" | "mask" | "soft" | "special"
    value: str = ""  # literal text, field name, a soft token's init word ("" = random), or a special name
    shortenable: bool = False
    post: tuple[str, ...] = ()  # post-processing operations for placeholder/meta text, in order


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


def apply_post(ops: tuple[str, ...], text: str) -> str:
    """Apply post-processing operations (already checked by the parser) to a field's text."""
    for op in ops:
        name, colon, arg = op.partition(":")
        if name == "lower":
            text = text.lower()
        elif name == "upper":
            text = text.upper()
        elif name == "lower_first":
            text = text[:1].lower() + text[1:]
        elif name == "upper_first":
            text = text[:1].upper() + text[1:]
        elif name in ("strip", "lstrip", "rstrip"):
            text = getattr(text, name)(arg if colon else None)
        elif name == "rstrip_punct":
            text = text.rstrip(string.punctuation)
        elif name == "drop_last":
            text = text[:-1]
        elif name == "append":
            text = text + arg
        elif name == "prepend":
            text = arg + text
        else:  # the parser only lets known names through
            raise ValueError(f"unknown post-processing operation {op!r}")
    return text


def _split_fragments(text: str, where: str) -> list[tuple[bool, str]]:
    """Split into (is_fragment, content) pieces; braces inside quoted strings ('...' or "...") do not count."""
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
        j, quote = i + 1, ""
        while j < len(text):
            c = text[j]
            if quote:
                if c == "\\":
                    j += 1
                elif c == quote:
                    quote = ""
            elif c in "\"'":
                quote = c
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


@dataclass(frozen=True)
class _Lambda:
    """A lambda found in a fragment: kept as syntax, matched to named operations, never compiled."""

    node: ast.Lambda
    text: str


def _no_duplicates(pairs: list[tuple], where: str, body: str) -> dict:
    seen: dict = {}
    for k, v in pairs:
        if k in seen:
            raise ConfigError(f"{where}: key {k!r} appears twice in {{{body}}}")
        seen[k] = v
    return seen


def _literal(node: ast.AST, key: str, src: str, where: str):
    """The value of a Python literal; a lambda only under "post_processing"; anything else is refused."""
    if isinstance(node, ast.Constant) and isinstance(node.value, (str, int, float, bool, type(None))):
        return node.value
    if isinstance(node, ast.Name) and node.id in ("true", "false", "null"):  # JSON spellings, mixed with Python
        return {"true": True, "false": False, "null": None}[node.id]
    if (isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub) and isinstance(node.operand, ast.Constant)
            and type(node.operand.value) in (int, float)):
        return -node.operand.value
    if isinstance(node, (ast.List, ast.Tuple)):
        return [_literal(e, key, src, where) for e in node.elts]
    text = ast.get_source_segment(src, node) or type(node).__name__
    if isinstance(node, ast.Lambda) and key == "post_processing":
        return _Lambda(node, text)
    raise ConfigError(f"{where}: the value of {key!r} must be a literal (string, number, true/false, null), "
                      f"not {text!r}; templates are data and are never evaluated")


def _parse_fragment(body: str, where: str) -> dict:
    body = body.strip()
    # JSON first: it is our own syntax, and keeps its exact string escapes.
    try:
        return json.loads("{" + body + "}", object_pairs_hook=lambda p: _no_duplicates(p, where, body))
    except json.JSONDecodeError:
        pass
    try:  # OpenPrompt's bare keys in JSON spelling: {"mask"}, {"soft"}
        bare = json.loads("[" + body + "]")
        if bare and all(isinstance(k, str) for k in bare):
            return _no_duplicates([(k, None) for k in bare], where, body)
    except json.JSONDecodeError:
        pass
    # OpenPrompt's Python spelling: parsed by `ast` into syntax, and only literals are read from it.
    src = "{" + body + "}"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # invalid escape sequences warn on stderr
            node = ast.parse(src, mode="eval").body
    except (SyntaxError, ValueError, MemoryError):
        raise ConfigError(f"{where}: cannot parse fragment {{{body}}}: expected {{\"key\": value, ...}}") from None
    if isinstance(node, ast.Set):
        keys = [_literal(e, "key", src, where) for e in node.elts]
        if not all(isinstance(k, str) for k in keys):
            raise ConfigError(f"{where}: cannot parse fragment {{{body}}}: keys must be strings")
        return _no_duplicates([(k, None) for k in keys], where, body)
    if isinstance(node, ast.Dict):
        pairs = []
        for k, v in zip(node.keys, node.values):
            if not (isinstance(k, ast.Constant) and isinstance(k.value, str)):
                raise ConfigError(f"{where}: cannot parse fragment {{{body}}}: keys must be quoted strings")
            pairs.append((k.value, _literal(v, k.value, src, where)))
        return _no_duplicates(pairs, where, body)
    raise ConfigError(f"{where}: cannot parse fragment {{{body}}}: expected {{\"key\": value, ...}}")


# --- post_processing: lambdas matched to named operations ------------------------------------------------

def _str_const(node: ast.AST) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def _int_const(node: ast.AST | None) -> int | None:
    if isinstance(node, ast.Constant) and type(node.value) is int:
        return node.value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        inner = _int_const(node.operand)
        return None if inner is None else -inner
    return None


def _is_punctuation(node: ast.AST) -> bool:
    return (isinstance(node, ast.Attribute) and node.attr == "punctuation" and isinstance(node.value, ast.Name)
            and node.value.id == "string")


def _slice(node: ast.AST, lower: int | None, upper: int | None) -> ast.AST | None:
    """The sliced expression if `node` is `E[lower:upper]` (no step), else None."""
    if not (isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Slice) and node.slice.step is None):
        return None
    s = node.slice
    lo = None if s.lower is None else _int_const(s.lower)
    hi = None if s.upper is None else _int_const(s.upper)
    if (s.lower is None) != (lower is None) or (s.upper is None) != (upper is None) or lo != lower or hi != upper:
        return None
    return node.value


def _first_char(node: ast.AST) -> ast.AST | None:
    """E if `node` is `E[:1]` or `E[0]`."""
    base = _slice(node, None, 1)
    if base is not None:
        return base
    if isinstance(node, ast.Subscript) and not isinstance(node.slice, ast.Slice) and _int_const(node.slice) == 0:
        return node.value
    return None


def _expr_ops(e: ast.AST, var: str) -> list[str] | None:
    """The operations that turn the lambda's argument `var` into expression `e`, or None if `e` is anything else."""
    if isinstance(e, ast.Name):
        return [] if e.id == var else None
    if isinstance(e, ast.Call) and isinstance(e.func, ast.Attribute) and not e.keywords:
        method, inner = e.func.attr, e.func.value
        if method in ("lower", "upper") and not e.args:
            base = _expr_ops(inner, var)
            return None if base is None else base + [method]
        if method in ("strip", "lstrip", "rstrip") and len(e.args) <= 1:
            base = _expr_ops(inner, var)
            if base is None:
                return None
            if not e.args or (isinstance(e.args[0], ast.Constant) and e.args[0].value is None):
                return base + [method]
            if _str_const(e.args[0]) is not None:
                return base + [f"{method}:{e.args[0].value}"]
            if _is_punctuation(e.args[0]):
                return base + ["rstrip_punct" if method == "rstrip" else f"{method}:{string.punctuation}"]
        return None
    if isinstance(e, ast.Subscript):
        base_node = _slice(e, None, -1)
        if base_node is not None:
            base = _expr_ops(base_node, var)
            return None if base is None else base + ["drop_last"]
        return None
    if isinstance(e, ast.BinOp) and isinstance(e.op, ast.Add):
        left, right = e.left, e.right
        if _str_const(right) is not None:
            base = _expr_ops(left, var)
            return None if base is None else base + [f"append:{right.value}"]
        if _str_const(left) is not None:
            base = _expr_ops(right, var)
            return None if base is None else base + [f"prepend:{left.value}"]
        # s[:1].lower() + s[1:]  (or .upper(), or s[0]): change the case of the first character only
        if (isinstance(left, ast.Call) and isinstance(left.func, ast.Attribute) and left.func.attr in ("lower", "upper")
                and not left.args and not left.keywords):
            head, tail = _first_char(left.func.value), _slice(right, 1, None)
            if head is not None and tail is not None and ast.dump(head) == ast.dump(tail):
                base = _expr_ops(head, var)
                return None if base is None else base + [f"{left.func.attr}_first"]
    return None


def _lambda_ops(lam: _Lambda, where: str) -> tuple[str, ...]:
    a = lam.node.args
    ops = None
    if len(a.args) == 1 and not (a.posonlyargs or a.vararg or a.kwonlyargs or a.kwarg or a.defaults):
        ops = _expr_ops(lam.node.body, a.args[0].arg)
    if ops is None:
        body = lam.node.body
        if isinstance(body, ast.Call) and isinstance(body.func, ast.Attribute) and body.func.attr == "join":
            raise ConfigError(f"{where}: post_processing {lam.text!r} joins a list of items, but every field here "
                              f"is a single string; remove it (supported operations: {_POST_HELP})")
        raise ConfigError(f"{where}: post_processing {lam.text!r} is not a supported operation; templates are "
                          f"never evaluated, so write one of: {_POST_HELP}")
    return tuple(ops)


def _named_op(op, where: str) -> str:
    if not isinstance(op, str):
        raise ConfigError(f"{where}: post_processing takes operation names, got {op!r}; supported: {_POST_HELP}")
    name, colon, _ = op.partition(":")
    takes = POST_OPS.get(name)
    if name == "mlp":
        raise ConfigError(f"{where}: post_processing 'mlp' (an MLP over soft-token embeddings) is not supported")
    if takes is None or (takes == "no" and colon) or (takes == "required" and not colon):
        raise ConfigError(f"{where}: unknown post_processing operation {op!r}; supported: {_POST_HELP}")
    return op


def _post_ops(value, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, _Lambda):
        return _lambda_ops(value, where)
    if isinstance(value, str) and value.lstrip().startswith("lambda"):
        # OpenPrompt also evals lambdas written as strings ("lambda x:x.strip('.')"): parsed the same way
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                node = ast.parse(value.strip(), mode="eval").body
        except (SyntaxError, ValueError, RecursionError, MemoryError):
            node = None
        if not isinstance(node, ast.Lambda):
            raise ConfigError(f"{where}: post_processing {value!r} is not a lambda this parser can read; "
                              f"supported: {_POST_HELP}")
        return _lambda_ops(_Lambda(node, value.strip()), where)
    if isinstance(value, list):
        return tuple(_named_op(v, where) for v in value)
    return (_named_op(value, where),)


# --- fragments -> segments -------------------------------------------------------------------------------

def _as_bool(value, where: str, key: str = "shortenable") -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise ConfigError(f"{where}: {key!r} must be true or false, got {value!r}")


def _kind(frag: dict, content: str, where: str) -> str:
    unknown = set(frag) - _KNOWN_KEYS
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {sorted(unknown)} in {{{content.strip()}}}; known keys: "
                          f"{', '.join(sorted(_KNOWN_KEYS - {'soft_id'}))}")
    if "soft_id" in frag or frag.get("same"):
        raise ConfigError(f"{where}: shared soft tokens ('soft_id', 'same') are not supported; every {{\"soft\"}} "
                          f"is its own trainable token")
    kinds = [k for k in _KINDS if k in frag]
    if not kinds:
        raise ConfigError(f"{where}: fragment {{{content.strip()}}} has no placeholder, meta, mask, soft, text or "
                          f"special key")
    if len(kinds) > 1:
        raise ConfigError(f"{where}: fragment {{{content.strip()}}} mixes {' and '.join(kinds)}; one per fragment")
    kind = kinds[0]
    for key, value in frag.items():
        if key == kind or key in _OPTIONS[kind]:
            continue
        if key == "post_processing":
            if value == "mlp":
                raise ConfigError(f"{where}: post_processing 'mlp' (an MLP over soft-token embeddings) is not "
                                  f"supported")
            raise ConfigError(f"{where}: post_processing applies to placeholder and meta fields only, not {kind}")
        raise ConfigError(f"{where}: {key!r} does not apply to a {kind} fragment {{{content.strip()}}}")
    return kind


def _special(value, where: str) -> str:
    name = value.strip().strip("<>").lower() if isinstance(value, str) else None
    if name == "mask":
        raise ConfigError(f"{where}: write the mask as {{\"mask\"}}, not {{\"special\": {value!r}}}")
    if name not in SPECIAL_TOKENS:
        raise ConfigError(f"{where}: unknown special token {value!r}; use one of "
                          f"{', '.join(f'<{n}>' for n in SPECIAL_TOKENS)}")
    return name


def _prefix_space(value, where: str) -> bool:
    if isinstance(value, bool):
        return value
    if value in ("", " "):
        return value == " "
    raise ConfigError(f"{where}: 'add_prefix_space' must be \" \", \"\", true or false, got {value!r}")


def parse_template(text: str, source: str = "<string>") -> Template:
    try:
        return _parse_template(text, source)
    except RecursionError:  # json, ast and the lambda matcher recurse on nesting; a real template needs little
        raise ConfigError(f"{source}: a fragment is nested too deeply to be a template") from None


def _parse_template(text: str, source: str) -> Template:
    segments: list[Segment] = []
    last_raw = False  # the last segment is literal text written between fragments (not {"text": ...})
    for is_fragment, content in _split_fragments(text, source):
        if not is_fragment:
            segments.append(Segment("text", content))
            last_raw = True
            continue
        frag = _parse_fragment(content, source)
        kind = _kind(frag, content, source)
        if "add_prefix_space" in frag:
            # OpenPrompt turns the spaces written before a fragment into its prefix; an explicit value replaces them
            space = _prefix_space(frag["add_prefix_space"], source)
            if last_raw:
                rest = segments.pop().value.rstrip(" ")
                if rest:
                    segments.append(Segment("text", rest))
            if space:
                segments.append(Segment("text", " "))
        last_raw = False
        short = frag.get("shortenable")
        if kind in ("placeholder", "meta"):
            name = frag[kind]
            if kind == "placeholder" and name not in PLACEHOLDERS:
                raise ConfigError(f"{source}: unknown placeholder {name!r}; use one of {list(PLACEHOLDERS)} or {{\"meta\": ...}}")
            if kind == "meta" and (not isinstance(name, str) or not name):
                raise ConfigError(f"{source}: 'meta' needs a field name")
            segments.append(Segment(kind, name, True if short is None else _as_bool(short, source),
                                    _post_ops(frag.get("post_processing"), source)))
        elif kind == "mask":
            if frag["mask"] is not None:
                raise ConfigError(f"{source}: write the mask as {{\"mask\"}}, got {{\"mask\": {frag['mask']!r}}}")
            segments.append(Segment("mask"))
        elif kind == "soft":
            init = frag["soft"] or ""
            if not isinstance(init, str):
                raise ConfigError(f"{source}: 'soft' takes a word to initialise from, got {init!r}")
            count = frag.get("duplicate")
            if count is not None and (isinstance(count, bool) or not isinstance(count, int) or count < 1):
                raise ConfigError(f"{source}: 'duplicate' must be a positive integer, got {count!r}")
            if count is not None and count > MAX_SOFT_TOKENS:
                raise ConfigError(f"{source}: 'duplicate' asks for {count} soft tokens; a template may hold at most "
                                  f"{MAX_SOFT_TOKENS}")
            if count is not None and init:
                raise ConfigError(f"{source}: 'duplicate' repeats random soft tokens ({{\"soft\": null, \"duplicate\": "
                                  f"N}}); a soft token initialised from words gets one token per word")
            # "soft": "very good" initialises one soft token per word, as OpenPrompt does
            words = init.split() if init else [""] * (count or 1)
            segments.extend(Segment("soft", w) for w in words)
        elif kind == "special":
            segments.append(Segment("special", _special(frag["special"], source)))
        else:  # text
            if isinstance(frag["text"], bool) or not isinstance(frag["text"], (str, int, float)):
                raise ConfigError(f"{source}: 'text' needs a string, got {frag['text']!r}")
            segments.append(Segment("text", str(frag["text"]), bool(short is not None and _as_bool(short, source))))
    soft = sum(s.kind == "soft" for s in segments)
    if soft > MAX_SOFT_TOKENS:
        raise ConfigError(f"{source}: the template asks for {soft} soft tokens; a template may hold at most "
                          f"{MAX_SOFT_TOKENS}")
    masks = sum(s.kind == "mask" for s in segments)
    if masks > 1:
        raise ConfigError(f"{source}: template has {masks} masks; only single-mask templates are supported")
    return Template(tuple(segments), source, text)


def template_lines(text: str) -> list[tuple[int, str]]:
    """(1-based line number, line) for each template in a file's text: blank and '#' lines are skipped."""
    return [(i, line) for i, line in enumerate(text.splitlines(), start=1)
            if line.strip() and not line.lstrip().startswith("#")]


def load_templates(path: str | Path) -> dict[int, Template]:
    """One template per line; ids are 0-based line numbers. Blank and '#' lines are skipped."""
    from workbench.config.yaml_io import read_text_file

    path = Path(path)
    out: dict[int, Template] = {}
    for n, line in template_lines(read_text_file(path, "template file")):
        out[n - 1] = parse_template(line, f"{path}:{n}")
    if not out:
        raise ConfigError(f"{path}: no templates in file")
    return out


def soft_as_words(template: Template, method: str, template_id: int | None = None) -> Template:
    """The template as a method that trains no soft tokens reads it: `{"soft": "word"}` is its word (the value an
    untrained soft token starts from), and a bare `{"soft"}` is refused (it would reach the model as a fixed
    padding token). Only methods that train soft tokens (p-tuning) keep soft slots."""
    if not template.num_soft:
        return template
    bare = next((s for s in template.segments if s.kind == "soft" and not s.value), None)
    if bare is not None:
        which = f"template {template_id}" if template_id is not None else "the template"
        raise ConfigError(
            f"{template.source}: prompt.template: {which} has a bare {{\"soft\"}} slot, but method {method!r} trains "
            f"no soft tokens (it would read a fixed padding token there); use --method p-tuning, a template without "
            f"soft slots (--template-id), or {{\"soft\": \"word\"}}, which such methods read as the word",
            field="prompt.template")
    # Each word joins the literal text around it, so it is tokenized as the words of a sentence are ("It was").
    segments: list[Segment] = []
    joins = False  # the last segment holds a soft word: literal text after it joins it
    for seg in template.segments:
        if seg.kind == "soft":
            word = seg.value
            if segments and segments[-1].kind == "text" and not segments[-1].shortenable:
                prev = segments.pop().value
                word = f"{prev} {word}" if joins else prev + word  # {"soft": "very good"}: one soft per word
            segments.append(Segment("text", word))
            joins = True
        elif joins and seg.kind == "text" and not seg.shortenable:
            segments[-1] = Segment("text", segments[-1].value + seg.value)
        else:
            segments.append(seg)
            joins = False
    return Template(tuple(segments), template.source, template.text)
