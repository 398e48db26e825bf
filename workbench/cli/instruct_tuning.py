"""`workbench instruct tune | eval | flan`: one flag per config field (its help the field's), the training flags of
`workbench train` (`--max-steps`, `--lr`, ...) and its tracking flags; the library does the rest."""

from __future__ import annotations

import argparse
import sys

TRAIN_FLAGS = ("--max-steps", "--lr", "--batch-size", "--grad-accum", "--warmup-ratio", "--weight-decay",
               "--eval-every", "--patience", "--compile", "--save", "--tracking-uri", "--experiment", "--no-progress")


def register(sub) -> None:
    from workbench.cli.flags import add_run_flags, add_section_flags
    from workbench.recipes.instruct import ZeroShotConfig, FlanConfig, TuneConfig

    t = sub.add_parser("tune", help="instruction-tune a model (loss on the response tokens only)")
    add_section_flags(t, TuneConfig)
    _training_flags(t, add_run_flags)
    t.set_defaults(func=_tune)
    e = sub.add_parser("eval", help="zero-shot accuracy on unseen instruction templates, base and tuned side by side")
    add_section_flags(e, ZeroShotConfig)
    e.set_defaults(func=_eval)
    f = sub.add_parser("flan", help="the FLAN loop: mix with tasks held out -> tune -> zero-shot eval, base vs tuned")
    add_section_flags(f, FlanConfig)
    _training_flags(f, add_run_flags)
    f.set_defaults(func=_flan)


def _training_flags(p: argparse.ArgumentParser, add_run_flags) -> None:
    add_run_flags(p, only=TRAIN_FLAGS)
    p.add_argument("--option", action="append", default=[], metavar="NAME=VALUE",
                   help="a method option, e.g. --option r=4")


def _log(text: str) -> None:
    from tqdm.auto import tqdm

    tqdm.write(text, file=sys.stderr)


def _sections(args: argparse.Namespace, cls):
    """The job's section with its method options, training and tracking sections, from the flags typed."""
    from dataclasses import replace

    from workbench.cli.flags import section_from_args
    from workbench.config import parse_scalar
    from workbench.config import TrackingConfig, TrainConfig
    from workbench.errors import ConfigError

    options = {}
    for item in args.option:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise ConfigError(f"--option: {item!r} is not allowed; expected NAME=VALUE, e.g. r=4")
        options[name.strip()] = parse_scalar(value)
    cfg = section_from_args(args, cls)
    return replace(cfg, options=options, train=section_from_args(args, TrainConfig),
                   tracking=section_from_args(args, TrackingConfig))


def _tune(args: argparse.Namespace) -> None:
    from workbench.recipes.instruct import TuneConfig, tune

    result = tune(_sections(args, TuneConfig), log=_log)
    print(f"tuned {result.steps} steps (kept step {result.best_step}, dev loss {result.dev_loss:.4f}); "
          f"{result.tokens_per_s:.0f} tokens/s; MLflow run id: {result.run_id}")


def _eval(args: argparse.Namespace) -> None:
    from workbench.cli.flags import section_from_args
    from workbench.recipes.instruct import ZeroShotConfig, evaluate_zero_shot

    result = evaluate_zero_shot(section_from_args(args, ZeroShotConfig), log=_log)
    print(result.table())
    print("MLflow run ids: " + ", ".join(f"{m.label} {m.run_id}" for m in result.evaluated))


def _flan(args: argparse.Namespace) -> None:
    from workbench.recipes.instruct import FlanConfig, flan

    result = flan(_sections(args, FlanConfig), log=_log)
    print(result.evaluation.table())
    print(f"parent MLflow run id: {result.run_id} (tuning run {result.tune.run_id})")
