"""Few-shot CoT evaluation with and without the shared-prefix cache, in one process.

Every question of a few-shot CoT evaluation starts with the same demonstrations. The plain way (`model.generate`
on the full prompts, left-padded batches) reads them again for every question; the local generator computes
their keys and values once and starts every batch from them. Same model, same prompts, same batch size, greedy:
the script prints wall time, generated tokens/s, how many outputs are identical, and the ratio.

    python benchmarks/bench_prefix_cache.py --model smollm2-135m --task multiarith --questions 32 --batch-size 8

`--demos FILE` uses an Auto-CoT demo file (mode auto-cot) instead of the built-in Manual-CoT exemplars.
"""

from __future__ import annotations

import argparse
import time

import torch

from workbench.cot.demos import read_demo_file
from workbench.cot.prompts import first_prompt, manual_demos
from workbench.cot.tasks import load_cot_task
from workbench.instruct.backends import Decoding, LocalBackend
from workbench.recipes.cot import FEW_SHOT_STOP


def run(backend: LocalBackend, prompts: list[str], decoding: Decoding) -> tuple[list[str], float, int]:
    started = time.perf_counter()
    out = backend.complete(prompts, decoding)
    seconds = time.perf_counter() - started
    tokens = sum(len(backend.tokenizer(c.text, add_special_tokens=False)["input_ids"]) for c in out)
    return [c.text for c in out], seconds, tokens


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--task", default="multiarith")
    ap.add_argument("--demos", default=None, help="an Auto-CoT demo file (default: the Manual-CoT exemplars)")
    ap.add_argument("--questions", type=int, default=32)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: leave as is)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    task = load_cot_task(args.task)
    mode = "auto-cot" if args.demos else "manual-cot"
    demos = read_demo_file(args.demos, task.name) if args.demos else manual_demos(task.name, task.answer_type)
    prompts = [first_prompt(mode, q.question, task.answer_type, demos) for q in task.questions[:args.questions]]
    plain = LocalBackend.load(args.model, batch_size=args.batch_size, prefix_cache=False)
    cached = LocalBackend(plain.model, plain.tokenizer, name=args.model, batch_size=args.batch_size)
    prefix = cached._shared_prefix(prompts)
    prompt_tokens = [len(plain.tokenizer(p)["input_ids"]) for p in prompts]
    decoding = Decoding(max_tokens=args.max_tokens, temperature=0.0, stop=FEW_SHOT_STOP)
    print(f"{args.model}, {task.name} {mode}: {len(demos)} demonstrations, {len(prompts)} questions, batch "
          f"{args.batch_size}, up to {args.max_tokens} new tokens, greedy; prompts {min(prompt_tokens)}-"
          f"{max(prompt_tokens)} tokens, shared prefix {len(prefix[0]) if prefix else 0} tokens, "
          f"{torch.get_num_threads()} threads")
    run(cached, prompts[:2], Decoding(max_tokens=2, temperature=0.0))  # warm-up: first-call allocations
    base_out, base_s, base_tok = run(plain, prompts, decoding)
    ours_out, ours_s, ours_tok = run(cached, prompts, decoding)
    same = sum(a == b for a, b in zip(base_out, ours_out))
    print(f"{'':<28}{'wall s':>9}{'new tokens/s':>14}{'questions/s':>13}")
    print(f"{'plain model.generate':<28}{base_s:>9.1f}{base_tok / base_s:>14.1f}{len(prompts) / base_s:>13.2f}")
    print(f"{'shared-prefix cache (ours)':<28}{ours_s:>9.1f}{ours_tok / ours_s:>14.1f}{len(prompts) / ours_s:>13.2f}")
    print(f"speed-up {base_s / ours_s:.2f}x; identical outputs {same}/{len(prompts)}")


if __name__ == "__main__":
    main()
