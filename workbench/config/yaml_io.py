"""Reading the files a user hands over: text and YAML, every problem one line that names the file.

`read_text_file(path, what)` is the one way a text file is read (templates, verbalizers, task data, predict
input, YAML): a missing file, a directory, a pipe or a device, a file over the size cap, a file that is not
UTF-8 each get a one-line ConfigError naming the file (and, for bad bytes, the line), and a UTF-8 byte-order
mark at the start is dropped, so a file saved by Notepad reads the same as one without it.

`load_yaml_file(path, what)` is the one way a YAML file is read (run configs, search spaces, task files).
It is PyYAML's safe loader with three refusals, each naming file and line:
- aliases (`*name`, and `<<: *name` merges): a few hundred bytes of nested aliases ("billion laughs")
  expand to gigabytes; config files here never need them, so the first alias is refused before anything
  is expanded;
- a key written twice in one mapping (PyYAML would silently keep the last);
- nesting deeper than any config needs.
`yaml_document(path, what)` returns the same data with its node tree, so a caller can name the line a
field was written on (`doc.line("files", "train")`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from workbench.errors import ConfigError
from workbench.io import TEXT_MAX_BYTES, read_bytes

BOM = "\ufeff"
MAX_DEPTH = 64  # mappings/lists inside each other; a config needs a handful


def read_text_file(path: str | Path, what: str = "file", max_bytes: int = TEXT_MAX_BYTES) -> str:
    """The file's text: UTF-8, a leading byte-order mark dropped; a one-line ConfigError naming the file if it
    is missing, a directory, a pipe or device (`workbench.io`: refused before it is opened, which would block or
    never end), larger than `max_bytes`, unreadable or not UTF-8."""
    return decode_utf8(read_bytes(path, what, max_bytes), path, what)


def decode_utf8(data: bytes, path: str | Path, what: str = "file") -> str:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        column = e.start - (data.rfind(b"\n", 0, e.start) + 1) + 1
        raise ConfigError(f"{path}: line {line}: not UTF-8 text (byte 0x{data[e.start]:02x} at column {column}); "
                          f"save the {what} as UTF-8") from None
    return text[1:] if text.startswith(BOM) else text


class _Refused(yaml.MarkedYAMLError):
    pass


class SafeNoAliasLoader(yaml.SafeLoader):
    """yaml.SafeLoader that refuses aliases, duplicate keys and deep nesting (see the module docstring)."""

    def __init__(self, stream):
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise _Refused(problem=f"YAML aliases (*{event.anchor}) are not supported; write the value out in full",
                           problem_mark=event.start_mark)
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise _Refused(problem=f"nested more than {MAX_DEPTH} levels deep",
                               problem_mark=self.peek_event().start_mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen: dict = {}
            for key_node, _ in node.value:
                if isinstance(key_node, yaml.ScalarNode):
                    key = (key_node.tag, key_node.value)
                    if key in seen:
                        raise _Refused(problem=f"key {key_node.value!r} appears twice in this mapping (first on "
                                               f"line {seen[key] + 1}); keep one",
                                       problem_mark=key_node.start_mark)
                    seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep)


def _yaml_error(e: yaml.YAMLError, source: str, text: str) -> ConfigError:
    if isinstance(e, yaml.reader.ReaderError):  # a control character YAML does not allow
        line = text.count("\n", 0, e.position) + 1
        return ConfigError(f"{source}: line {line}: not valid YAML (control character {e.character:#04x} is not "
                           f"allowed); remove it")
    if isinstance(e, _Refused):
        return ConfigError(f"{source}: line {e.problem_mark.line + 1}: {e.problem}")
    mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
    problem = getattr(e, "problem", None) or str(e).splitlines()[0]
    context = getattr(e, "context", None)
    if context and isinstance(context, str):
        start = getattr(e, "context_mark", None)
        if start is not None and mark is not None and start.line != mark.line:
            context = f"{context} started on line {start.line + 1}"
        problem = f"{context}, {problem}"
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    return ConfigError(f"{source}: {where}not valid YAML ({problem})")


@dataclass(frozen=True)
class YamlDocument:
    data: Any  # None for an empty document
    root: yaml.Node | None
    source: str

    def node(self, *keys: Any) -> yaml.Node | None:
        """The node of the value at `keys` (mapping keys or list indexes), or None."""
        node = self.root
        for key in keys:
            if isinstance(node, yaml.MappingNode):
                node = next((v for k, v in node.value if isinstance(k, yaml.ScalarNode) and k.value == str(key)), None)
            elif isinstance(node, yaml.SequenceNode) and isinstance(key, int) and 0 <= key < len(node.value):
                node = node.value[key]
            else:
                return None
        return node

    def line(self, *keys: Any) -> int:
        """1-based line of the value at `keys`; 0 when unknown."""
        node = self.node(*keys)
        return node.start_mark.line + 1 if node is not None else 0

    def where(self, *keys: Any) -> str:
        """"FILE: line N" of the value at `keys` (just "FILE" when unknown), for messages."""
        line = self.line(*keys)
        return f"{self.source}: line {line}" if line else self.source


def yaml_kind(value: Any) -> str:
    """How a YAML value reads to its author, for messages: mapping, list, string, number, boolean, null."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    return {dict: "mapping", list: "list", str: "string"}.get(type(value), type(value).__name__)


def yaml_repr(value: Any) -> str:
    """A value as its author wrote it in YAML, for messages: null, true, 5, 'text'."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value)


def parse_yaml(text: str, source: str) -> YamlDocument:
    """Parse YAML text with the safe no-alias loader; errors are one-line ConfigErrors naming `source` and line."""
    if text.startswith(BOM):
        text = text[1:]
    loader = None
    try:
        loader = SafeNoAliasLoader(text)
        root = loader.get_single_node()
        data = loader.construct_document(root) if root is not None else None
    except yaml.YAMLError as e:
        raise _yaml_error(e, source, text) from None
    except RecursionError:
        raise ConfigError(f"{source}: YAML nested too deeply to be a config") from None
    finally:
        if loader is not None:
            loader.dispose()
    return YamlDocument(data, root, source)


def yaml_document(path: str | Path, what: str = "YAML file") -> YamlDocument:
    """A YAML file read with `read_text_file` and parsed with `parse_yaml`."""
    return parse_yaml(read_text_file(path, what), str(path))


def yaml_mapping(path: str | Path, what: str, expected: str, example: str = "") -> YamlDocument:
    """A YAML file whose document must be a mapping: an empty one or another kind is refused in one line,
    `FILE: expected <expected>, got a YAML list` (`example` is added to the message for an empty file)."""
    doc = yaml_document(path, what)
    if doc.data is None:
        raise ConfigError(f"{path}: the {what} is empty; expected {expected}{example}")
    if not isinstance(doc.data, dict):
        raise ConfigError(f"{path}: expected {expected}, got a YAML {yaml_kind(doc.data)}")
    return doc


def load_yaml_file(path: str | Path, what: str = "YAML file") -> Any:
    """The data of a YAML file (None when it is empty); every problem a one-line ConfigError naming the file."""
    return yaml_document(path, what).data


__all__ = ["SafeNoAliasLoader", "YamlDocument", "decode_utf8", "load_yaml_file", "parse_yaml", "read_text_file",
           "yaml_document", "yaml_kind", "yaml_mapping", "yaml_repr"]
