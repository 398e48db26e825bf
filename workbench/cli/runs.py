"""`workbench train | predict | sweep | compare | dashboard`: parse, build the config, call the library."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from workbench.cli.flags import (SWEEP_FLAGS, add_method_flags, add_overrides, add_run_flags, field_of)
from workbench.errors import ConfigError


def _yaml_file(path: str) -> dict:
    """A `--config` file: a YAML mapping of run fields (read by the one safe YAML loader)."""
    from workbench.config.yaml_io import yaml_mapping

    return yaml_mapping(path, "config file", "a mapping of run fields",
                        ", e.g. task: sst2, method: {name: lora, r: 8}, train: {max_steps: 30}").data


def _dotted(texts: list[str], prefix: str = "", what: str = "override") -> dict[str, Any]:
    from workbench.config import parse_scalar

    out = {}
    for text in texts:
        if "=" not in text:
            raise ConfigError(f"{what} {text!r}: expected PATH=VALUE, e.g. train.lr=1e-4")
        key, value = text.split("=", 1)
        out[prefix + key.strip()] = parse_scalar(value.strip())
    return out


def typed_flags(args: argparse.Namespace) -> dict[str, Any]:
    """The flags the user typed, as dotted paths (argparse keeps the rest out: default=SUPPRESS). Values are
    read as YAML scalars, like overrides, so a number is a number in error messages too."""
    from workbench.config import parse_scalar
    from workbench.runs.config import top_level_fields

    flags = {k: (parse_scalar(v) if isinstance(v, str) else v) for k, v in vars(args).items()
             if k == "method" or "." in k and not k.startswith(("sweep.", "compare."))}
    # `--method` first: a new method starts from its own defaults, then its options apply.
    ordered = {"method": flags.pop("method")} if "method" in flags else {}
    ordered.update(flags)
    ordered.update({k: (parse_scalar(v) if isinstance(v, str) else v) for k, v in vars(args).items()
                    if k in top_level_fields()})
    ordered.update(_dotted(getattr(args, "option", []), "method.", "--option"))
    ordered.update(_dotted(getattr(args, "overrides", [])))
    return ordered


def run_config(args: argparse.Namespace):
    """`--config FILE`, then every flag and override the user typed: what is typed always wins over the file."""
    from workbench.runs import RunConfig

    raw: dict = {}
    if getattr(args, "config", None):
        raw = _yaml_file(args.config)
        base = RunConfig.from_dict(raw, args.config)  # the file's own errors name the file
    else:
        base = RunConfig()
    return base.with_overrides(typed_flags(args))


def cmd_train(args: argparse.Namespace) -> None:
    from workbench.recipes.train import train

    from tqdm.auto import tqdm

    from workbench.training.distributed import is_main

    # tqdm.write: a line said while a progress bar is drawn goes above the bar, not onto its end
    result = train(run_config(args), log=lambda s: tqdm.write(s, file=sys.stderr) if is_main() else None)
    if not is_main():  # under torchrun the first process reports the job
        return
    test = result.test_metrics
    if result.config.shots:
        kept = f", best at step {result.best_step} of {result.steps} (its weights kept)" if result.steps else ""
        print(f"dev accuracy (few-shot dev, {result.config.shots}/class): {result.dev_accuracy:.4f}{kept}")
    else:
        print("no labelled examples (shots 0): no dev split; the last step's weights kept")
    print(f"accuracy on {result.scope.describe()}: {test['accuracy']:.4f}  macro-F1: {test['macro_f1']:.4f}  "
          f"({result.eval_examples_per_s:.1f} rows/s)")
    print(f"trainable params: {result.trainable_params:,} ({100 * result.trainable_fraction:.3f}%)  "
          f"train seconds: {result.train_seconds:.1f}")
    print(f"MLflow run id: {result.run_id}")


def cmd_predict(args: argparse.Namespace) -> None:
    from workbench.recipes.predict import predict_run

    rows = predict_run(args.run, args.input, args.tracking_uri, args.out)
    if args.out:
        print(f"{len(rows)} predictions written to {args.out}")
    else:
        for r in rows:
            print("\t".join(str(v) for v in r.values()))


def _ints(text: str, flag: str) -> list[int]:
    try:
        return [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise ConfigError(f"{flag} {text!r}: expected comma-separated integers, e.g. 13,21,42") from None


def cmd_sweep(args: argparse.Namespace) -> None:
    from workbench.config import parse_param
    from workbench.runs.config import paths_with_role
    from workbench.recipes.sweep import SweepConfig, sweep

    run = run_config(args)
    # A flag or override the user typed for a searchable field fixes it for the study.
    searchable = set(paths_with_role("search", type(run.method)))
    params: dict[str, Any] = {k: v for k, v in typed_flags(args).items() if k in searchable}
    params.update(dict(parse_param(p) for p in args.param))
    fields: dict[str, Any] = {path.split(".", 1)[1]: value for path, value in vars(args).items()
                              if path.startswith("sweep.")}
    if "final_seeds" in fields:
        fields["final_seeds"] = [] if args.no_final else _ints(fields["final_seeds"], "--final-seeds")
    elif args.no_final:
        fields["final_seeds"] = []
    if fields.get("baseline") in ("", "none"):
        fields["baseline"] = None
    result = sweep(SweepConfig(run=run, params=params, **fields), log=lambda s: print(s, flush=True))
    print(f"study: {result.study.study_name} ({result.study.storage})  MLflow parent run: {result.study.parent_run_id}")


def cmd_compare(args: argparse.Namespace) -> None:
    from workbench.runs.config import top_level_fields
    from workbench.recipes.compare import CompareConfig, compare

    # task, model and shots are the comparison's own fields; every other typed flag is shared by all its runs
    overrides = {k: v for k, v in typed_flags(args).items() if k not in top_level_fields()}
    fields = {k: v for k, v in vars(args).items() if k in top_level_fields()}
    if "compare.methods" in vars(args):
        fields["methods"] = [m.strip() for m in args.__dict__["compare.methods"].split(",") if m.strip()]
    if "compare.seeds" in vars(args):
        fields["seeds"] = _ints(args.__dict__["compare.seeds"], "--seeds")
    if "compare.baseline" in vars(args):
        fields["baseline"] = args.__dict__["compare.baseline"]
    cfg = CompareConfig(overrides=overrides, storage=args.storage, use_sweeps=not args.no_sweeps,
                        reuse=not args.no_reuse, **fields)
    result = compare(cfg, log=lambda s: print(s, flush=True))
    print("\n" + result.table())
    print(f"\nMLflow parent run: {result.parent_run_id}")


def cmd_dashboard(args: argparse.Namespace) -> None:
    from workbench.recipes.mlflow_ui import print_links, serve

    serve(args.tracking_uri, args.host, args.port,
          on_ready=lambda base, uri: print_links(uri, base, args.open, log=lambda s: print(s, flush=True)))


def _sweep_flag(g, flag: str, help: str, **kw) -> None:
    g.add_argument(flag, dest=SWEEP_FLAGS[flag], default=argparse.SUPPRESS, help=help, **kw)


def register(sub) -> None:
    p = sub.add_parser("train", help="train one method on one few-shot split (one MLflow run)")
    add_method_flags(p)
    add_run_flags(p)
    p.add_argument("--config", help="a YAML run config (see experiments/); flags and overrides win over it")
    add_overrides(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("predict", help="label rows of a TSV file with a trained run's saved method")
    p.add_argument("--run", required=True, help="MLflow run id of a `workbench train` run")
    p.add_argument("--input", required=True, help="TSV with a header holding the task's text fields")
    p.add_argument("--out", help="write predictions here (TSV) instead of printing them")
    p.add_argument("--tracking-uri")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("sweep", help="Optuna study over a method's search space, then its best config against "
                                     "full fine-tuning on the protocol's seeds")
    add_method_flags(p)
    add_run_flags(p)
    p.add_argument("--config", help="a YAML run config: the base run of every trial")
    add_overrides(p)
    g = p.add_argument_group("sweep")
    _sweep_flag(g, "--trials", "finished (complete or pruned) trials the study should hold", type=int)
    _sweep_flag(g, "--timeout", "seconds after which no new trial starts", type=float)
    _sweep_flag(g, "--space", "search space YAML (default: the method's own; `workbench methods NAME` prints it)")
    g.add_argument("--param", action="append", default=[], metavar="NAME=SPEC",
                   help="change the space: lr=1e-5..1e-3:log, num_soft=2..16, prompt_encoder=lstm|mlp, "
                        "warmup_ratio=0.1 (fixed), name= (drop)")
    _sweep_flag(g, "--storage", "Optuna storage URL (default: $WORKBENCH_SWEEP_STORAGE or sqlite:///optuna.db; "
                                "postgresql://... to share a study between machines)")
    _sweep_flag(g, "--study-name", "default: <task>-<method>-<model>-k<shots>")
    _sweep_flag(g, "--resume", "continue an existing study (also how more workers join)", action="store_true")
    _sweep_flag(g, "--pruner", "early stopping of weak trials", choices=["median", "halving", "none"])
    _sweep_flag(g, "--max-failures", "stop after this many failed trials in a row", type=int)
    _sweep_flag(g, "--trial-eval-limit", "trials report the eval split on its first N rows only; the final runs "
                                         "use --eval-limit (default: all rows)", type=int)
    _sweep_flag(g, "--final-seeds", "seeds for the best config and the baseline (default 13,21,42,87,100)")
    g.add_argument("--no-final", action="store_true", help="stop after the study; no final runs, no comparison")
    _sweep_flag(g, "--baseline", "method to compare with ('none' for no comparison; default finetune)")
    _sweep_flag(g, "--baseline-trials", "trials of the baseline's own study (default: as many as --trials, the "
                                        "same step budget; 0: its defaults, untuned)", type=int)
    p.set_defaults(func=cmd_sweep)

    p = sub.add_parser("compare", help="several methods on the same few-shot splits (one parent MLflow run)")
    p.add_argument("--task", dest="task", default=argparse.SUPPRESS, help=field_of("task").metadata["help"])
    p.add_argument("--methods", dest="compare.methods", default=argparse.SUPPRESS,
                   help="comma-separated methods (default: finetune,prompt-finetune,icl)")
    p.add_argument("--model", dest="model", default=argparse.SUPPRESS, help=field_of("model").metadata["help"])
    p.add_argument("--shots", dest="shots", default=argparse.SUPPRESS, help=field_of("shots").metadata["help"])
    p.add_argument("--seeds", dest="compare.seeds", default=argparse.SUPPRESS,
                   help="comma-separated seeds (default: 13,21,42,87,100)")
    p.add_argument("--baseline", dest="compare.baseline", default=argparse.SUPPRESS,
                   help="the method every other is compared with (default: finetune when compared, else the first)")
    add_run_flags(p, only=("--max-steps", "--eval-every", "--eval-limit", "--template-id", "--template-file",
                           "--verbalizer-file", "--max-seq-length", "--tracking-uri", "--no-progress"))
    add_overrides(p)
    p.add_argument("--storage", help="Optuna storage to take each method's best config from (default: as sweep)")
    p.add_argument("--no-sweeps", action="store_true", help="use every method's defaults, even if it has a sweep")
    p.add_argument("--no-reuse", action="store_true", help="train again even when a matching run is in the store")
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("dashboard", help="MLflow's UI on 127.0.0.1 against the tracking store; prints links to the "
                                         "latest comparison (its charts, its compare view) once the UI answers")
    p.add_argument("--tracking-uri", help="default: $MLFLOW_TRACKING_URI or sqlite:///mlflow.db")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=5000)
    p.add_argument("--open", action="store_true",
                   help="once the UI answers, open the latest comparison's charts (else its compare view, else the "
                        "experiment) in a browser")
    p.set_defaults(func=cmd_dashboard)
