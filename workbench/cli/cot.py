"""`workbench cot demos | eval`: parse, build the config, check it, make the generator, call the library. One flag
per config field (its help the field's), and the generator flags of `workbench instruct self-instruct`."""

from __future__ import annotations

import argparse
import sys


def register(subparsers) -> None:
    from workbench.cli.flags import add_section_flags
    from workbench.cli.instruct import _backend_args
    from workbench.instruct.backends import DEFAULT_RETRIES, DEFAULT_TIMEOUT
    from workbench.recipes.cot import CotDemosConfig, CotEvalConfig

    p = subparsers.add_parser("cot", help="chain of thought: Auto-CoT demonstrations and CoT evaluation")
    sub = p.add_subparsers(dest="cot_command", required=True)
    d = sub.add_parser("demos", help="Auto-CoT: Zero-shot-CoT rationales, clustering, one demonstration per cluster")
    add_section_flags(d, CotDemosConfig)
    _backend_args(d, DEFAULT_TIMEOUT, DEFAULT_RETRIES)
    d.set_defaults(func=_demos)
    e = sub.add_parser("eval", help="exact-match accuracy of a prompting mode (zero-shot ... auto-cot)")
    add_section_flags(e, CotEvalConfig)
    _backend_args(e, DEFAULT_TIMEOUT, DEFAULT_RETRIES)
    e.set_defaults(func=_eval)


def _backend(args: argparse.Namespace):
    from workbench.cli.instruct import make_backend

    args.no_progress = not getattr(args, "cot.progress", True)
    return make_backend(args)


def _log(text: str) -> None:
    from tqdm.auto import tqdm

    tqdm.write(text, file=sys.stderr)


def _demos(args: argparse.Namespace) -> None:
    from workbench.cli.flags import section_from_args
    from workbench.cli.instruct import check_backend_args
    from workbench.recipes.cot import CotDemosConfig, build_demos, check_demos

    cfg = section_from_args(args, CotDemosConfig)
    check_demos(cfg)  # the task, its data and the output before any model loads
    check_backend_args(args)
    result = build_demos(cfg, _backend(args), log=_log)
    print(f"{len(result.demos)} demonstrations from {result.pool} questions ({result.generated} rationales "
          f"generated now) -> {result.out}; clusters plotted in {result.plot}")


def _eval(args: argparse.Namespace) -> None:
    from workbench.cli.flags import section_from_args
    from workbench.cli.instruct import check_backend_args
    from workbench.recipes.cot import CotEvalConfig, check_eval, evaluate_cot

    cfg = section_from_args(args, CotEvalConfig)
    check_eval(cfg)  # the task, the demo file, the output and the tracking store before any model loads
    check_backend_args(args)
    result = evaluate_cot(cfg, _backend(args), log=_log)
    print(f"accuracy {result.accuracy:.4f} ({result.correct}/{result.total}); predictions in {result.out}; "
          f"MLflow run id: {result.run_id}")
