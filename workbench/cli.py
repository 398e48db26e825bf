"""The `workbench` command line: a thin layer over the library; every command is a library call."""

from __future__ import annotations

import argparse
import json
import sys

from workbench.errors import WorkbenchError


def _add_train_args(p: argparse.ArgumentParser) -> None:
    from workbench.recipes.train import DEFAULT_MODEL

    p.add_argument("--method", default="prompt-finetune", help="adaptation method (see `workbench methods`)")
    p.add_argument("--task", default="sst2", help="built-in task name or a task YAML file")
    p.add_argument("--model", default=DEFAULT_MODEL, help="offline alias, local folder or Hugging Face id")
    p.add_argument("--shots", type=int, default=16, help="training examples per class (dev split: the same)")
    p.add_argument("--seed", type=int, default=13, help="few-shot split and training seed")
    p.add_argument("--template-id", type=int, default=0, help="line number (0-based) in the template file")
    p.add_argument("--template-file", help="template file (default: templates/<task>.txt)")
    p.add_argument("--verbalizer-file", help="verbalizer file (default: verbalizers/<task>.txt)")
    p.add_argument("--multi-token", choices=["first", "mean"], help="how to score label words of several tokens")
    p.add_argument("--max-steps", type=int, help="optimizer steps")
    p.add_argument("--lr", type=float, help="learning rate (default: the method's)")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--eval-every", type=int, help="evaluate on the few-shot dev split every N steps")
    p.add_argument("--max-seq-length", type=int)
    p.add_argument("--eval-split", help="split for the reported number (default: the task's, e.g. test for sst2)")
    p.add_argument("--eval-limit", type=int, help="evaluate on the first N rows only (smoke runs; logged)")
    p.add_argument("--head", choices=["verbalizer", "linear"], help="head of parameter-efficient methods")
    p.add_argument("--prompt-encoder", choices=["lstm", "mlp", "none"], help="p-tuning's prompt encoder")
    p.add_argument("--tune-backbone", action="store_true", default=None, help="p-tuning: train the backbone too")
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                   help="a method option, e.g. --option demos_per_class=0 --option calibrate=true")
    p.add_argument("--save", choices=["auto", "always", "never"],
                   help="save trained weights as a run artifact (auto: parameter-efficient methods only)")
    p.add_argument("--config", help="a YAML run config (experiments/*.yaml); command-line flags override it")
    p.add_argument("--tracking-uri", help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI or sqlite:///mlflow.db)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def _parse_option(text: str) -> tuple[str, object]:
    import yaml

    if "=" not in text:
        raise WorkbenchError(f"--option {text!r}: expected KEY=VALUE")
    key, value = text.split("=", 1)
    return key.strip(), yaml.safe_load(value)


def run_config_from_args(args: argparse.Namespace):
    import yaml

    from workbench.recipes.train import RunConfig

    raw: dict = {}
    if args.config:
        try:
            with open(args.config) as f:
                raw = yaml.safe_load(f) or {}
        except FileNotFoundError:
            raise WorkbenchError(f"{args.config}: config file not found") from None
    flags = {"method": args.method, "task": args.task, "model": args.model, "shots": args.shots, "seed": args.seed,
             "template_id": args.template_id, "template_file": args.template_file,
             "verbalizer_file": args.verbalizer_file, "multi_token": args.multi_token, "max_steps": args.max_steps,
             "lr": args.lr, "batch_size": args.batch_size, "eval_every": args.eval_every,
             "max_seq_length": args.max_seq_length, "eval_split": args.eval_split, "eval_limit": args.eval_limit, "save": args.save, "tracking_uri": args.tracking_uri}
    for key, value in flags.items():
        # a flag left at its default does not override the config file
        if value is not None and (key not in raw or value != _default_of(key)):
            raw[key] = value
    options = dict(raw.get("method_options") or {})
    shorthands = {"head": args.head, "prompt_encoder": args.prompt_encoder, "tune_backbone": args.tune_backbone}
    options.update({k: v for k, v in shorthands.items() if v is not None})
    options.update(dict(_parse_option(o) for o in args.option))
    raw["method_options"] = options
    raw["progress"] = not args.no_progress
    return RunConfig.from_dict(raw, args.config or "command line")


def _default_of(key: str):
    from workbench.recipes.train import RunConfig

    return getattr(RunConfig(), key, None)


def cmd_train(args: argparse.Namespace) -> None:
    from workbench.recipes.train import run

    result = run(run_config_from_args(args))
    test = result.test_metrics
    print(f"dev accuracy (few-shot dev, {result.config.shots}/class): "
          f"{result.dev_accuracy:.4f}")
    print(f"{result.eval_split} accuracy: {test['accuracy']:.4f}  macro-F1: {test['macro_f1']:.4f}")
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


def cmd_models(args: argparse.Namespace) -> None:
    from workbench.models import ALIASES, pull
    from workbench.models.aliases import alias_dir, get_alias

    if args.action == "list":
        for a in ALIASES.values():
            state = "pulled" if (alias_dir(a.alias) / "hf" / "workbench-identity.json").exists() else "not pulled"
            print(f"{a.alias:14s} {a.kind:8s} {state:11s} {a.description}")
    elif args.action == "pull":
        for name in args.names or list(ALIASES):
            print(f"{name}: {pull(name, force=args.force)}")
    elif args.action == "show":
        from workbench.models import resolve_model

        for name in args.names:
            ref = resolve_model(name)
            info = {"name": ref.name, "path": ref.path, "kind": ref.kind.value, "identity": ref.identity}
            if name in ALIASES:
                info["wheels"] = list(get_alias(name).wheels)
            print(json.dumps(info, indent=2))


def cmd_tasks(args: argparse.Namespace) -> None:
    from workbench.data import BUILTIN_TASKS, get_task

    if args.action == "list":
        for t in BUILTIN_TASKS.values():
            print(f"{t.name:6s} {t.num_classes} classes  reported on {t.eval_split:4s}  {t.description}")
        return
    for name in args.names:
        t = get_task(name)
        counts = {}
        for split in t.files:
            try:
                counts[split] = len(t.load_split(split))
            except WorkbenchError as e:
                counts[split] = f"unavailable ({e})"
        print(json.dumps({"name": t.name, "text_fields": t.text_fields, "label_names": t.label_names,
                          "metric": t.metric, "eval_split": t.eval_split, "rows": counts, "source": t.source},
                         indent=2))


def cmd_methods(args: argparse.Namespace) -> None:
    import dataclasses

    from workbench.adaptation import METHODS

    for m in METHODS.values():
        opts = ", ".join(f"{f.name}={f.default!r}" for f in dataclasses.fields(m.options)) or "-"
        print(f"{m.name:16s} {m.summary}\n{'':16s} options: {opts}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="workbench", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train one method on one few-shot split (one MLflow run)")
    _add_train_args(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("predict", help="label rows of a TSV file with a trained run's saved method")
    p.add_argument("--run", required=True, help="MLflow run id of a `workbench train` run")
    p.add_argument("--input", required=True, help="TSV with a header holding the task's text fields")
    p.add_argument("--out", help="write predictions here (TSV) instead of printing them")
    p.add_argument("--tracking-uri")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("models", help="offline model aliases")
    p.add_argument("action", choices=["list", "pull", "show"])
    p.add_argument("names", nargs="*")
    p.add_argument("--force", action="store_true", help="pull again even if cached")
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("tasks", help="built-in and user tasks")
    p.add_argument("action", choices=["list", "show"])
    p.add_argument("names", nargs="*")
    p.set_defaults(func=cmd_tasks)

    p = sub.add_parser("methods", help="list adaptation methods and their options")
    p.set_defaults(func=cmd_methods)

    from workbench.instruct.cli import register as register_instruct
    from workbench.sweeps.cli import register as register_sweeps

    register_sweeps(sub)
    register_instruct(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except WorkbenchError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
