"""Command line for `workbench sweep`, `workbench compare` and `workbench dashboard`.

`register(subparsers)` adds the three commands to the `workbench` parser (workbench/cli.py).
"""

from __future__ import annotations

import argparse
import dataclasses

from workbench.errors import ConfigError

STUDY_FIELDS = {"task", "method", "model", "shots", "seed", "progress", "tracking_uri", "method_options"}


def _ints(text: str, flag: str) -> list[int]:
    try:
        return [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise ConfigError(f"{flag} {text!r}: expected comma-separated integers, e.g. 13,21,42") from None


def _add_sweep_args(p: argparse.ArgumentParser) -> None:
    from workbench.cli import _add_train_args

    _add_train_args(p)
    g = p.add_argument_group("sweep")
    g.add_argument("--trials", type=int, default=20, help="finished (complete or pruned) trials the study should hold")
    g.add_argument("--timeout", type=float, help="seconds after which no new trial starts")
    g.add_argument("--space", help="search space YAML (default: experiments/<method>.yaml)")
    g.add_argument("--param", action="append", default=[], metavar="NAME=SPEC",
                   help="override the space: lr=1e-5..1e-3:log, num_soft=2..16, prompt_encoder=lstm|mlp, "
                        "warmup_ratio=0.1 (fixed), name= (drop)")
    g.add_argument("--storage", help="Optuna storage URL (default: $WORKBENCH_SWEEP_STORAGE or sqlite:///optuna.db; "
                                     "postgresql://... to share a study between machines)")
    g.add_argument("--study-name", help="default: <task>-<method>-<model>-k<shots>")
    g.add_argument("--resume", action="store_true", help="continue an existing study (also how more workers join)")
    g.add_argument("--pruner", choices=["median", "halving", "none"], default="median")
    g.add_argument("--max-failures", type=int, default=3, help="stop after this many failed trials in a row")
    g.add_argument("--trial-eval-limit", type=int, default=200,
                   help="trials report the eval split on its first N rows only (selection uses the few-shot dev "
                        "split); the final runs use --eval-limit (default: all rows)")
    g.add_argument("--final-seeds", default="13,21,42,87,100", help="seeds for the best config and the baseline")
    g.add_argument("--no-final", action="store_true", help="stop after the study; no final runs, no comparison")
    g.add_argument("--baseline", default="finetune", help="method to compare with ('none' for no comparison)")
    g.add_argument("--baseline-trials", type=int, default=0, help="a small sweep of the baseline first")


def sweep_job_from_args(args: argparse.Namespace):
    from workbench.cli import run_config_from_args
    from workbench.recipes.sweep import SweepJob
    from workbench.recipes.train import RunConfig
    from workbench.sweeps import SweepConfig
    from workbench.sweeps.space import RUN_PARAMS

    rc = run_config_from_args(args)
    default = RunConfig()
    overrides = {f.name: getattr(rc, f.name) for f in dataclasses.fields(rc)
                 if f.name not in STUDY_FIELDS and getattr(rc, f.name) != getattr(default, f.name)}
    overrides.pop("eval_limit", None)
    # a flag given for a searched parameter fixes it; so does --option for a method option
    params = [f"{n}={getattr(args, n)}" for n in RUN_PARAMS if getattr(args, n, None) is not None]
    params += [f"{k}={v}" for k, v in rc.method_options.items()] + list(args.param)
    trial_limit = args.eval_limit if args.eval_limit is not None else args.trial_eval_limit
    sweep = SweepConfig(task=rc.task, method=rc.method, model=rc.model, shots=rc.shots, seed=rc.seed,
                        trials=args.trials, timeout=args.timeout, space_file=args.space, params=params,
                        run_overrides={**overrides, "eval_limit": trial_limit or None},
                        storage=args.storage, study_name=args.study_name, resume=args.resume, pruner=args.pruner,
                        tracking_uri=rc.tracking_uri, max_failures=args.max_failures, progress=False)
    baseline = None if args.baseline in ("", "none") else args.baseline
    if baseline:
        from workbench.adaptation import get_method

        get_method(baseline)
    final = {"eval_limit": args.eval_limit} if args.eval_limit is not None else {}
    return SweepJob(sweep, [] if args.no_final else _ints(args.final_seeds, "--final-seeds"), baseline,
                    args.baseline_trials, final)


def cmd_sweep(args: argparse.Namespace) -> None:
    from workbench.recipes.sweep import run_job

    job = sweep_job_from_args(args)
    result = run_job(job, log=lambda s: print(s, flush=True))
    print(f"study: {result.sweep.study_name} ({result.sweep.storage})  MLflow parent run: {result.sweep.parent_run_id}")


def _add_compare_args(p: argparse.ArgumentParser) -> None:
    from workbench.recipes.train import DEFAULT_MODEL

    p.add_argument("--task", default="sst2")
    p.add_argument("--methods", default="finetune,prompt-finetune,icl", help="comma-separated methods")
    p.add_argument("--model", default=DEFAULT_MODEL)
    p.add_argument("--shots", type=int, default=16)
    p.add_argument("--seeds", default="13,21,42,87,100")
    p.add_argument("--max-steps", type=int)
    p.add_argument("--eval-every", type=int)
    p.add_argument("--eval-limit", type=int, help="evaluate on the first N rows only (smoke runs; logged)")
    p.add_argument("--template-id", type=int)
    p.add_argument("--template-file")
    p.add_argument("--verbalizer-file")
    p.add_argument("--max-seq-length", type=int)
    p.add_argument("--storage", help="Optuna storage to take each method's best config from (default: as sweep)")
    p.add_argument("--no-sweeps", action="store_true", help="use every method's defaults, even if it has a sweep")
    p.add_argument("--no-reuse", action="store_true", help="train again even when a matching run is in the store")
    p.add_argument("--tracking-uri")
    p.add_argument("--no-progress", action="store_true")


def cmd_compare(args: argparse.Namespace) -> None:
    from workbench.recipes.compare import CompareConfig, compare

    shared = {k: getattr(args, k) for k in ("max_steps", "eval_every", "eval_limit", "template_id", "template_file",
                                             "verbalizer_file", "max_seq_length") if getattr(args, k) is not None}
    cfg = CompareConfig(task=args.task, methods=[m.strip() for m in args.methods.split(",") if m.strip()],
                        model=args.model, shots=args.shots, seeds=_ints(args.seeds, "--seeds"), run_overrides=shared,
                        storage=args.storage, use_sweeps=not args.no_sweeps, reuse=not args.no_reuse,
                        tracking_uri=args.tracking_uri, progress=not args.no_progress)
    result = compare(cfg, log=lambda s: print(s, flush=True))
    print("\n" + result.table())
    print(f"\nMLflow parent run: {result.parent_run_id}")


def cmd_dashboard(args: argparse.Namespace) -> None:
    from workbench.recipes.dashboard import serve

    serve(args.tracking_uri, args.host, args.port)


def register(subparsers) -> None:
    p = subparsers.add_parser("sweep", help="Optuna study over a method's search space, then its best config "
                                            "against full fine-tuning on the protocol's seeds")
    _add_sweep_args(p)
    p.set_defaults(func=cmd_sweep)

    p = subparsers.add_parser("compare", help="several methods on the same few-shot splits (one parent MLflow run)")
    _add_compare_args(p)
    p.set_defaults(func=cmd_compare)

    p = subparsers.add_parser("dashboard", help="MLflow's UI on 127.0.0.1 against the tracking store")
    p.add_argument("--tracking-uri", help="default: $MLFLOW_TRACKING_URI or sqlite:///mlflow.db")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=5000)
    p.set_defaults(func=cmd_dashboard)


def main(argv: list[str] | None = None) -> int:
    """`python -m workbench.sweeps.cli ...` is the same as `workbench ...`."""
    from workbench.cli import main as cli_main

    return cli_main(argv)


if __name__ == "__main__":
    raise SystemExit(main())
