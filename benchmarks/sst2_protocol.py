"""The few-shot protocol on SST-2: methods x seeds on the same splits, full test set, mean and std.

    python benchmarks/sst2_protocol.py --methods finetune,prompt-finetune,icl-zero,icl-zero-cal --seeds 13,21,42

`icl-zero` is zero-shot in-context (no demonstrations), `icl-zero-cal` the same with contextual
calibration, `icl-demo` one demonstration per class. Every run is an MLflow run; the table is printed.
"""

from __future__ import annotations

import argparse
import statistics

from workbench.models import load_backbone
import workbench as wb
from workbench.config import DEFAULT_MODEL

VARIANTS = {  # name -> the run config's `method` (a method name, or a mapping with its options)
    "finetune": "finetune",
    "prompt-finetune": "prompt-finetune",
    "icl-zero": {"name": "icl", "demos_per_class": 0},
    "icl-zero-cal": {"name": "icl", "demos_per_class": 0, "calibrate": True},
    "icl-demo": {"name": "icl", "demos_per_class": 1},
    "icl-demo-cal": {"name": "icl", "demos_per_class": 1, "calibrate": True},
    "prompt-tuning": "prompt-tuning",
    "p-tuning": "p-tuning",
    "prefix-tuning": "prefix-tuning",
    "p-tuning-v2": "p-tuning-v2",
    "lora": "lora",
    # SmolLM2 (Llama) has no bias terms: BitFit trains its RMSNorm gains instead.
    "bitfit": {"name": "bitfit", "include_norms": True},
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--task", default="sst2")
    ap.add_argument("--model", default=DEFAULT_MODEL)
    ap.add_argument("--methods", default="finetune,prompt-finetune,icl-zero,icl-zero-cal")
    ap.add_argument("--seeds", default="13,21,42")
    ap.add_argument("--shots", type=int, default=16)
    ap.add_argument("--max-steps", type=int)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = ap.parse_args()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    seeds = [int(s) for s in args.seeds.split(",")]
    table = []
    for name in args.methods.split(","):
        accs, secs, frac = [], [], 0.0
        for seed in seeds:
            backbone = load_backbone(args.model)  # fresh weights: full fine-tuning changes them
            cfg = wb.RunConfig(task=args.task, model=args.model, shots=args.shots, seed=seed, method=VARIANTS[name],
                               tracking={"progress": False})
            if args.max_steps:
                cfg = cfg.with_overrides({"train.max_steps": args.max_steps})
            r = wb.train(cfg, backbone=backbone)
            accs.append(r.test_metrics["accuracy"])
            secs.append(r.train_seconds)
            frac = r.trainable_fraction
            print(f"{name:16s} seed {seed:3d}: dev {r.dev_accuracy:.3f}  {r.eval_split} {accs[-1]:.4f}  "
                  f"train {r.train_seconds:.0f}s  run {r.run_id}", flush=True)
        sd = statistics.stdev(accs) if len(accs) > 1 else 0.0
        table.append((name, statistics.mean(accs), sd, frac, statistics.mean(secs)))
    print(f"\n| method | {args.task} test accuracy (mean ± sd, seeds {args.seeds}) | trainable fraction | train s |")
    print("|---|---|---|---|")
    for name, m, sd, frac, s in table:
        print(f"| {name} | {100 * m:.1f} ± {100 * sd:.1f} | {frac:.4%} | {s:.0f} |")


if __name__ == "__main__":
    main()
