"""Which offline alias should be the default classification model? SST-2 dev (872 rows) accuracy
zero-shot (raw and calibrated) and after 16-shot prompt-based fine-tuning (seed 13), and the
training step time (batch 8, all weights), for each causal alias.

    python benchmarks/choose_model.py --models smollm2-135m,gemma3-270m
"""

from __future__ import annotations

import argparse

from workbench.models import load_backbone
import workbench as wb


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="smollm2-135m,gemma3-270m")
    ap.add_argument("--max-steps", type=int, default=30)
    ap.add_argument("--eval-limit", type=int, help="first N dev rows only (default: all 872)")
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    common = {"task": "sst2", "shots": 16, "seed": 13, "eval": {"split": "dev", "limit": args.eval_limit},
              "tracking": {"progress": False, "experiment": "choose-model"}}
    print("| model | zero-shot dev | zero-shot calibrated dev | 16-shot prompt-finetune dev | train step s |")
    print("|---|---|---|---|---|")
    for name in args.models.split(","):
        bb = load_backbone(name)
        zs = wb.train(wb.RunConfig(method={"name": "icl", "demos_per_class": 0}, model=name, **common), backbone=bb)
        cal = wb.train(wb.RunConfig(method={"name": "icl", "demos_per_class": 0, "calibrate": True}, model=name,
                                    **common), backbone=bb)
        ft = wb.train(wb.RunConfig(method="prompt-finetune", model=name, train={"max_steps": args.max_steps},
                                   **common), backbone=bb)
        step = ft.train_seconds / args.max_steps
        print(f"| {name} | {100 * zs.test_metrics['accuracy']:.1f} | {100 * cal.test_metrics['accuracy']:.1f} | "
              f"{100 * ft.test_metrics['accuracy']:.1f} | {step:.2f} |", flush=True)


if __name__ == "__main__":
    main()
