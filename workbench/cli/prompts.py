"""`workbench prompts check FILE... [--task T]`: template and verbalizer files checked without a model."""

from __future__ import annotations

import argparse
import sys


def cmd_check(args: argparse.Namespace) -> None:
    from workbench.data import get_task
    from workbench.prompts.check import check_files, format_problems

    task = get_task(args.task) if args.task else None
    problems = check_files(args.files, task=task)
    if problems:
        print(format_problems(problems))
        sys.exit(2)
    print(f"{len(args.files)} file(s) OK")


def register(sub) -> None:
    p = sub.add_parser("prompts", help="prompt files: check templates and verbalizers")
    s = p.add_subparsers(dest="prompts_command", required=True)
    c = s.add_parser("check", help="check template files (with {\"...\"} fragments) and verbalizer files (any "
                                   "other); every problem as file:line, exit code 2 if there is one")
    c.add_argument("files", nargs="+")
    c.add_argument("--task", help="also check fields and class counts against this task")
    c.set_defaults(func=cmd_check)
