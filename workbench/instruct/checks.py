"""Input checks shared by `workbench instruct ...`: one message shape, raised before any work starts.

Values: `--threshold: 5.0 is not allowed; expected a number > 0 and <= 1`.
Files:  `seeds.jsonl: line 3: missing field 'instruction'; ...` (the file, then the line or record).

The library names flags here because every setting of these jobs is a flag of exactly one command.
"""

from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path
from typing import NoReturn

from workbench.errors import ConfigError


def refuse(flag: str, value, expected: str) -> NoReturn:
    raise ConfigError(f"{flag}: {value!r} is not allowed; expected {expected}")


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def integer(flag: str, value, lo: int | None = None, hi: int | None = None, what: str = "") -> int:
    """An integer in [lo, hi] (either bound may be open-ended)."""
    if lo is not None and hi is not None:
        expected = f"an integer from {lo} to {hi}"
    elif lo is not None:
        expected = f"an integer >= {lo}"
    elif hi is not None:
        expected = f"an integer <= {hi}"
    else:
        expected = "an integer"
    expected += f" ({what})" if what else ""
    if not isinstance(value, int) or isinstance(value, bool):
        refuse(flag, value, expected)
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        refuse(flag, value, expected)
    return value


def number(flag: str, value, lo: float | None = None, hi: float | None = None, lo_open: bool = False,
           hi_open: bool = False, what: str = "") -> float:
    """A finite number within the bounds (each inclusive unless `*_open`)."""
    parts = []
    if lo is not None:
        parts.append(f"{'>' if lo_open else '>='} {lo:g}")
    if hi is not None:
        parts.append(f"{'<' if hi_open else '<='} {hi:g}")
    expected = "a number" + (" " + " and ".join(parts) if parts else "") + (f" ({what})" if what else "")
    if not _is_number(value) or math.isnan(value) or math.isinf(value):
        refuse(flag, value, expected)
    if lo is not None and (value <= lo if lo_open else value < lo):
        refuse(flag, value, expected)
    if hi is not None and (value >= hi if hi_open else value > hi):
        refuse(flag, value, expected)
    return float(value)


def _probe_writable(folder: Path, flag: str, shown: str) -> None:
    """Create and remove a file in `folder`: the only test that also holds for root and read-only mounts."""
    try:
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".workbench-write-test-")
    except OSError as e:
        raise ConfigError(f"{flag} {shown}: cannot write in {folder} ({e.strerror or e}); "
                          f"choose a folder you can write to") from None
    os.close(fd)
    os.unlink(probe)


def output_file(path: str | os.PathLike, flag: str = "--out") -> Path:
    """An output file whose folder exists and can be written; the file itself may exist (not a folder)."""
    out = Path(path)
    shown = str(path)
    if not shown.strip():
        refuse(flag, shown, "a file path")
    if out.is_dir():
        raise ConfigError(f"{flag} {shown}: is a folder; expected a file path (e.g. {out / 'out.jsonl'})")
    if out.exists() and not out.is_file():
        raise ConfigError(f"{flag} {shown}: is not a regular file; choose a file path")
    folder = out.parent if str(out.parent) else Path(".")
    if not folder.exists():
        raise ConfigError(f"{flag} {shown}: the folder {folder} does not exist; create it or choose another {flag}")
    if not folder.is_dir():
        raise ConfigError(f"{flag} {shown}: {folder} is not a folder; choose another {flag}")
    _probe_writable(folder, flag, shown)
    if out.exists() and not os.access(out, os.W_OK):
        raise ConfigError(f"{flag} {shown}: the file is read-only; choose another {flag}")
    return out


