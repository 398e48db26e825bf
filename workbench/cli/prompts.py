"""`workbench prompts check FILE... [--task T]`: template and verbalizer files checked without a model."""

from __future__ import annotations

import argparse


def cmd_check(args: argparse.Namespace) -> None:
    """Every problem on stdout, one line each; then the verdict on stderr in one line (`error: ...`, exit code 2),
    as every command refuses bad input."""
    from workbench.data import get_task
    from workbench.errors import WorkbenchError
    from workbench.prompts.file_check import check_files, check_task_files, format_problems

    task = get_task(args.task) if args.task else None
    if args.files:
        files, problems = args.files, check_files(args.files, task=task)
    elif task is not None:
        files, problems = check_task_files(task)
    else:
        raise WorkbenchError("prompts check: name the template and verbalizer files to check, or give --task TASK "
                             "to check the task's own")
    if problems:
        *lines, summary = format_problems(problems).splitlines()
        print("\n".join(lines), flush=True)
        if len(problems) == 1:
            raise WorkbenchError(str(problems[0]))
        raise WorkbenchError(f"{summary} (listed above); the first: {problems[0]}")
    print(f"{len(files)} file(s) OK")


def register(sub) -> None:
    p = sub.add_parser("prompts", help="prompt files: check templates and verbalizers")
    s = p.add_subparsers(dest="prompts_command", required=True)
    c = s.add_parser("check", help="check template files (with {\"...\"} fragments) and verbalizer files (any "
                                   "other); every problem as file:line, exit code 2 if there is one")
    c.add_argument("files", nargs="*", help="template and verbalizer files; none: the --task's own files")
    c.add_argument("--task", help="also check fields and class counts against this task; without FILEs, check its "
                                  "template and verbalizer files (a task YAML's templates: and verbalizer:)")
    c.set_defaults(func=cmd_check)
