"""`workbench ppt pretrain`: parse, build the PretrainConfig, call the library. One flag per config field, its help
the field's own."""

from __future__ import annotations

import argparse
import sys
import typing


def register(subparsers) -> None:
    from workbench.config.fields import declared_fields, meta
    from workbench.recipes.ppt import PretrainConfig

    p = subparsers.add_parser("ppt", help="pre-trained prompts (PPT): pre-train a soft prompt on unlabelled text")
    sub = p.add_subparsers(dest="ppt_command", required=True)
    t = sub.add_parser("pretrain", help="pre-train a soft prompt for a model; prompt tuning starts from it with "
                                        "--option init=ppt:OUT")
    for f in declared_fields(PretrainConfig):
        if f.name == "progress":
            t.add_argument("--no-progress", dest="ppt.progress", action="store_false", default=argparse.SUPPRESS,
                           help="no progress bars")
            continue
        choices = meta(f, "choices")
        metavar = "{" + ",".join(choices) + "}" if choices else f.name.upper()
        t.add_argument("--" + f.name.replace("_", "-"), dest="ppt." + f.name, default=argparse.SUPPRESS,
                       metavar=metavar, help=meta(f, "help") + (f" (default: {f.default})" if f.default not in ("", None) else ""))
    t.set_defaults(func=_pretrain)


def _pretrain(args: argparse.Namespace) -> None:
    from tqdm.auto import tqdm

    from workbench.recipes.ppt import PretrainConfig, pretrain_prompt

    from workbench.config import parse_scalar

    # Values of number fields are read as YAML scalars, as run flags are, so a number is a number in error messages
    # too; text fields (a path, a run id) are taken as typed.
    hints = typing.get_type_hints(PretrainConfig)
    values = {k.split(".", 1)[1]: v for k, v in vars(args).items() if k.startswith("ppt.")}
    cfg = PretrainConfig(**{k: parse_scalar(v) if isinstance(v, str) and hints[k] is not str else v
                            for k, v in values.items()})
    result = pretrain_prompt(cfg, log=lambda s: tqdm.write(s, file=sys.stderr))
    print(f"prompt: {result.out} (held-out accuracy {result.heldout_accuracy:.4f}, {result.examples_per_s:.1f} "
          f"examples/s)")
    print(f"MLflow run id: {result.run_id}")
    print(f"use it: workbench train --method prompt-tuning --option init=ppt:{result.out} "
          f"--option num_virtual_tokens={cfg.prompt_tokens} --model {cfg.model} --task TASK")
