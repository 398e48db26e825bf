"""`workbench ppt pretrain`: parse, build the PretrainConfig, call the library. One flag per config field, its help
the field's own."""

from __future__ import annotations

import argparse
import sys


def register(subparsers) -> None:
    from workbench.cli.flags import add_section_flags
    from workbench.recipes.ppt import PretrainConfig

    p = subparsers.add_parser("ppt", help="pre-trained prompts (PPT): pre-train a soft prompt on unlabelled text")
    sub = p.add_subparsers(dest="ppt_command", required=True)
    t = sub.add_parser("pretrain", help="pre-train a soft prompt for a model; prompt tuning starts from it with "
                                        "--option init=ppt:OUT")
    add_section_flags(t, PretrainConfig)
    t.set_defaults(func=_pretrain)


def _pretrain(args: argparse.Namespace) -> None:
    from tqdm.auto import tqdm

    from workbench.cli.flags import section_from_args
    from workbench.recipes.ppt import PretrainConfig, pretrain_prompt

    cfg = section_from_args(args, PretrainConfig)
    result = pretrain_prompt(cfg, log=lambda s: tqdm.write(s, file=sys.stderr))
    print(f"prompt: {result.out} (held-out accuracy {result.heldout_accuracy:.4f}, {result.examples_per_s:.1f} "
          f"examples/s)")
    print(f"MLflow run id: {result.run_id}")
    print(f"use it: workbench train --method prompt-tuning --option init=ppt:{result.out} "
          f"--option num_virtual_tokens={cfg.prompt_tokens} --model {cfg.model} --task TASK")
