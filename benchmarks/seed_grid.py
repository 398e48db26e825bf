"""Few-shot accuracy of run configs over seeds, without a tracking store: the measurements behind the defaults
of the fine-tuning baseline (RESULTS.md, "A fine-tuning baseline worth beating").

    python benchmarks/seed_grid.py --seeds 13,21,42,87,100 --out grid.jsonl \\
        "finetune" "finetune train.lr=2e-5 method.head_lr=1e-3" "p-tuning"

Each config is a method name and dotted overrides, on SST-2 16-shot with the default model unless overridden
(`task=`, `model=`, `shots=`). Every run goes through the same `prepare` and `fit_and_score` as `workbench
train`, only without MLflow, so it runs on a bare GPU machine. Finished runs are appended to --out and skipped
when the script is run again. The table gives accuracy per seed, mean ± sd, the lowest seed and, for every
config after the first, the paired difference against the first with its 95% t-interval.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

from workbench.runs import RunConfig
from workbench.config.space import parse_scalar
from workbench.runs import fit_and_score, prepare
from workbench.runs.paired import paired_difference


def parse_config(text: str) -> tuple[str, dict]:
    method, *pairs = text.split()
    overrides = {}
    for pair in pairs:
        key, _, value = pair.partition("=")
        overrides[key] = parse_scalar(value)
    return method, overrides


def run_one(method: str, overrides: dict, seed: int, eval_limit: int | None) -> dict:
    cfg = RunConfig(method=method, seed=seed, tracking={"progress": False})
    cfg = cfg.with_overrides({**({"eval.limit": eval_limit} if eval_limit else {}), **overrides})
    start = time.perf_counter()
    out = fit_and_score(prepare(cfg), cfg)
    return {"test": out.test_metrics["accuracy"], "dev": out.dev_accuracy, "rows": len(out.eval_rows),
            "best_step": out.fit.best_step if out.fit else 0, "seconds": time.perf_counter() - start}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("configs", nargs="+", help="'METHOD key=value ...'")
    ap.add_argument("--seeds", default="13,21,42,87,100")
    ap.add_argument("--eval-limit", type=int, default=None)
    ap.add_argument("--out", type=Path, default=Path("seed_grid.jsonl"))
    args = ap.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    done = {}
    if args.out.exists():
        for line in args.out.read_text().splitlines():
            if line.strip():
                r = json.loads(line)
                done[(r["config"], r["seed"], r["eval_limit"])] = r
    for text in args.configs:
        method, overrides = parse_config(text)
        for seed in seeds:
            key = (text, seed, args.eval_limit)
            if key in done:
                continue
            r = {"config": text, "seed": seed, "eval_limit": args.eval_limit,
                 **run_one(method, overrides, seed, args.eval_limit)}
            done[key] = r
            with args.out.open("a") as f:
                f.write(json.dumps(r) + "\n")
            print(f"{text} | seed {seed}: test {r['test']:.4f} dev {r['dev']:.3f} best step {r['best_step']} "
                  f"({r['seconds']:.1f}s)", file=sys.stderr, flush=True)

    print("| config | " + " | ".join(f"seed {s}" for s in seeds) + " | mean ± sd | min | vs first (95% paired t) |")
    print("|---|" + "---|" * len(seeds) + "---|---|---|")
    first = None
    for text in args.configs:
        acc = {s: done[(text, s, args.eval_limit)]["test"] for s in seeds}
        vals = list(acc.values())
        sd = statistics.stdev(vals) if len(vals) > 1 else 0.0
        diff = paired_difference(acc, first).describe() if first is not None else "-"
        print(f"| `{text}` | " + " | ".join(f"{100 * v:.1f}" for v in vals)
              + f" | {100 * statistics.mean(vals):.1f} ± {100 * sd:.1f} | {100 * min(vals):.1f} | {diff} |")
        first = first if first is not None else acc


if __name__ == "__main__":
    main()
