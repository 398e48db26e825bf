"""Files that ship inside the package: prompt templates, verbalizers and instruction templates.

They are read through `importlib.resources`, so a wheel installed anywhere finds them; an editable
checkout reads the same files in place.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path


def _folder(name: str) -> Path:
    # Wheels install as plain folders, so the traversable is a real path; as_file would copy a zipped one.
    return Path(str(resources.files(__name__) / name))


def templates_dir() -> Path:
    """`<task>.txt`: one OpenPrompt-syntax template per line."""
    return _folder("templates")


def verbalizers_dir() -> Path:
    """`<task>.txt`: one line of comma-separated label words per class."""
    return _folder("verbalizers")


def instruct_templates_dir() -> Path:
    """`<task>.yaml`: FLAN-style instruction templates per task."""
    return _folder("instruct")


def template_file(task: str) -> Path:
    return templates_dir() / f"{task}.txt"


def verbalizer_file(task: str) -> Path:
    return verbalizers_dir() / f"{task}.txt"
