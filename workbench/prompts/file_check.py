"""Check template and verbalizer files without loading a model, reporting every problem, one line each.

Training stops at the first bad line it meets; a user fixing a downloaded prompt file wants the whole
list at once. So each template line is parsed on its own and each ConfigError becomes a `Problem`,
and a verbalizer file is read by `read_verbalizer_file`, which collects instead of raising.

Which kind a file is, in order: .json/.jsonl -> verbalizer; a name containing "verbalizer" -> verbalizer
(OpenPrompt's generation verbalizers are written in template syntax, {"text": "No"}); a `{"` or `{'`
fragment on a line that is not a '#' comment -> template; anything else -> verbalizer.

With a task, templates must only use fields the task has (text_a = its first text field, text_b = its
second, meta = one of its text fields), and a verbalizer must have one class per task label. A task's own
files (its YAML's `templates:` and `verbalizer:`, or those shipped for a built-in task) are checked as what
the task says they are: `check_task_files`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from workbench.config.yaml_io import read_text_file
from workbench.errors import ConfigError
from workbench.prompts.template import (
    NO_INPUT,
    PLACEHOLDERS,
    Template,
    parse_template,
    template_lines,
)
from workbench.prompts.verbalizer import JSON_SUFFIXES, read_verbalizer_file


@dataclass(frozen=True)
class Problem:
    where: str  # "file:line", or "file" when the problem is not on one line
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"


def file_kind(path: str | Path, text: str) -> str:
    """"template" or "verbalizer", by the rules in the module docstring."""
    path = Path(path)
    if path.suffix.lower() in JSON_SUFFIXES or "verbalizer" in path.name.lower():
        return "verbalizer"
    for _, line in template_lines(text):
        if '{"' in line or "{'" in line:
            return "template"
    return "verbalizer"


def _problem(err: ConfigError, path: Path) -> Problem:
    """Split a ConfigError's "file:line: message" into where and message; always one line."""
    msg = str(err).replace("\r", "\\r").replace("\n", "\\n")
    prefix = f"{path}:"
    if msg.startswith(prefix):
        rest = msg[len(prefix):]
        m = re.match(r"(\d+): (.*)", rest) or re.match(r" line (\d+): (.*)", rest)
        if m:
            return Problem(f"{path}:{m.group(1)}", m.group(2))
        return Problem(str(path), rest.lstrip())
    return Problem(str(path), msg)


def _task_fields(template: Template, where: str, task) -> list[Problem]:
    problems, seen = [], set()
    fields = list(task.text_fields)
    for seg in template.segments:
        if seg.kind not in ("placeholder", "meta") or (seg.kind, seg.value) in seen:
            continue
        seen.add((seg.kind, seg.value))
        if seg.kind == "placeholder" and PLACEHOLDERS.index(seg.value) >= len(fields):
            problems.append(Problem(where, f"placeholder {seg.value!r} but task {task.name!r} has only {len(fields)} "
                                           f"text field(s) {fields}"))
        elif seg.kind == "meta" and seg.value not in fields:
            problems.append(Problem(where, f"meta field {seg.value!r} is not a text field of task {task.name!r} "
                                           f"(text fields: {fields})"))
    return problems


def _check_templates(path: Path, text: str, task) -> list[Problem]:
    lines = template_lines(text)
    if not lines:
        return [Problem(str(path), "no templates in file")]
    problems: list[Problem] = []
    for n, line in lines:
        where = f"{path}:{n}"
        try:
            template = parse_template(line, where)
        except ConfigError as e:
            problems.append(_problem(e, path))
            continue
        if not template.has_mask:
            problems.append(Problem(where, 'template has no {"mask"}; prompt methods read the label word at the mask'))
        if not template.fields_used():
            problems.append(Problem(where, NO_INPUT))
        if task is not None:
            problems.extend(_task_fields(template, where, task))
    return problems


def _check_verbalizers(path: Path, task) -> list[Problem]:
    verbalizers, errors = read_verbalizer_file(path)
    problems = [_problem(e, path) for e in errors]
    for i, v in enumerate(verbalizers):
        tag = f"verbalizer {i + 1} of {len(verbalizers)}: " if len(verbalizers) > 1 else ""
        if task is not None:
            try:
                v.check_classes(tuple(task.label_names))
            except ConfigError as e:
                p = _problem(e, path)
                problems.append(Problem(p.where, tag + p.message))
        elif len(v.words) < 2:
            hint = ""
            if len(v.words) == 1 and any(" " in w for w in v.words[0]):
                hint = f"; {v.words[0][0]!r} is one label word: words are separated by commas, classes by lines"
            problems.append(Problem(str(path), f"{tag}{len(v.words)} class; a verbalizer needs one line per class, "
                                               f"at least two{hint}"))
    return problems


def check_files(paths, task=None) -> list[Problem]:
    """Every problem in every file (templates and verbalizers, told apart by `file_kind`), in file order.

    `task`: a `workbench.data.TaskSpec` (or a task name) to also check fields and the class count against.
    """
    if isinstance(task, str):
        from workbench.data import get_task

        task = get_task(task)
    return [problem for p in paths for problem in _check_file(Path(p), task)]


def check_task_files(task) -> tuple[list[Path], list[Problem]]:
    """The task's own template and verbalizer files (`TaskSpec.prompt_file`), and every problem in them; a task
    with neither is refused in one line."""
    files = {what: f for what in ("template", "verbalizer") if (f := task.prompt_file(what)) is not None}
    if not files:
        raise ConfigError(f"task {task.name!r} has no template or verbalizer file to check; name the files, or give "
                          f"the task YAML ({task.source}) templates: and verbalizer: fields")
    return list(files.values()), [problem for what, f in files.items() for problem in _check_file(f, task, what)]


def _check_file(path: Path, task, kind: str | None = None) -> list[Problem]:
    """`kind`: "template" or "verbalizer" when known, else told by `file_kind`."""
    try:
        text = read_text_file(path, "file")  # UTF-8, a byte-order mark dropped
    except ConfigError as e:
        return [_problem(e, path)]
    if (kind or file_kind(path, text)) == "template":
        return _check_templates(path, text, task)
    return _check_verbalizers(path, task)


def format_problems(problems: list[Problem]) -> str:
    """One line per problem, then a count; "no problems found" when there are none."""
    if not problems:
        return "no problems found"
    files = {re.sub(r":\d+$", "", p.where) for p in problems}
    summary = (f"{len(problems)} problem{'' if len(problems) == 1 else 's'} in {len(files)} "
               f"file{'' if len(files) == 1 else 's'}")
    return "\n".join([*map(str, problems), summary])
