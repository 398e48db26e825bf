"""Verbalizer head vs reading label words out of full-vocabulary logits, in one process.

Evaluation throughput (examples/s) and training step time (forward + backward + AdamW step, all
weights, i.e. prompt-based fine-tuning) on real SST-2 rows with an offline causal LM.

    python benchmarks/bench_verbalizer_head.py --model smollm2-135m --batch-size 8 --eval-examples 256

`--rows pool --batch-size 32 --train-steps 0` measures what PET's unlabelled pool costs: scoring rows of the training
split (the pool is drawn from it), batched by length at the evaluation batch size, as a PET job scores them.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from workbench.models import load_backbone
from workbench.prompts import PromptEncoder, Verbalizer, collate, load_templates
from workbench.prompts.verbalizer import label_word_ids
from workbench.resources import template_file as default_template_file
from workbench.data import get_task
from workbench.training import PromptClassifier, VerbalizerHead, predict


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--eval-examples", type=int, default=256)
    ap.add_argument("--train-steps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: leave as is)")
    ap.add_argument("--rows", choices=("dev", "pool"), default="dev",
                    help="dev: SST-2 dev sentences; pool: training-split rows, as PET's unlabelled pool")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    task = get_task("sst2")
    bb = load_backbone(args.model)
    words = label_word_ids(Verbalizer.from_lines(["negative", "positive"]), bb.tokenizer)
    enc = PromptEncoder(load_templates(default_template_file("sst2"))[0], bb.tokenizer, bb.kind, task.text_fields, 128)
    rows = task.load_split("dev" if args.rows == "dev" else "train")[: args.eval_examples]
    data = [enc.encode(e) for e in rows]
    pad = bb.tokenizer.pad_token_id
    mean_len = statistics.mean(len(e.input_ids) for e in data)
    print(f"model {args.model} ({bb.kind.value}, vocab {bb.model.config.vocab_size}), {len(data)} SST-2 {args.rows} rows, "
          f"mean length {mean_len:.1f} tokens, batch {args.batch_size}, torch threads {torch.get_num_threads()}")

    heads = {"full-vocab logits": VerbalizerHead(words.token_ids, words.class_matrix, full_vocab=True),
             "verbalizer head": VerbalizerHead(words.token_ids, words.class_matrix)}
    results: dict[str, dict[str, float]] = {}
    for name, head in heads.items():
        model = PromptClassifier(bb.model, head)
        predict(model, data[: args.batch_size], pad, args.batch_size)  # warm-up
        t0 = time.perf_counter()
        scores = predict(model, data, pad, args.batch_size)
        eval_eps = len(data) / (time.perf_counter() - t0)

        opt = torch.optim.AdamW(bb.model.parameters(), lr=0.0)  # lr 0: time the step, keep the weights
        batch = collate(data[: args.batch_size], pad)
        times = []
        for i in range(args.train_steps + 1 if args.train_steps else 0):
            t0 = time.perf_counter()
            loss = torch.nn.functional.cross_entropy(model(batch), batch["labels"])
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            if i:  # the first step allocates optimizer state
                times.append(time.perf_counter() - t0)
        del opt
        results[name] = {"eval_eps": eval_eps, "step_s": statistics.median(times) if times else float("nan"), "acc": float(
            (scores.argmax(-1) == torch.tensor([e.label for e in data]).numpy()).mean())}
        step = f"train step {results[name]['step_s']:.3f} s   " if times else ""
        print(f"{name:18s} eval {eval_eps:7.1f} examples/s   {step}zero-shot acc {results[name]['acc']:.3f}")
    base, ours = results["full-vocab logits"], results["verbalizer head"]
    step = f"training step {base['step_s'] / ours['step_s']:.2f}x faster " if args.train_steps else ""
    print(f"ratio: evaluation {ours['eval_eps'] / base['eval_eps']:.2f}x faster, {step}(same predictions: "
          f"{abs(base['acc'] - ours['acc']) < 1e-9})")


if __name__ == "__main__":
    main()
