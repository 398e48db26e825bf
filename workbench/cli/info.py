"""`workbench models | tasks | methods`: what the workbench knows about."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import yaml

from workbench.errors import ConfigError, WorkbenchError


def cmd_models(args: argparse.Namespace) -> None:
    from workbench.models import ALIASES, describe_model, pull, pulled

    if args.action == "list":
        for a in ALIASES.values():
            state = "not pulled" if pulled(a.alias, verify=False) is None else "pulled"
            print(f"{a.alias:14s} {a.kind:8s} {state:11s} {a.description}")
    elif args.action == "pull":
        for name in args.names or list(ALIASES):
            print(f"{name}: {pull(name, force=args.force, verify='full')}")
    elif args.action == "show":
        # Read-only: an alias not pulled yet is described, never downloaded (that is `models pull`).
        for name in args.names:
            info = describe_model(name)
            print(json.dumps(info, indent=2))
            if info.get("pulled") is False:
                print(f"{name}: not pulled; run workbench models pull {name}", file=sys.stderr)


def cmd_tasks(args: argparse.Namespace) -> None:
    from workbench.data import BUILTIN_TASKS, get_task

    if args.action == "list":
        for t in BUILTIN_TASKS.values():
            print(f"{t.name:6s} {t.num_classes} classes  reported on {t.eval_split:4s}  {t.description}")
        return
    for name in args.names:
        t = get_task(name)
        data = t.data_source()  # no data at all is refused here, in one line, not once per split
        counts = {}
        for split in t.files:
            try:
                counts[split] = len(t.load_split(split))
            except ConfigError:  # a malformed file is refused; only data that is not there is "unavailable"
                raise
            except WorkbenchError as e:
                counts[split] = f"unavailable ({e})"
        prompt_files = {what: str(f) if (f := t.prompt_file(what)) else None for what in ("template", "verbalizer")}
        print(json.dumps({"name": t.name, "text_fields": t.text_fields, "label_names": t.label_names,
                          "metric": t.metric, "eval_split": t.eval_split, "rows": counts, "source": t.source,
                          "data": str(data) if isinstance(data, Path) else f"Hugging Face hub: {data.path}",
                          "template_file": prompt_files["template"], "verbalizer_file": prompt_files["verbalizer"]},
                         indent=2))


def describe_method(name: str) -> str:
    """Summary, learning rate, every option with its type, constraints, default and help, and the default space."""
    from workbench.adaptation import get_method
    from workbench.config import field_help

    m = get_method(name)
    trains = f"  default learning rate: {m.default_lr:g}, batch size: {m.default_batch_size}"
    lines = [f"{m.name}: {m.summary}", trains if m.trains else "  no training",
             f"  reads: {'the label words at the template mask' if m.uses_verbalizer else 'plain input'}",
             "  options (--option NAME=VALUE, or method.NAME=VALUE):"]
    rows = field_help(m.options)
    for opt, kind, default, help_text in rows:
        lines.append(f"    {opt} = {default}  ({kind})\n        {help_text}")
    if not rows:
        lines.append("    none")
    lines.append("  default search space (a file like this goes to `workbench sweep --space FILE`):")
    space = yaml.safe_dump(m.space.to_yaml(), sort_keys=False, default_flow_style=None).rstrip()
    lines += ["    " + ln for ln in space.splitlines()]
    return "\n".join(lines)


def cmd_methods(args: argparse.Namespace) -> None:
    from workbench.adaptation import all_methods

    if args.name:
        print(describe_method(args.name))
        return
    for m in all_methods().values():
        print(f"{m.name:16s} {m.summary}")
    print("\n`workbench methods NAME` shows a method's options and default search space.")


def register(sub) -> None:
    p = sub.add_parser("models", help="offline model aliases")
    p.add_argument("action", choices=["list", "pull", "show"])
    p.add_argument("names", nargs="*")
    p.add_argument("--force", action="store_true", help="pull again even if cached")
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("tasks", help="built-in and user tasks")
    p.add_argument("action", choices=["list", "show"])
    p.add_argument("names", nargs="*")
    p.set_defaults(func=cmd_tasks)

    p = sub.add_parser("methods", help="adaptation methods; with a NAME, its options and search space")
    p.add_argument("name", nargs="?", help="a method")
    p.set_defaults(func=cmd_methods)
