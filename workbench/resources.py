"""Where the prompt library shipped with the workbench is: the top-level `templates/` and `verbalizers/` folders.

A source checkout or an editable install reads them in place, beside the package; a wheel carries copies inside
the package (`workbench/templates`, `workbench/verbalizers`: pyproject.toml's package-dir mapping), so an installed
wheel finds them from any directory.
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).parent


def shipped(folder: str, *parts: str) -> Path:
    """The shipped prompt library's `folder` ("templates" or "verbalizers"), or the path `parts` inside it."""
    # The wheel's copy first: beside an installed package (site-packages) a folder of that name may be another's.
    inside = _PACKAGE / folder
    return (inside if inside.is_dir() else _PACKAGE.parent / folder).joinpath(*parts)


def templates_dir() -> Path:
    """`<task>.txt`: one OpenPrompt-syntax template per line."""
    return shipped("templates")


def template_file(task: str) -> Path:
    return shipped("templates", f"{task}.txt")


def verbalizer_file(task: str) -> Path:
    """`<task>.txt`: one line of comma-separated label words per class."""
    return shipped("verbalizers", f"{task}.txt")


def instruct_templates_dir() -> Path:
    """`<task>.yaml`: FLAN-style instruction templates per task."""
    return shipped("templates", "instruct")


def cot_exemplars_file() -> Path:
    """The Manual-CoT exemplars (arithmetic and A-E problems) that `--demos FILE` replaces."""
    return shipped("templates", "cot", "manual.yaml")
