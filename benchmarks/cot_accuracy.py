"""Accuracy of the CoT modes on the arithmetic sets with the offline models: zero-shot, zero-shot-CoT,
manual-CoT and auto-CoT (demonstrations built from the same model's Zero-shot-CoT rationales on the evaluated
questions, as Auto-CoT builds them from the test set's log).

    python benchmarks/cot_accuracy.py --models smollm2-135m,gemma3-270m --tasks multiarith,gsm8k --limit 200

Run it from a scratch folder: it writes the predictions, demo files and `cot_accuracy.jsonl` there, and every
piece resumes (a rerun goes on where a stopped one was). MLflow runs go to ./mlflow.db (experiment `cot`).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from workbench.instruct.backends import LocalBackend
from workbench.recipes.cot import CotDemosConfig, CotEvalConfig, build_demos, evaluate_cot

MODES = ("zero-shot", "zero-shot-cot", "manual-cot", "auto-cot")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="smollm2-135m,gemma3-270m")
    ap.add_argument("--tasks", default="multiarith,gsm8k")
    ap.add_argument("--modes", default=",".join(MODES))
    ap.add_argument("--limit", type=int, default=200)
    ap.add_argument("--max-tokens", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=8)
    args = ap.parse_args()
    results = Path("cot_accuracy.jsonl")
    done = {(r["model"], r["task"], r["mode"]) for r in map(json.loads, results.read_text().splitlines())} \
        if results.is_file() else set()
    for model in args.models.split(","):
        backend = None
        for task in args.tasks.split(","):
            for mode in args.modes.split(","):
                if (model, task, mode) in done:
                    continue
                backend = backend or LocalBackend.load(model, batch_size=args.batch_size)
                demos = ""
                if mode == "auto-cot":
                    demos = f"demos_{model}_{task}.json"
                    built = build_demos(CotDemosConfig(task=task, out=demos, limit=args.limit,
                                                       max_tokens=args.max_tokens), backend, log=print)
                    print(f"{model} {task}: {len(built.demos)} demonstrations, clusters {built.clusters}")
                cfg = CotEvalConfig(task=task, mode=mode, demos=demos, limit=args.limit, max_tokens=args.max_tokens,
                                    out=f"pred_{model}_{task}_{mode}.jsonl")
                r = evaluate_cot(cfg, backend, log=print)
                row = {"model": model, "task": task, "mode": mode, "accuracy": r.accuracy, "correct": r.correct,
                       "questions": r.total, "seconds": round(r.seconds, 1), "run_id": r.run_id}
                with open(results, "a") as f:
                    f.write(json.dumps(row) + "\n")
    rows = [json.loads(line) for line in results.read_text().splitlines()]
    print(f"\n{'model':<14}{'task':<12}{'mode':<15}{'accuracy':>9}{'correct':>9}{'seconds':>9}")
    for r in rows:
        print(f"{r['model']:<14}{r['task']:<12}{r['mode']:<15}{r['accuracy']:>9.3f}{r['correct']:>5}/{r['questions']:<3}"
              f"{r['seconds']:>9}")


if __name__ == "__main__":
    main()
