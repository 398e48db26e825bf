"""The harness of the bad-input tables (tests/test_bad_inputs_*.py): one case per row, each run through the real
command line in-process, refused in one line with exit code 2, no traceback, and before any model weights load.

A row is `Case(id, argv, expect, files={name: text or bytes})`: the files are written into a fresh working
folder first (argv may name them), `expect` is a piece of the one-line message (the file, line, record, field
or flag it must name). `fifos` names files made as named pipes (opening one blocks until a writer comes), `sparse`
files of a given size that take no disk space. A case that runs past `LIMIT_S` seconds fails: a bad input that
hangs the command is a failure of the table, never a hung test run.
"""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass, field
from pathlib import Path

import pytest


LIMIT_S = 60  # far above any refusal (imports included), far below a hang nobody notices


class ModelLoaded(AssertionError):
    pass


class Hung(AssertionError):
    pass


@dataclass
class Case:
    id: str
    argv: list[str]
    expect: str | list[str]  # every piece must be in the message
    files: dict[str, str | bytes] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    fifos: list[str] = field(default_factory=list)  # made with os.mkfifo: nothing ever writes to them
    sparse: dict[str, int] = field(default_factory=dict)  # name -> size in bytes, all of it a hole

    def param(self):
        return pytest.param(self, id=self.id)


def forbid_model_loading(monkeypatch) -> None:
    """Loading weights fails the case: refusing bad input must come first."""
    import workbench.models
    import workbench.models.backbone

    def refuse(*args, **kwargs):
        raise ModelLoaded("model weights were loaded before the bad input was refused")

    monkeypatch.setattr(workbench.models, "load_backbone", refuse)
    monkeypatch.setattr(workbench.models.backbone, "load_backbone", refuse)


def run_case(case: Case, tmp_path: Path, monkeypatch, capsys) -> str:
    """Run the case and check the contract; returns the message for further checks."""
    from workbench.cli import main

    for name, content in case.files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
    for name in case.fifos:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        os.mkfifo(tmp_path / name)
    for name, size in case.sparse.items():
        with open(tmp_path / name, "wb") as f:
            f.truncate(size)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    for k, v in case.env.items():
        monkeypatch.setenv(k, v.format(tmp=tmp_path))
    forbid_model_loading(monkeypatch)
    argv = [a.format(tmp=tmp_path) for a in case.argv]
    def hung(signum, frame):
        raise Hung(f"the command ran past {LIMIT_S} s: a bad input must be refused at once, not waited on")

    previous = signal.signal(signal.SIGALRM, hung)
    signal.alarm(LIMIT_S)
    try:
        code = main(argv)
    except SystemExit as e:  # argparse refuses unknown flags and malformed values itself
        code = e.code
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    err = capsys.readouterr().err
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert code == 2, f"exit code {code}, stderr:\n{err}"
    assert "Traceback" not in err, err
    assert lines, "no message"
    message = lines[-1]
    # argparse prints its usage line first; ours print exactly one line.
    assert len(lines) == 1 or lines[0].startswith("usage:"), f"more than one line:\n{err}"
    for piece in [case.expect] if isinstance(case.expect, str) else case.expect:
        assert piece.format(tmp=tmp_path) in message, f"{piece!r} not in {message!r}"
    return message


__all__ = ["LIMIT_S", "Case", "Hung", "ModelLoaded", "forbid_model_loading", "run_case"]
