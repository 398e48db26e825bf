"""Opening a file a user named: a regular file, no larger than a cap, checked before it is opened.

Opening a named pipe (FIFO) blocks until something writes to it: a config, a task or a data file named by
mistake would hang the command forever. Reading a device (`/dev/zero`) or a file of many gigabytes where a
config of a few kilobytes was meant exhausts memory. `check_regular_file` refuses all of them in one line that
names the file, from `os.stat`, which neither opens nor reads it; `read_bytes` then reads no more than the cap.

This module is the bottom layer: it imports nothing of `workbench` but its errors, so every reader can use it.
"""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

from workbench.errors import ConfigError

MIB = 1 << 20
# Configs, search spaces, task YAML, templates, verbalizers: kilobytes in practice.
TEXT_MAX_BYTES = 16 * MIB
# Data: task splits, predict input, instruction data and corpora; each is read into memory whole.
DATA_MAX_BYTES = 2 << 30


def _size(n: int) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", MIB), ("KiB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} bytes"


def _kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a named pipe (FIFO)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def check_regular_file(path: str | os.PathLike, what: str = "file", max_bytes: int = TEXT_MAX_BYTES) -> int:
    """The size in bytes of `path`, a regular file (or a link to one) of at most `max_bytes`; else a one-line
    ConfigError naming it: missing, a directory, a pipe, a device or a socket, or too large. Never opens it."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise ConfigError(f"{path}: {what} not found") from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot read the {what} ({e.strerror or type(e).__name__})") from None
    if stat.S_ISDIR(st.st_mode):
        raise ConfigError(f"{path}: is a directory, not a file; give the path of the {what} itself")
    if not stat.S_ISREG(st.st_mode):
        raise ConfigError(f"{path}: is {_kind(st.st_mode)}, not a regular file; give the path of a {what} saved on "
                          f"disk")
    if st.st_size > max_bytes:
        raise ConfigError(f"{path}: {_size(st.st_size)} is larger than a {what} may be ({_size(max_bytes)}); "
                          f"check that this is the file you meant")
    return st.st_size


def read_bytes(path: str | os.PathLike, what: str = "file", max_bytes: int = TEXT_MAX_BYTES) -> bytes:
    """The bytes of a regular file of at most `max_bytes` (`check_regular_file`); a file that grows past the cap
    while it is read is refused too."""
    check_regular_file(path, what, max_bytes)
    try:
        with open(path, "rb") as f:
            data = f.read(max_bytes + 1)
    except OSError as e:
        raise ConfigError(f"{path}: cannot read the {what} ({e.strerror or type(e).__name__})") from None
    if len(data) > max_bytes:
        raise ConfigError(f"{path}: larger than a {what} may be ({_size(max_bytes)}); check that this is the file "
                          f"you meant")
    return data


def sha256_file(path: str | os.PathLike) -> str:
    """The file's SHA-256, read a mebibyte at a time (model weights run to gigabytes)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(MIB), b""):
            h.update(block)
    return h.hexdigest()


__all__ = ["DATA_MAX_BYTES", "TEXT_MAX_BYTES", "check_regular_file", "read_bytes", "sha256_file"]
