"""Chunked language-model loss vs the plain Hugging Face loss: peak memory and speed of a training step.

One training step is forward + backward of the mean next-token loss over the labelled tokens of a fixed batch
(seeded random token ids; the first half of each row is labelled -100 like a prompt, rows are right-padded to
slightly different lengths). Two variants, same model, same batch, same labels:

- plain: `model(input_ids=..., attention_mask=..., labels=...).loss`, what a user would write; it builds the
  [batch, sequence, vocabulary] logits, their log-softmax and its gradient.
- ours: `InstructionModel(model)(batch)`, which multiplies only the labelled positions by the output layer, in
  chunks, with the gradients computed chunk by chunk (`workbench/training/linear_ce.py`).

Each (model, variant) runs in a fresh subprocess. After a warm-up step on a few tokens, peak memory is what the
next step adds above what was resident before it: on CUDA `torch.cuda.max_memory_allocated` minus the memory
allocated before the step; on CPU the process's peak RSS (VmHWM, reset through /proc/self/clear_refs) minus VmRSS
before the step. Then `--steps` more steps are timed and reported as tokens/s (non-padding input tokens per step).
Each child also computes both losses once under no_grad and reports |ours - plain| (expected below 1e-4 in float32).

    python benchmarks/bench_lm_loss.py --models smollm2-135m gemma3-270m --batch 4 --seq 256 --steps 3 --method lora

`--method lora` trains LoRA adapters on q_proj and v_proj (the body still gets a backward pass, the output layer is
frozen); `--method full` trains every weight, the output matrix (tied with the embeddings) included.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

import torch

MODELS = ("smollm2-135m", "gemma3-270m")
VARIANTS = ("plain", "ours")
LOSS_TOLERANCE = 1e-4


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def make_batch(vocab: int, pad_id: int, batch: int, seq: int, seed: int) -> dict[str, torch.Tensor]:
    """Right-padded rows of random ids; the first row is `seq` long, the others a little shorter; labels: IGNORE on
    the first half of each row (the prompt) and on the padding."""
    from workbench.training.causal_lm import EncodedLM, collate_lm
    from workbench.training.linear_ce import IGNORE

    g = torch.Generator().manual_seed(seed)
    rows = []
    for i in range(batch):
        n = seq if i == 0 else seq - int(torch.randint(0, max(1, seq // 4), (1,), generator=g))
        ids = torch.randint(0, vocab, (n,), generator=g).tolist()
        rows.append(EncodedLM(input_ids=ids, labels=[IGNORE] * (n // 2) + ids[n // 2:]))
    return collate_lm(rows, pad_id)


def child(args: argparse.Namespace) -> dict:
    """One (model, variant) measurement in this process; returns the figures as a dict."""
    from workbench.models import load_backbone
    from workbench.training.causal_lm import InstructionModel

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    bb = load_backbone(args.models[0])
    model = bb.model
    if args.method == "lora":
        from peft import LoraConfig, inject_adapter_in_model

        model.requires_grad_(False)
        config = LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules=["q_proj", "v_proj"])
        model = inject_adapter_in_model(config, model)
        for n, p in model.named_parameters():
            p.requires_grad_("lora_" in n)
    model.to(device).train()
    with torch.no_grad():  # the weights are memory-mapped from the checkpoint: make them resident before measuring
        for t in [*model.parameters(), *model.buffers()]:
            t.data = t.data.clone()
    ours = InstructionModel(model)
    vocab = model.get_output_embeddings().weight.shape[0]
    pad = bb.tokenizer.pad_token_id if bb.tokenizer.pad_token_id is not None else 0
    batch = {k: v.to(device) for k, v in make_batch(vocab, pad, args.batch, args.seq, args.seed).items()}
    tokens = int(batch["attention_mask"].sum())

    def loss_of(variant: str) -> torch.Tensor:
        if variant == "plain":
            return model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                         labels=batch["labels"]).loss
        return ours(batch)

    def step() -> float:
        loss = loss_of(args.variant)
        loss.backward()
        model.zero_grad(set_to_none=True)
        return float(loss)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    # a warm-up step on a sliver of the batch takes the one-time allocations (kernels, thread pools) out of the peak
    full = batch
    batch = {k: v[:1, :8] for k, v in full.items()}
    batch["labels"] = batch["input_ids"].clone()
    step()
    batch = full

    # peak memory of the first full step, above what is resident before it
    if device.type == "cuda":
        sync()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        loss = step()
        sync()
        peak = torch.cuda.max_memory_allocated() - before
    else:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets VmHWM to the current RSS
        before = _status_kib("VmRSS") * 1024
        loss = step()
        peak = _status_kib("VmHWM") * 1024 - before

    sync()
    started = time.perf_counter()
    for _ in range(args.steps):
        step()
    sync()
    seconds = time.perf_counter() - started

    # the two losses on the same batch (eval mode: no dropout)
    model.eval()
    with torch.no_grad():
        plain_loss, ours_loss = float(loss_of("plain")), float(loss_of("ours"))
    return {"model": args.models[0], "variant": args.variant, "vocab": vocab, "tokens": tokens,
            "labelled": int((batch["labels"][:, 1:] != -100).sum()), "peak_mib": peak / 2**20,
            "tokens_per_s": tokens * args.steps / seconds if args.steps else float("nan"), "loss": loss,
            "plain_loss": plain_loss, "ours_loss": ours_loss, "threads": torch.get_num_threads()}


def run_child(args: argparse.Namespace, model: str, variant: str) -> dict:
    cmd = [sys.executable, __file__, "--child", "--models", model, "--variant", variant, "--batch", str(args.batch),
           "--seq", str(args.seq), "--steps", str(args.steps), "--method", args.method, "--device", args.device,
           "--seed", str(args.seed), "--threads", str(args.threads)]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        sys.stderr.write(out.stderr)
        raise SystemExit(f"{model} {variant}: the measuring subprocess failed (exit {out.returncode})")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=list(MODELS))
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seq", type=int, default=256, help="length of the longest row (others are up to 25%% shorter)")
    ap.add_argument("--steps", type=int, default=3, help="timed training steps (after the one measured for memory)")
    ap.add_argument("--method", choices=("lora", "full"), default="lora")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: leave as is)")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--variant", choices=VARIANTS, default="ours", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args)))
        return

    results = {}
    for model in args.models:
        for variant in VARIANTS:
            results[model, variant] = r = run_child(args, model, variant)
            if variant == VARIANTS[0]:
                print(f"{model}: vocab {r['vocab']:,}, batch {args.batch} x up to {args.seq} tokens "
                      f"({r['tokens']} non-padding, {r['labelled']} labelled), method {args.method}, "
                      f"{args.device}, {r['threads']} threads, {args.steps} timed steps", flush=True)
    print()
    print(f"{'model':<16}{'variant':<9}{'peak MiB':>11}{'tokens/s':>11}{'loss':>10}")
    for (model, variant), r in results.items():
        name = "plain HF" if variant == "plain" else "ours"
        print(f"{model:<16}{name:<9}{r['peak_mib']:>11.1f}{r['tokens_per_s']:>11.1f}{r['loss']:>10.4f}")
    print()
    ok = True
    for model in args.models:
        base, ours = results[model, "plain"], results[model, "ours"]
        diff = max(abs(r["ours_loss"] - r["plain_loss"]) for r in (base, ours))
        ok &= diff < LOSS_TOLERANCE
        print(f"{model}: peak memory plain/ours {base['peak_mib'] / max(ours['peak_mib'], 1e-9):.2f}x, "
              f"tokens/s ours/plain {ours['tokens_per_s'] / base['tokens_per_s']:.2f}x, "
              f"|ours - plain| loss {diff:.2e} ({'ok' if diff < LOSS_TOLERANCE else 'MISMATCH'})")
    if not ok:
        raise SystemExit(f"losses differ by more than {LOSS_TOLERANCE}")


if __name__ == "__main__":
    main()
