"""PEFT's own prompt tuning and P-tuning, used the way its documentation shows (PeftModel, a plain
training loop on the causal-LM loss over full-vocabulary logits, label words read from those logits),
against ours (soft prompts + verbalizer head), on the same model, batch, rows and prompt length.

Each variant runs in its own process so its peak memory (peak RSS, MB) is its own; the parent prints
all figures and the ratios.

    python benchmarks/bench_peft_soft_prompts.py --model smollm2-135m --batch-size 8 --steps 6
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

VARIANTS = ("peft-prompt-tuning", "ours-prompt-tuning", "peft-p-tuning", "ours-p-tuning")


def measure(variant: str, args) -> dict:
    import torch

    from workbench.adaptation import BuildContext, get_method
    from workbench.models import load_backbone
    from workbench.prompts import PromptEncoder, Verbalizer, collate, load_templates
    from workbench.prompts.verbalizer import label_word_ids
    from workbench.resources import template_file as default_template_file
    from workbench.data import few_shot_split, get_task

    torch.manual_seed(0)
    task = get_task("sst2")
    bb = load_backbone(args.model)
    tok = bb.tokenizer
    verbalizer = Verbalizer.from_lines(["negative", "positive"])
    words = label_word_ids(verbalizer, tok)
    template = load_templates(default_template_file("sst2"))[0]
    rows = task.load_split("dev")[: args.eval_examples]
    n = args.prompt_length

    if variant.startswith("ours"):
        name = "prompt-tuning" if variant == "ours-prompt-tuning" else "p-tuning"
        spec = get_method(name)
        opts = spec.parse_options({"num_virtual_tokens": n} if name == "prompt-tuning"
                                  else {"num_soft": n, "prompt_encoder": "lstm"})
        tpl = spec.adapt_template(template, opts) if spec.adapt_template else template
        split = few_shot_split(task, 16, 13)
        model = spec.build(BuildContext(bb, task, tpl, verbalizer, words, split, 13), opts)
        enc = PromptEncoder(tpl, tok, bb.kind, task.text_fields, 128)
        data = [enc.encode(r) for r in rows]

        def batch_of(examples):
            return collate(examples, tok.pad_token_id)

        def loss_fn(batch):
            return torch.nn.functional.cross_entropy(model(batch), batch["labels"])

        def scores_fn(batch):
            return model(batch)
    else:
        from peft import PromptEncoderConfig, PromptTuningConfig, TaskType, get_peft_model

        if variant == "peft-prompt-tuning":
            config = PromptTuningConfig(task_type=TaskType.CAUSAL_LM, num_virtual_tokens=n)
        else:
            config = PromptEncoderConfig(task_type=TaskType.CAUSAL_LM, num_virtual_tokens=n,
                                         encoder_hidden_size=bb.hidden_size)
        model = get_peft_model(bb.model, config)
        enc = PromptEncoder(template, tok, bb.kind, task.text_fields, 128)
        data = [enc.encode(r) for r in rows]
        label_ids = torch.tensor(words.token_ids)

        def batch_of(examples):
            # The documented recipe: the input followed by the label word, labels = -100 except the label token.
            b = collate(examples, tok.pad_token_id)
            ids = torch.cat([b["input_ids"], torch.full((len(examples), 1), tok.pad_token_id)], dim=1)
            mask = torch.cat([b["attention_mask"], torch.zeros(len(examples), 1, dtype=torch.long)], dim=1)
            labels = torch.full_like(ids, -100)
            for i, e in enumerate(examples):
                pos = len(e.input_ids)
                ids[i, pos] = label_ids[e.label]
                mask[i, pos] = 1
                labels[i, pos] = label_ids[e.label]
            return {"input_ids": ids, "attention_mask": mask, "labels": labels, "readout": b["readout"]}

        def loss_fn(batch):
            return model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                         labels=batch["labels"]).loss

        def scores_fn(batch):
            logits = model(input_ids=batch["input_ids"][:, :-1], attention_mask=batch["attention_mask"][:, :-1]).logits
            rows_ = logits[torch.arange(logits.shape[0]), batch["readout"] + n]  # virtual tokens come first
            return rows_[:, label_ids]

    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-3)
    train_batch = batch_of(data[: args.batch_size])
    times = []
    for i in range(args.steps + 1):
        t0 = time.perf_counter()
        loss = loss_fn(train_batch)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if i:
            times.append(time.perf_counter() - t0)
    model.eval()
    with torch.no_grad():
        scores_fn(batch_of(data[: args.batch_size]))
        t0 = time.perf_counter()
        for s in range(0, len(data), args.eval_batch_size):
            scores_fn(batch_of(data[s : s + args.eval_batch_size]))
        eval_eps = len(data) / (time.perf_counter() - t0)
    return {"variant": variant, "step_s": statistics.median(times), "eval_eps": eval_eps,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "trainable": sum(p.numel() for p in params)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--eval-batch-size", type=int, default=32)
    ap.add_argument("--eval-examples", type=int, default=128)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--prompt-length", type=int, default=20)
    ap.add_argument("--variant", choices=VARIANTS, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.variant:
        print(json.dumps(measure(args.variant, args)))
        return
    results = {}
    for v in VARIANTS:
        cmd = [sys.executable, __file__, "--variant", v] + [
            f"--{k.replace('_', '-')}={val}" for k, val in vars(args).items() if k != "variant"]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
        results[v] = json.loads(out)
        r = results[v]
        print(f"{v:20s} train step {r['step_s']:.3f} s   eval {r['eval_eps']:6.1f} ex/s   peak RSS "
              f"{r['peak_rss_mb']:.0f} MB   trainable {r['trainable']:,}", flush=True)
    for method in ("prompt-tuning", "p-tuning"):
        p, o = results[f"peft-{method}"], results[f"ours-{method}"]
        print(f"{method}: ours is {p['step_s'] / o['step_s']:.2f}x faster per training step, "
              f"{o['eval_eps'] / p['eval_eps']:.2f}x on evaluation, peak memory {o['peak_rss_mb']:.0f} vs "
              f"{p['peak_rss_mb']:.0f} MB ({o['peak_rss_mb'] / p['peak_rss_mb']:.2f}x)")


if __name__ == "__main__":
    main()
