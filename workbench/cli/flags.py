"""The one place where command-line flags meet config fields.

Each flag names the dotted config path it sets; its help text is the field's own (written once, in
the field's declaration). Errors from the library name the field (`train.lr`); `flag_for` turns that
into the flag the user typed, so a message names both.
"""

from __future__ import annotations

import argparse
import dataclasses

from workbench.runs import RunConfig
from workbench.runs.config import SECTIONS

# flag -> dotted path of the run config field it sets
RUN_FLAGS = {
    "--task": "task", "--model": "model", "--shots": "shots", "--seed": "seed",
    "--template-file": "prompt.template", "--template-id": "prompt.template_id",
    "--verbalizer-file": "prompt.verbalizer", "--multi-token": "prompt.multi_token",
    "--max-seq-length": "prompt.max_seq_length",
    "--max-steps": "train.max_steps", "--lr": "train.lr", "--batch-size": "train.batch_size",
    "--grad-accum": "train.grad_accum", "--warmup-ratio": "train.warmup_ratio", "--weight-decay": "train.weight_decay",
    "--eval-every": "train.eval_every", "--patience": "train.patience", "--compile": "train.compile",
    "--eval-split": "eval.split", "--eval-limit": "eval.limit", "--eval-batch-size": "eval.batch_size",
    "--save": "tracking.save", "--tracking-uri": "tracking.uri", "--experiment": "tracking.experiment",
}
# Shorthands for common method options (any option also works as --option NAME=VALUE or method.NAME=VALUE).
METHOD_FLAGS = {"--head": "method.head", "--prompt-encoder": "method.prompt_encoder",
                "--tune-backbone": "method.tune_backbone"}
SWEEP_FLAGS = {"--trials": "sweep.trials", "--timeout": "sweep.timeout", "--space": "sweep.space",
               "--storage": "sweep.storage", "--study-name": "sweep.study_name", "--pruner": "sweep.pruner",
               "--max-failures": "sweep.max_failures", "--trial-eval-limit": "sweep.trial_eval_limit",
               "--final-seeds": "sweep.final_seeds", "--baseline": "sweep.baseline",
               "--baseline-trials": "sweep.baseline_trials", "--resume": "sweep.resume",
               "--methods": "compare.methods", "--seeds": "compare.seeds"}
_ALL = {**RUN_FLAGS, **METHOD_FLAGS, **SWEEP_FLAGS, "--method": "method", "--no-progress": "tracking.progress"}


def field_of(path: str) -> dataclasses.Field:
    section, _, name = path.rpartition(".")
    cls = SECTIONS[section] if section else RunConfig
    return next(f for f in dataclasses.fields(cls) if f.name == name)


def add_run_flags(p: argparse.ArgumentParser, only: tuple[str, ...] | None = None) -> None:
    """The run config's flags; `default=SUPPRESS` so that only flags the user typed reach the config. Values are
    checked by the config's validator, not by argparse, so every bad value gets the same one-line message."""
    for flag, path in RUN_FLAGS.items():
        if only is not None and flag not in only:
            continue
        f = field_of(path)
        choices = f.metadata.get("choices")
        metavar = "{" + ",".join(map(str, choices)) + "}" if choices else path.split(".")[-1].upper()
        p.add_argument(flag, dest=path, default=argparse.SUPPRESS, metavar=metavar, help=f.metadata["help"])
    if only is None or "--no-progress" in only:
        p.add_argument("--no-progress", dest="tracking.progress", action="store_false", default=argparse.SUPPRESS,
                       help="no progress bars")


def add_method_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--method", dest="method", default=argparse.SUPPRESS, help="adaptation method (`workbench methods`)")
    p.add_argument("--head", dest="method.head", default=argparse.SUPPRESS, metavar="{verbalizer,linear}",
                   help="head of the parameter-efficient methods")
    p.add_argument("--prompt-encoder", dest="method.prompt_encoder", default=argparse.SUPPRESS,
                   metavar="{lstm,mlp,none}", help="p-tuning's prompt encoder")
    p.add_argument("--tune-backbone", dest="method.tune_backbone", action="store_true", default=argparse.SUPPRESS,
                   help="p-tuning: train the backbone too")
    p.add_argument("--option", action="append", default=[], metavar="NAME=VALUE",
                   help="a method option, e.g. --option r=4 (the same as method.r=4)")


def add_overrides(p: argparse.ArgumentParser) -> None:
    p.add_argument("overrides", nargs="*", metavar="PATH=VALUE",
                   help="dotted config overrides, e.g. train.lr=1e-4 method.r=4 (they win over --config)")


def flag_for(field: str | None) -> str | None:
    """The flag that sets a config field, for error messages."""
    if not field:
        return None
    for flag, path in _ALL.items():
        if path == field:
            return flag
    section, _, name = field.partition(".")
    if section in JOB_SECTIONS and name:  # `workbench ppt pretrain`, `cot ...`: one flag per field, its name
        # (a bare section name, e.g. a saved config's unknown top-level `tune`, has no flag: the printer of an
        # error must never fail on the field it names)
        return "--no-progress" if name == "progress" else "--" + name.replace("_", "-")
    if field.startswith("method."):
        return f"--option {field.split('.', 1)[1]}=..."
    if field.startswith(("prompt.", "train.", "eval.", "tracking.")):
        return f"{field}=..."
    return None


# ---- jobs whose config is one section: one flag per field, named after it --------------------------------------

JOB_SECTIONS = ("ppt", "cot", "tune", "zeroshot", "flan")


def add_section_flags(p: argparse.ArgumentParser, cls: type) -> None:
    """A flag per declared field of the section `cls` (`--prompt-tokens` for `prompt_tokens`), its help the
    field's; `progress` becomes `--no-progress`."""
    from workbench.config.fields import declared_fields, meta

    for f in declared_fields(cls):
        dest = f"{cls.section}.{f.name}"
        if f.name == "progress":
            p.add_argument("--no-progress", dest=dest, action="store_false", default=argparse.SUPPRESS,
                           help="no progress bars")
            continue
        choices = meta(f, "choices")
        metavar = "{" + ",".join(map(str, choices)) + "}" if choices else f.name.upper()
        default = "" if f.default in ("", None, dataclasses.MISSING) else f" (default: {f.default})"
        p.add_argument("--" + f.name.replace("_", "-"), dest=dest, default=argparse.SUPPRESS, metavar=metavar,
                       help=meta(f, "help") + default)


def section_from_args(args: argparse.Namespace, cls: type):
    """The section built from the flags typed. Number fields are read as YAML scalars, as run flags are, so a
    number is a number in error messages too; text fields (a path, a run id) are taken as typed."""
    import typing

    from workbench.config import parse_scalar

    hints = typing.get_type_hints(cls)
    prefix = cls.section + "."
    values = {k[len(prefix):]: v for k, v in vars(args).items() if k.startswith(prefix)}
    return cls(**{k: parse_scalar(v) if isinstance(v, str) and hints[k] is not str else v for k, v in values.items()})
