"""Overhead of Optuna plus MLflow per sweep trial, against the trial's training time.

    python benchmarks/bench_sweep_overhead.py --model smollm2-135m --trials 2 --max-steps 6
    python benchmarks/bench_sweep_overhead.py --tiny --trials 4 --max-steps 10

Every call into MLflow (the fluent API, the client, the run tracker's table/plot logging) and into
Optuna (storage, sampler, pruner) is timed while a real sweep runs; nested calls count once. The
overhead of a trial is that time spent during the trial; the baseline is the same trial's
`train/seconds` (the trainer's own clock). The sweep's one-off work (opening the study, the parent
run, the plots at the end) is reported apart. Target: under 2% per trial.
"""

from __future__ import annotations

import argparse
import functools
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SPENT: dict[str, float] = defaultdict(float)
BY_CALL: dict[str, float] = defaultdict(float)
_depth = [0]


def timed(category: str, fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        if _depth[0]:
            return fn(*args, **kwargs)
        _depth[0] += 1
        start = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            SPENT[category] += time.perf_counter() - start
            BY_CALL[f"{category}: {fn.__qualname__}"] += time.perf_counter() - start
            _depth[0] -= 1
    return wrapper


def instrument() -> None:
    import mlflow
    import optuna

    from workbench.tracking import RunTracker

    for name in ("start_run", "end_run", "log_metrics", "log_metric", "log_params", "log_param", "log_text",
                 "log_dict", "log_figure", "set_tags", "set_tag", "set_experiment", "set_tracking_uri",
                 "search_runs", "active_run"):
        setattr(mlflow, name, timed("mlflow", getattr(mlflow, name)))
    for name in ("__enter__", "__exit__", "log_config", "log_metrics", "log_dict", "log_predictions",
                 "log_confusion", "log_json", "set_tags"):
        if hasattr(RunTracker, name):
            setattr(RunTracker, name, timed("mlflow", getattr(RunTracker, name)))
    for name in ("set_tag", "set_terminated", "delete_tag", "get_run", "search_experiments"):
        setattr(mlflow.MlflowClient, name, timed("mlflow", getattr(mlflow.MlflowClient, name)))
    storage = optuna.storages.RDBStorage
    for name in dir(storage):
        if not name.startswith("_") and callable(getattr(storage, name)) and name != "record_heartbeat":
            setattr(storage, name, timed("optuna", getattr(storage, name)))
    # the heartbeat is written by a background thread while the trial trains: it adds no wall time
    for cls in (optuna.samplers.TPESampler, optuna.samplers.RandomSampler):
        for name in ("infer_relative_search_space", "sample_relative", "sample_independent", "before_trial",
                     "after_trial"):
            setattr(cls, name, timed("optuna", getattr(cls, name)))
    for cls in (optuna.pruners.MedianPruner, optuna.pruners.NopPruner):
        cls.prune = timed("optuna", cls.prune)


def tiny_model(folder: Path) -> str:
    import torch
    from transformers import BertConfig, BertForMaskedLM

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from conftest import _wordpiece_tokenizer

    tok = _wordpiece_tokenizer()
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=len(tok), hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=128, max_position_embeddings=128)
    BertForMaskedLM(cfg).save_pretrained(folder)
    tok.save_pretrained(folder)
    (folder / "v.txt").write_text("bad, terrible\ngreat, good\n")
    return str(folder)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--tiny", action="store_true", help="a small random BERT built here instead of --model")
    ap.add_argument("--method", default="prompt-finetune")
    ap.add_argument("--trials", type=int, default=2)
    ap.add_argument("--max-steps", type=int, default=6)
    ap.add_argument("--eval-every", type=int, default=2)
    ap.add_argument("--eval-limit", type=int, default=32)
    ap.add_argument("--shots", type=int, default=16)
    ap.add_argument("--param", action="append", default=[], help="search-space override, e.g. batch_size=4")
    args = ap.parse_args()

    import optuna

    import workbench as wb
    from workbench.recipes import sweep as sweep_recipe
    from workbench.sweeps import run_study

    work = Path(tempfile.mkdtemp(prefix="wb-bench-sweep-"))
    settings = {"train": {"max_steps": args.max_steps, "eval_every": args.eval_every}, "eval": {"limit": args.eval_limit},
                "tracking": {"uri": f"sqlite:///{work / 'mlflow.db'}"}}
    model = args.model
    if args.tiny:
        model = tiny_model(work / "tiny")
        settings["prompt"] = {"template_id": 1, "verbalizer": str(Path(model) / "v.txt")}
    instrument()

    per_trial: list[dict] = []
    cfg = wb.SweepConfig(run=wb.RunConfig(task="sst2", method=args.method, model=model, shots=args.shots, **settings),
                         trials=args.trials, storage=f"sqlite:///{work / 'optuna.db'}", pruner="none",
                         params=dict(p.split("=", 1) for p in args.param), trial_eval_limit=args.eval_limit)
    plan = sweep_recipe.plan(cfg)
    inner = sweep_recipe.objective(plan.base)

    def objective(params, trial):
        before = dict(SPENT)
        start = time.perf_counter()
        try:
            return inner(params, trial)
        finally:
            row = {k: SPENT[k] - before.get(k, 0.0) for k in ("mlflow", "optuna")}
            row.update(number=trial.number, wall=time.perf_counter() - start)
            per_trial.append(row)

    # Optuna's ask/tell around the objective happen outside it: time the whole loop too.
    start = time.perf_counter()
    result = run_study(plan.spec, objective, log=lambda s: print(s, flush=True))
    total = time.perf_counter() - start

    study = optuna.load_study(study_name=result.study_name, storage=cfg.storage)
    train_s = {t.number: t.user_attrs.get("result", {}).get("train_seconds", 0.0) for t in study.trials}
    trial_wall = {t.number: (t.datetime_complete - t.datetime_start).total_seconds() for t in study.trials}
    print(f"\nmodel {model if not args.tiny else 'tiny random BERT (hidden 64, 2 layers)'}, method {args.method} "
          f"{' '.join(args.param)}, "
          f"{args.max_steps} steps, eval every {args.eval_every} (dev {2 * args.shots} rows), "
          f"{args.eval_limit} test rows\n")
    print("| trial | train s | trial wall s | MLflow s | Optuna s | overhead / train |")
    print("|---|---|---|---|---|---|")
    ratios = []
    for row in per_trial:
        n = row["number"]
        over = row["mlflow"] + row["optuna"]
        ratios.append(over / train_s[n])
        print(f"| {n} | {train_s[n]:.2f} | {trial_wall[n]:.2f} | {row['mlflow']:.3f} | {row['optuna']:.3f} | "
              f"{100 * ratios[-1]:.2f}% |")
    in_trials = sum(r["mlflow"] + r["optuna"] for r in per_trial)
    outside = SPENT["mlflow"] + SPENT["optuna"] - in_trials
    print(f"\nper trial: overhead {statistics.mean(r['mlflow'] + r['optuna'] for r in per_trial):.3f} s "
          f"= {100 * statistics.mean(ratios):.2f}% of training time (mean over {len(ratios)} trials)")
    print(f"per sweep, once (study, parent run, ask/tell between trials, plots): {outside:.2f} s; "
          f"whole sweep {total:.1f} s for {sum(train_s.values()):.1f} s of training")
    print("\nwhere the time goes (whole sweep, s): " + ", ".join(
        f"{k} {v:.2f}" for k, v in sorted(BY_CALL.items(), key=lambda kv: -kv[1])[:8]))


if __name__ == "__main__":
    main()
