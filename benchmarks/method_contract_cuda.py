"""Every registered method on tiny masked and causal LMs, on whatever device is present: a few training
steps through the real trainer (bf16 autocast and fused AdamW on CUDA), checking that the loss stays finite,
trained weights move and frozen weights stay bit-identical, and timing a step.

    python benchmarks/method_contract_cuda.py [--steps 20]

It needs no data, model download or tracking store, so it runs on a bare GPU machine. It is a check of
the CUDA path after the registry refactor, not a speed benchmark of real models (see GPU.md for those).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from conftest import _byte_bpe_tokenizer, _wordpiece_tokenizer, build_method  # noqa: E402

from workbench.adaptation import all_methods, get_method  # noqa: E402
from workbench.models import Backbone  # noqa: E402
from workbench.training import TrainerConfig, predict, train  # noqa: E402
from workbench.training.trainer import pick_device  # noqa: E402


def tiny_backbones() -> dict[str, Backbone]:
    from transformers import BertConfig, BertForMaskedLM, LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    wp = _wordpiece_tokenizer()
    bert = BertForMaskedLM(BertConfig(vocab_size=len(wp), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                      intermediate_size=64, max_position_embeddings=128)).eval()
    bpe = _byte_bpe_tokenizer()
    llama = LlamaForCausalLM(LlamaConfig(vocab_size=len(bpe), hidden_size=32, num_hidden_layers=2,
                                         num_attention_heads=2, num_key_value_heads=2, intermediate_size=64,
                                         max_position_embeddings=128, tie_word_embeddings=True,
                                         pad_token_id=bpe.pad_token_id)).eval()
    return {"masked (BERT)": Backbone.from_model(bert, wp, name="tiny-bert"),
            "causal (Llama)": Backbone.from_model(llama, bpe, name="tiny-llama")}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=20)
    args = ap.parse_args()
    device = pick_device()
    print(f"device: {device} ({torch.cuda.get_device_name() if device.type == 'cuda' else 'cpu'}), torch "
          f"{torch.__version__}")
    print("| model | method | trainable | steps | ms/step | loss first -> last | frozen unchanged | scores finite |")
    print("|---|---|---|---|---|---|---|---|")
    failures = 0
    for kind, bb in tiny_backbones().items():
        for name in sorted(all_methods()):
            method = get_method(name)
            _, model, data = build_method(bb, name)
            model = model.to(device)
            frozen = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
            losses: list[float] = []
            seconds = 0.0
            if method.trains:
                cfg = TrainerConfig(max_steps=args.steps, lr=1e-2, batch_size=4, eval_every=10**6, progress=False)
                start = time.perf_counter()
                train(model, data, [], bb.tokenizer.pad_token_id, cfg,
                      on_log=lambda s, m: losses.append(m["train/loss"]) if "train/loss" in m else None)
                if device.type == "cuda":
                    torch.cuda.synchronize()
                seconds = time.perf_counter() - start
            scores = predict(model, data, bb.tokenizer.pad_token_id)
            unchanged = all(torch.equal(p, frozen[n]) for n, p in model.named_parameters() if not p.requires_grad)
            finite = bool(torch.isfinite(torch.from_numpy(scores)).all()) and all(math.isfinite(x) for x in losses)
            failures += int(not (unchanged and finite))
            trainable = model.count_parameters()[0]
            loss = f"{losses[0]:.3f} -> {losses[-1]:.3f}" if losses else "-"
            ms = f"{1000 * seconds / args.steps:.1f}" if method.trains else "-"
            print(f"| {kind} | {name} | {trainable:,} | {args.steps if method.trains else 0} | {ms} | {loss} | "
                  f"{'yes' if unchanged else 'NO'} | {'yes' if finite else 'NO'} |", flush=True)
    print(f"\n{failures} failure(s)")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
