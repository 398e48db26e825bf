"""PET and iPET on SST-2 (issue: PET and iPET): per seed, one `pet` job and one `ipet` job on the same split and pool.

The `ipet` job's generation 0 is the `pet` job's models (found again by their hash, not retrained), so per seed the
script reports, all on the same evaluation rows:
- the best single PVP: the generation-0 model with the best few-shot dev accuracy (a prompt-finetune model);
- the PET ensemble (generation 0) and the classifier distilled from it;
- the iPET ensemble after each later generation and the classifier distilled from the last;
and zero-shot iPET (no labelled shots) on the seeds given to --zero-shot-seeds.

    python benchmarks/pet_sst2.py --seeds 13,21,42 --patterns 0,1,2 --steps 20 --eval-limit 300

Run it from a scratch folder: the MLflow store (sqlite:///mlflow.db by default) is written there. Finished models
are reused when the script is run again, so a stopped benchmark resumes. Each seed's numbers are appended to
--out as one JSON line as soon as they exist.
"""

from __future__ import annotations

import argparse
import json
import time

from workbench.runs.paired import mean_sd_text


def metrics_by_step(client, run_id: str, name: str) -> list[float]:
    return [m.value for m in sorted(client.get_metric_history(run_id, name), key=lambda m: m.step)]


def job(args, seed: int, method: str, shots: int, **options) -> dict:
    import mlflow

    import workbench as wb

    cfg = wb.RunConfig(task="sst2", model=args.model, shots=shots, seed=seed,
                       method={"name": method, "patterns": args.patterns, "unlabeled": args.unlabeled,
                               "distill_steps": args.distill_steps, "distill_batch_size": args.distill_batch,
                               **options},
                       train={"max_steps": args.steps, "eval_every": args.eval_every},
                       eval={"limit": args.eval_limit}, tracking={"save": "never", "progress": False})
    start = time.perf_counter()
    result = wb.train(cfg, log=lambda line: print(f"  [{method} s{seed} k{shots}] {line}", flush=True))
    client = mlflow.MlflowClient()
    run = result.run_id
    return {"run_id": run, "seconds": round(time.perf_counter() - start, 1),
            "ensemble": metrics_by_step(client, run, "ensemble/test_accuracy"),
            "best_single": metrics_by_step(client, run, "members/test_accuracy_best_dev"),
            "members_mean": metrics_by_step(client, run, "members/test_accuracy_mean"),
            "label_accuracy": metrics_by_step(client, run, "ipet/label_accuracy"),
            "distilled": result.test_accuracy}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--seeds", default="13,21,42")
    ap.add_argument("--zero-shot-seeds", default="13")
    ap.add_argument("--shots", type=int, default=16)
    ap.add_argument("--patterns", default="0,1,2")
    ap.add_argument("--steps", type=int, default=20, help="training steps of every PVP model")
    ap.add_argument("--eval-every", type=int, default=10)
    ap.add_argument("--eval-limit", type=int, default=300)
    ap.add_argument("--unlabeled", type=int, default=2000)
    ap.add_argument("--generations", type=int, default=2)
    ap.add_argument("--distill-steps", type=int, default=40)
    ap.add_argument("--distill-batch", type=int, default=8)
    ap.add_argument("--most-likely", type=int, default=100, help="zero-shot iPET, generation 0 (PET's README)")
    ap.add_argument("--out", default="pet_sst2.jsonl")
    args = ap.parse_args()

    rows = []
    for seed in [int(s) for s in args.seeds.split(",") if s]:
        pet = job(args, seed, "pet", args.shots)
        ipet = job(args, seed, "ipet", args.shots, generations=args.generations)
        row = {"seed": seed, "shots": args.shots, "best_single": pet["best_single"][0], "pet": pet["ensemble"][0],
               "pet_distilled": pet["distilled"], "ipet": ipet["ensemble"][1:], "ipet_distilled": ipet["distilled"],
               "label_accuracy": ipet["label_accuracy"], "members_mean": pet["members_mean"][0],
               "seconds": pet["seconds"] + ipet["seconds"], "runs": [pet["run_id"], ipet["run_id"]]}
        rows.append(row)
        with open(args.out, "a") as f:
            f.write(json.dumps(row) + "\n")
        print(json.dumps(row), flush=True)
    zero = []
    for seed in [int(s) for s in args.zero_shot_seeds.split(",") if s]:
        z = job(args, seed, "ipet", 0, generations=args.generations, most_likely=args.most_likely)
        row = {"seed": seed, "shots": 0, "zero_shot_ensemble": z["ensemble"], "ipet_distilled": z["distilled"],
               "label_accuracy": z["label_accuracy"], "seconds": z["seconds"], "runs": [z["run_id"]]}
        zero.append(row)
        with open(args.out, "a") as f:
            f.write(json.dumps(row) + "\n")
        print(json.dumps(row), flush=True)

    print(f"\nSST-2, {args.shots} shots per class, accuracy on the first {args.eval_limit} test rows, seeds {args.seeds}")
    if rows:
        print("| model | accuracy (mean ± sd) |\n|---|---|")
        print(f"| best single PVP (prompt-finetune, chosen by dev) | {mean_sd_text([r['best_single'] for r in rows])} |")
        print(f"| mean of the single PVPs | {mean_sd_text([r['members_mean'] for r in rows])} |")
        print(f"| PET ensemble | {mean_sd_text([r['pet'] for r in rows])} |")
        print(f"| PET distilled classifier | {mean_sd_text([r['pet_distilled'] for r in rows])} |")
        for g in range(args.generations - 1):
            print(f"| iPET ensemble, generation {g + 1} | {mean_sd_text([r['ipet'][g] for r in rows])} |")
        print(f"| iPET distilled classifier | {mean_sd_text([r['ipet_distilled'] for r in rows])} |")
    for z in zero:
        gens = ", ".join(f"g{g}: {a:.4f}" for g, a in enumerate(z["zero_shot_ensemble"]))
        print(f"zero-shot iPET, seed {z['seed']}: ensemble {gens}; distilled {z['ipet_distilled']:.4f}")


if __name__ == "__main__":
    main()
