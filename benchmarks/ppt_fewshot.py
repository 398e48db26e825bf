"""PPT on few-shot prompt tuning (issue: PPT): pre-train a prompt on the offline WikiText-2 text, then prompt-tune
tasks from the pre-trained prompt, from vocabulary init and from random init, on the same splits.

Every init reads a task in the same format: the template and label words that casting into the prompt's format
gives (`workbench.ppt.formats.cast_prompt`; for SST-2 in the `cls` format, the format's own words bad / good), passed
explicitly to every run, so the only difference between the rows is where the prompt starts.

    python benchmarks/ppt_fewshot.py --seeds 13,21,42,87,100 --prompt-tokens 20 --pretrain-steps 100 \\
        --steps 30 --eval-limit 200                                         # cls prompt: SST-2, SST-5
    python benchmarks/ppt_fewshot.py --format nsp --tasks rte --prompt-dir ppt_nsp --pretrain-examples 2000 ...

Run it from a scratch folder: the MLflow store (sqlite:///mlflow.db) and the prompt (--prompt-dir) are written
there. The pre-training resumes from its folder; every finished downstream run is appended to --out as one JSON
line, and a run already in --out is not run again, so a stopped benchmark resumes.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from workbench.runs.paired import mean_sd_text

# SST-2's own words are negative/positive; in the cls format every init reads the format's words for them.
SST2_WORDS = ["bad", "good"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--corpus", default=None, help="default: $WORKBENCH_DATA_DIR/wikitext2")
    ap.add_argument("--format", default="cls", help="the pre-training format (cls, nsp, nss, unified)")
    ap.add_argument("--prompt-dir", default="ppt_prompt")
    ap.add_argument("--prompt-tokens", type=int, default=20)
    ap.add_argument("--pretrain-steps", type=int, default=100)
    ap.add_argument("--pretrain-batch", type=int, default=16)
    ap.add_argument("--pretrain-examples", type=int, default=3000, help="examples to build (cls: sentences to label)")
    ap.add_argument("--pretrain-max-length", type=int, default=256, help="tokens per pre-training example")
    ap.add_argument("--tasks", default="sst2,sst5")
    ap.add_argument("--inits", default="ppt,vocab,random")
    ap.add_argument("--seeds", default="13,21,42,87,100")
    ap.add_argument("--shots", type=int, default=16)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--eval-every", type=int, default=10)
    ap.add_argument("--lr", type=float, default=3e-2)
    ap.add_argument("--eval-limit", type=int, default=200)
    ap.add_argument("--out", default="ppt_fewshot.jsonl")
    args = ap.parse_args()

    import os

    import workbench as wb
    from workbench.models import load_backbone
    from workbench.data import get_task
    from workbench.ppt.formats import cast_prompt, get_format
    from workbench.prompts import Verbalizer, load_verbalizer
    from workbench.recipes.ppt import PretrainConfig, pretrain_prompt

    corpus = args.corpus or str(Path(os.environ["WORKBENCH_DATA_DIR"]) / "wikitext2")
    start = time.perf_counter()
    pre = pretrain_prompt(PretrainConfig(corpus=corpus, out=args.prompt_dir, model=args.model, format=args.format,
                                  prompt_tokens=args.prompt_tokens, steps=args.pretrain_steps,
                                  batch_size=args.pretrain_batch, examples=args.pretrain_examples,
                                  max_seq_length=args.pretrain_max_length, progress=False),
                   log=lambda s: print(f"  [pretrain] {s}", flush=True))
    print(f"pre-training: {time.perf_counter() - start:.0f} s this call; {pre.examples} examples, held-out accuracy "
          f"{pre.heldout_accuracy:.4f}, {pre.examples_per_s:.1f} examples/s, labels {pre.labels}", flush=True)

    out = Path(args.out)
    done = {}
    if out.exists():
        for line in out.read_text().splitlines():
            row = json.loads(line)
            done[(row.get("format", "cls"), row["task"], row["init"], row["seed"])] = row
    fmt = get_format(args.format)
    backbone = load_backbone(args.model)
    for task in args.tasks.split(","):
        spec = get_task(task)
        own = Verbalizer.from_lines(SST2_WORDS, "ppt-bench:sst2") if task == "sst2" and fmt.name == "cls" \
            else load_verbalizer(spec.prompt_file("verbalizer"))
        template, verbalizer = cast_prompt(fmt, len(spec.text_fields), own, task)
        for seed in [int(s) for s in args.seeds.split(",")]:
            for init in args.inits.split(","):
                if (fmt.name, task, init, seed) in done:
                    continue
                # the cast template and words are given to every init; the PPT run is not cast a second time
                method = {"name": "prompt-tuning", "num_virtual_tokens": args.prompt_tokens, "cast": False,
                          "init": f"ppt:{args.prompt_dir}" if init == "ppt" else init}
                cfg = wb.RunConfig(task=task, model=args.model, shots=args.shots, seed=seed, method=method,
                                   prompt={"template": template, "verbalizer": verbalizer},
                                   train={"max_steps": args.steps, "eval_every": args.eval_every, "lr": args.lr},
                                   eval={"limit": args.eval_limit}, tracking={"save": "never", "progress": False})
                t0 = time.perf_counter()
                result = wb.train(cfg, backbone=backbone)
                row = {"format": fmt.name, "task": task, "init": init, "seed": seed, "test_accuracy": result.test_accuracy,
                       "dev_accuracy": result.dev_accuracy, "best_step": result.best_step,
                       "seconds": round(time.perf_counter() - t0, 1), "run_id": result.run_id,
                       "eval_rows": result.eval_rows}
                done[(fmt.name, task, init, seed)] = row
                with out.open("a") as f:
                    f.write(json.dumps(row) + "\n")
                print(f"  {task} {init:6s} seed {seed}: test {row['test_accuracy']:.4f} dev {row['dev_accuracy']:.4f} "
                      f"({row['seconds']} s)", flush=True)

    print(f"\nprompt tuning in the {fmt.name} format, {args.prompt_tokens} soft tokens, {args.shots} shots/class, {args.steps} steps, lr "
          f"{args.lr}; test accuracy on the first {args.eval_limit} rows, mean ± sd over seeds {args.seeds}")
    print("| task | init | test accuracy | dev accuracy | seeds |")
    print("|---|---|---|---|---|")
    for task in args.tasks.split(","):
        for init in args.inits.split(","):
            rows = [r for (f, t, i, _), r in done.items() if f == fmt.name and t == task and i == init]
            if rows:
                print(f"| {task} | {init} | {mean_sd_text([r['test_accuracy'] for r in rows])} | "
                      f"{mean_sd_text([r['dev_accuracy'] for r in rows])} | {len(rows)} |")


if __name__ == "__main__":
    main()