def output_folder(path: str | os.PathLike, flag: str = "--out") -> Path:
    """An output folder: an existing folder we can write in, or a new one whose nearest existing parent we can."""
    out = Path(path)
    shown = str(path)
    if not shown.strip():
        refuse(flag, shown, "a folder path")
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{flag} {shown}: is a file; expected a folder (it is created if missing)")
    existing = out
    while not existing.exists():
        if existing.parent == existing:
            break
        existing = existing.parent
    if not existing.is_dir():
        raise ConfigError(f"{flag} {shown}: {existing} is a file, so the folder cannot be created; "
                          f"choose another {flag}")
    _probe_writable(existing, flag, shown)
    return out


def input_file(path: str | os.PathLike, flag: str, what: str = "file") -> Path:
    """An existing, readable regular file."""
    p = Path(path)
    if not p.exists():
        raise ConfigError(f"{flag} {path}: {what} not found")
    if p.is_dir():
        raise ConfigError(f"{flag} {path}: is a folder; expected a {what}")
    if not os.access(p, os.R_OK):
        raise ConfigError(f"{flag} {path}: cannot be read (permission denied)")
    return p


def read_bytes(path: Path, expected: str) -> bytes:
    """The file's bytes; one line naming it when it is a folder (`expected` says what was wanted instead), a pipe
    or a device (refused before it is opened: `workbench.io`), larger than a data file may be, or unreadable."""
    from workbench import io

    if path.is_dir():
        raise ConfigError(f"{path}: is a folder; {expected}")
    return io.read_bytes(path, "file", io.DATA_MAX_BYTES)


def read_text_lines(path: Path, what: str = "file"):
    """(line number, text) for every line of a UTF-8 text file; a byte that is not UTF-8 names its line."""
    data = read_bytes(path, f"expected a {what}")
    return list(enumerate(decode_lines(path, data), start=1))


def decode_lines(path: Path, data: bytes) -> list[str]:
    """The lines of UTF-8 bytes, split at "\n" only (JSON text may hold U+2028 and other line separators)."""
    try:
        text = data.decode("utf-8-sig")  # a byte-order mark is not part of the first line
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise ConfigError(f"{path}: line {line}: not UTF-8 text (byte 0x{data[e.start]:02x}); "
                          f"save the file as UTF-8") from None
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line.removesuffix("\r") for line in lines]


def model_name(flag: str, name) -> str:
    """An offline alias, a local model folder or a Hugging Face id; a path that names nothing is refused here,
    in plain words (transformers would call it an invalid repository id)."""
    from workbench.models import ALIASES

    expected = f"a model alias ({', '.join(sorted(ALIASES))}) or a local model folder"
    if not isinstance(name, str) or not name.strip():
        refuse(flag, name, expected)
    if name in ALIASES:
        return name
    path = Path(name).expanduser()
    looks_like_path = path.is_absolute() or name.startswith((".", "~")) or "\\" in name
    if looks_like_path and not path.exists():
        raise ConfigError(f"{flag} {name}: no such folder; expected {expected}")
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{flag} {name}: is a file; expected {expected}")
    return name


def json_lines(path: Path, what: str = "JSON-lines file"):
    """(where, value) for each non-blank line of a JSON-lines file, `where` being "FILE: line N"; a line that is not
    JSON is an error naming the file and line."""
    import json

    for no, text in read_text_lines(path, what):
        if not text.strip():
            continue
        where = f"{path}: line {no}"
        try:
            yield where, json.loads(text)
        except json.JSONDecodeError as e:
            raise ConfigError(f"{where}: not valid JSON ({e.msg})") from None


def json_array(path: Path, what: str = "data file") -> list[dict]:
    """The records of a file holding one JSON array of objects; anything else is an error naming the file and line
    or record."""
    import json

    text = "\n".join(line for _, line in read_text_lines(path, what))
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path}: line {e.lineno}: not JSON ({e.msg})") from None
    if not isinstance(data, list):
        raise ConfigError(f"{path}: expected a JSON array of records")
    for k, r in enumerate(data):
        if not isinstance(r, dict):
            raise ConfigError(f"{path}: record {k}: expected a JSON object, got {type(r).__name__}")
    return data
