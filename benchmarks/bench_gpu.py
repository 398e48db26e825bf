"""The GPU trainer against the recipe a PEFT user writes: our training step (the method built as `workbench train`
builds it, trained by `workbench.training.train`: verbalizer head, bf16 autocast, frozen weights held in bf16, fused
AdamW, `torch.compile` of the body per `--compile`) and plain PEFT / Hugging Face training (`get_peft_model`, causal-LM
loss over full-vocabulary logits with labels -100 except the label word at the last position, the same bf16 autocast
and fused AdamW on CUDA; prompt-finetune and finetune: the plain model), on the same batches of real SST-2 rows
(template `{"placeholder":"text_a"} It was {"mask"}.`, words terrible/great), in one process.

Models are randomly initialised with the shapes of SmolLM2-135M, Gemma 3 270M and a 1B Llama (`tiny` on CPU: hidden 64,
2 layers, the tokenizer's vocabulary); token ids come from the SmolLM2 tokenizer in the offline cache (or, when it is
missing, a byte-level BPE trained here on the SST-2 rows: `--tokenizer trained`).

    # CUDA (H100 / H200): every shape, batch 8 and 32, every method, compile=max, end to end
    python benchmarks/bench_gpu.py --json gpu.json
    # CPU, small:
    OMP_NUM_THREADS=1 python benchmarks/bench_gpu.py --shapes tiny --batches 8 --steps 2 --methods prompt-tuning,lora

Measured per row (shape x batch x method):
- step time: ours = a first, untimed run of `max(--warmup, steps + 2)` steps (compilation, every batch shape), then a
  second run of steps + 2 steps on the same model and seed (the same batches), timed from the end of its step 2 to the
  end of its last step (the trainer reads the losses back at those points, so the device is synchronised there);
  baseline = the same batch sequence as warm-up, then the same timed batches, synchronised around the loop.
  "step x" = baseline ms / ours ms (above 1: ours faster).
- evaluation: ours `workbench.training.predict` vs the baseline's forward under no_grad, logits at the read-out (last)
  position, label-word columns; SST-2 dev rows, batch = the row's batch; examples/s; "eval x" = ours / baseline.
- peak memory (CUDA): torch.cuda.max_memory_allocated during the timed steps, less what was allocated before the
  variant's model came to the device; "mem x" = ours / baseline (below 1: ours smaller). CPU: n/a.
- MFU (CUDA): model FLOPs per step / step time / `--peak-tflops` (989: H100 / H200 SXM dense bf16). Model FLOPs =
  k x N x T with N = the transformer's non-embedding parameters (neither the input embeddings nor the LM head: a
  classification step needs only the label words' rows of it), T = the real (unpadded) tokens of the batch as our
  method feeds them (prompt tuning's virtual tokens included), k = 6 when the body's weights train (prompt-finetune,
  finetune: forward + backward through activations and weights) and 4 for a frozen body (prompt tuning, P-tuning,
  LoRA: backward through activations only). The same FLOP count is used for both columns, so their ratio is the
  speed ratio. CPU: n/a.
- graphs: graphs torch.compile built for ours in the row (TrainResult.compiled_graphs of both runs).

End to end (`--end-to-end`, on by default): SmolLM2 shape (CPU: tiny), prompt tuning, batch 8: `--e2e-trials`
consecutive `--e2e-steps`-step runs, each on a fresh method instance built on a fresh copy of the same backbone
(build + move to the device + train, compile included), for ours per compile mode (auto and max on CUDA) and for the
baseline. The first trial is "one whole run"; the rest show whether compilation is reused across the trials of a sweep.
`--fresh-compile-cache` points inductor and Triton at new empty cache folders (a first run on a new machine).

Each ours variant runs with Hugging Face's modeling modules restored afterwards (Liger-Kernel, when installed, patches
some module-level functions such as rotary embeddings), so a baseline never runs on our kernels.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import gc
import json
import math
import os
import random
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

TEMPLATE = '{"placeholder":"text_a"} It was {"mask"}.'
WORDS = ("terrible", "great")
MAX_LENGTH = 128
ALL_METHODS = ("prompt-tuning", "p-tuning", "lora", "prompt-finetune", "finetune")
FULL_WEIGHT_METHODS = ("prompt-finetune", "finetune")
# (family, config fields); vocab None = the tokenizer's.
SHAPES = {
    "smollm2-135m": ("llama", {"hidden_size": 576, "num_hidden_layers": 30, "num_attention_heads": 9,
                               "num_key_value_heads": 3, "intermediate_size": 1536, "vocab_size": 49152,
                               "tie_word_embeddings": True, "max_position_embeddings": 8192}),
    "gemma3-270m": ("gemma3", {"hidden_size": 640, "num_hidden_layers": 18, "num_attention_heads": 4,
                               "num_key_value_heads": 1, "head_dim": 256, "intermediate_size": 2048,
                               "vocab_size": 262144, "tie_word_embeddings": True, "max_position_embeddings": 32768}),
    "llama-1b": ("llama", {"hidden_size": 2048, "num_hidden_layers": 16, "num_attention_heads": 32,
                           "num_key_value_heads": 8, "intermediate_size": 8192, "vocab_size": 128256,
                           "tie_word_embeddings": True, "max_position_embeddings": 131072}),
    "tiny": ("llama", {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
                       "intermediate_size": 128, "vocab_size": None, "tie_word_embeddings": True,
                       "max_position_embeddings": 512}),
}


def log(msg: str) -> None:
    print(f"[bench_gpu] {msg}", file=sys.stderr, flush=True)


# ---- device helpers -------------------------------------------------------------------------------------------

def sync() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def allocated() -> int:
    import torch

    return torch.cuda.memory_allocated() if torch.cuda.is_available() else 0


def reset_peak() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()


def peak_mib(before: int) -> float | None:
    import torch

    if not torch.cuda.is_available():
        return None
    return (torch.cuda.max_memory_allocated() - before) / 2**20


def autocast(device):
    import torch

    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")


def cleanup(reset_compiled: bool = False) -> None:
    """Free what the last variant left: Python cycles, dynamo's compiled code and CUDA graphs (they hold the model's
    tensors), the allocator's cache."""
    import torch

    if reset_compiled:
        try:
            torch._dynamo.reset()
        except Exception as e:  # noqa: BLE001 - a benchmark goes on
            log(f"torch._dynamo.reset failed: {e}")
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


@contextlib.contextmanager
def restored_hf_modules():
    """Hugging Face's modeling modules, and the classes they define, as they were before the block: Liger-Kernel's
    instance patching also replaces module-level functions and classes (rotary embeddings, norms, MLPs) that every
    later model would run."""
    import types

    mods = {n: m for n, m in list(sys.modules.items())
            if n.startswith("transformers.models.") and isinstance(m, types.ModuleType)}
    saved = {n: dict(vars(m)) for n, m in mods.items()}
    classes = {c: dict(vars(c)) for n, m in mods.items() for c in saved[n].values()
               if isinstance(c, type) and c.__module__ == n}
    try:
        yield
    finally:
        for n, m in mods.items():
            d, old = vars(m), saved[n]
            for k in [k for k, v in d.items() if k not in old and not isinstance(v, types.ModuleType)]:
                del d[k]
            for k, v in old.items():
                if d.get(k) is not v:
                    d[k] = v
        for c, old in classes.items():
            for k in [k for k in vars(c) if k not in old]:
                with contextlib.suppress(AttributeError, TypeError):
                    delattr(c, k)
            for k, v in old.items():
                if vars(c).get(k) is not v:
                    with contextlib.suppress(AttributeError, TypeError):
                        setattr(c, k, v)


# ---- data, tokenizer, models ----------------------------------------------------------------------------------

def trained_tokenizer(rows):
    """A byte-level BPE trained on the rows (when no cached tokenizer is at hand, e.g. on a bare GPU machine)."""
    from tokenizers import ByteLevelBPETokenizer
    from transformers import PreTrainedTokenizerFast

    texts = [" ".join(r.fields.values()) for r in rows[:20000]] + [" It was terrible. It was great."] * 200
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(texts, vocab_size=8192, min_frequency=2, special_tokens=["<pad>", "<eos>"])
    return PreTrainedTokenizerFast(tokenizer_object=bpe._tokenizer, pad_token="<pad>", eos_token="<eos>")


def get_tokenizer(name: str, rows):
    from workbench.models.backbone import _prepare_tokenizer

    if name != "trained":
        try:
            from workbench.models import load_tokenizer, resolve_model

            return load_tokenizer(resolve_model(name)), name
        except Exception as e:  # noqa: BLE001 - fall back to a tokenizer trained here
            log(f"tokenizer {name!r} not available ({type(e).__name__}: {e}); training a byte-level BPE on SST-2")
    tok = trained_tokenizer(rows)
    _prepare_tokenizer(tok)
    return tok, "trained byte-level BPE (8192)"


def build_master(shape: str, tok):
    """The randomly initialised model of `shape`, fp32 on the CPU (every variant gets a copy)."""
    import torch

    family, dims = SHAPES[shape]
    dims = dict(dims)
    dims["vocab_size"] = max(dims["vocab_size"] or 0, len(tok))
    special = {"pad_token_id": tok.pad_token_id, "bos_token_id": tok.bos_token_id, "eos_token_id": tok.eos_token_id}
    torch.manual_seed(0)
    if family == "gemma3":
        from transformers import Gemma3ForCausalLM, Gemma3TextConfig

        model = Gemma3ForCausalLM(Gemma3TextConfig(**dims, **special))
    else:
        from transformers import LlamaConfig, LlamaForCausalLM

        model = LlamaForCausalLM(LlamaConfig(**dims, **special))
    return model.eval()


def body_params(model) -> int:
    """Parameters outside the input embeddings and the LM head (tied or not)."""
    total = sum(p.numel() for p in model.parameters())  # tied weights count once
    emb = model.get_input_embeddings().weight
    out = model.get_output_embeddings()
    untied = out is not None and out.weight is not emb
    return total - emb.numel() - (out.weight.numel() if untied else 0)


def label_token_ids(tok) -> list[int]:
    """Class c's label-word token (what the baseline's labels and read-out use)."""
    from workbench.prompts import Verbalizer
    from workbench.prompts.verbalizer import label_word_ids

    words = label_word_ids(Verbalizer.from_lines(list(WORDS)), tok)
    return [words.token_ids[int(words.class_matrix[c].argmax())] for c in range(len(WORDS))]


# ---- ours -----------------------------------------------------------------------------------------------------

def build_ours(bb, method: str, task, train_rows, seed: int = 13):
    """The method on the backbone, with the steps of the train recipe (tests/conftest.py `build_method`): options,
    template rewrite, build, after-build hook, encoder."""
    from workbench.adaptation import BuildContext, get_method
    from workbench.adaptation.registry import RewriteContext
    from workbench.prompts import PromptEncoder, Verbalizer, parse_template
    from workbench.prompts.verbalizer import label_word_ids

    spec = get_method(method)
    opts = spec.make_options()
    tpl = parse_template(TEMPLATE) if spec.uses_verbalizer else None
    verbalizer = Verbalizer.from_lines(list(WORDS)) if spec.uses_verbalizer else None
    if tpl is not None and spec.rewrite_prompt:
        tpl, verbalizer = spec.rewrite_prompt(RewriteContext(opts, task, bb), tpl, verbalizer)
    words = label_word_ids(verbalizer, bb.tokenizer) if verbalizer else None
    ctx = BuildContext(bb, task, tpl, verbalizer, words, SimpleNamespace(train=train_rows, dev=[]), seed)
    model = spec.build(ctx, opts)
    extra = spec.extra_tokens(opts) if spec.extra_tokens else 0
    enc = PromptEncoder(tpl, bb.tokenizer, bb.kind, task.text_fields, MAX_LENGTH - extra)
    if spec.after_build:
        enc = spec.after_build(ctx, opts, model, enc)
    return spec, opts, model, enc, extra


def recording_objective(pad_id: int, seen: list):
    """The trainer's default objective, also keeping every training batch it collates (in order)."""
    from workbench.training.trainer import Classification

    @dataclass
    class Recording(Classification):
        seen: list = field(default_factory=list)

        def collate(self, examples):
            self.seen.append(list(examples))
            return super().collate(examples)

    return Recording(pad_id, seen=seen)


def ours_config(steps: int, batch: int, lr: float, compile_mode: str):
    from workbench.training import TrainerConfig

    return TrainerConfig(max_steps=steps, lr=lr, batch_size=batch, eval_every=10**9, progress=False,
                         compile=compile_mode)


def run_ours(master, tok, task, method, batch, pool_rows, eval_rows, args, device) -> dict:
    from workbench.models import Backbone
    from workbench.training import predict, train

    before = allocated()
    bb = Backbone.from_model(copy.deepcopy(master), tok, name="bench")
    _, opts, model, enc, extra = build_ours(bb, method, task, pool_rows)
    model.to(device)
    data = [enc.encode(r) for r in pool_rows]
    pad = tok.pad_token_id
    n = args.steps + 2
    seen: list = []
    first = train(model, data, [], pad, ours_config(max(args.warmup, n), batch, args.lr, args.compile),
                  objective=recording_objective(pad, seen))
    gc.collect()
    sync()
    reset_peak()
    stamps: dict[int, float] = {}
    second = train(model, data, [], pad, ours_config(n, batch, args.lr, args.compile),
                   on_log=lambda s, m: stamps.__setitem__(s, time.perf_counter()))
    sync()
    mem = peak_mib(before)
    if 2 in stamps and n in stamps:
        step_s = (stamps[n] - stamps[2]) / (n - 2)
    else:  # a trainer that logs elsewhere: its own clock, warm-up steps included
        log(f"{method}: no log at steps 2 and {n}; using TrainResult.seconds / steps")
        step_s = second.seconds / max(second.steps, 1)
    index = {id(e): i for i, e in enumerate(data)}
    order = [[index[id(e)] for e in chunk] for chunk in seen]
    tokens = [sum(len(e.input_ids) + extra for e in chunk) for chunk in seen[2:n]]

    evaluated = [enc.encode(r) for r in eval_rows]
    predict(model, evaluated[: 2 * batch], pad, batch)  # warm-up
    sync()
    t0 = time.perf_counter()
    predict(model, evaluated, pad, batch)
    sync()
    eval_eps = len(evaluated) / (time.perf_counter() - t0)
    trainable = model.count_parameters()[0]
    result = {"step_ms": 1000 * step_s, "eval_eps": eval_eps, "peak_mib": mem, "trainable": trainable,
              "graphs": first.compiled_graphs + second.compiled_graphs,
              "graphs_first_run": first.compiled_graphs, "graphs_timed_run": second.compiled_graphs,
              "tokens_per_step": sum(tokens) / max(len(tokens), 1), "order": order,
              "full_weights": method in FULL_WEIGHT_METHODS, "opts": opts}
    del model, bb, first, second
    return result


# ---- baseline: what a PEFT / Hugging Face user writes ------------------------------------------------------------

def peft_wrap(model, method: str, opts, hidden: int):
    """The user's model for `method`, with the same prompt length / rank as ours."""
    import peft

    causal = peft.TaskType.CAUSAL_LM
    if method == "prompt-tuning":
        n = opts.num_virtual_tokens
        return peft.get_peft_model(model, peft.PromptTuningConfig(task_type=causal, num_virtual_tokens=n)), n
    if method == "p-tuning":
        n = opts.num_soft
        config = peft.PromptEncoderConfig(task_type=causal, num_virtual_tokens=n, encoder_hidden_size=hidden)
        return peft.get_peft_model(model, config), n
    if method == "lora":
        config = peft.LoraConfig(task_type=causal, r=opts.r, lora_alpha=opts.alpha, lora_dropout=opts.dropout,
                                 target_modules=["q_proj", "v_proj"])
        return peft.get_peft_model(model, config), 0
    for p in model.parameters():  # prompt-finetune, finetune: the plain model, every weight trained
        p.requires_grad_(True)
    return model, 0


def lm_batch(examples, pad_id: int, label_ids: list[int]):
    """The classification-as-LM recipe: the input followed by the label word; labels -100 except that word."""
    import torch

    from workbench.prompts.encoding import collate

    b = collate(examples, pad_id)
    ids = torch.cat([b["input_ids"], torch.full((len(examples), 1), pad_id)], dim=1)
    mask = torch.cat([b["attention_mask"], torch.zeros(len(examples), 1, dtype=torch.long)], dim=1)
    labels = torch.full_like(ids, -100)
    for i, e in enumerate(examples):
        pos = len(e.input_ids)
        ids[i, pos] = labels[i, pos] = label_ids[e.label]
        mask[i, pos] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def baseline_optimizer(model, lr: float, device):
    import torch

    params = [p for p in model.parameters() if p.requires_grad]
    if device.type == "cuda":
        return torch.optim.AdamW(params, lr=lr, fused=True)
    return torch.optim.AdamW(params, lr=lr)


def baseline_step(model, opt, examples, pad_id, label_ids, device) -> None:
    batch = {k: v.to(device) for k, v in lm_batch(examples, pad_id, label_ids).items()}
    with autocast(device):
        loss = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                     labels=batch["labels"]).loss
    loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)


def plain_encoder(tok, task, kind, n_virtual: int):
    from workbench.prompts import PromptEncoder, parse_template

    return PromptEncoder(parse_template(TEMPLATE), tok, kind, task.text_fields, MAX_LENGTH - n_virtual)


def run_baseline(master, tok, task, method, batch, pool_rows, eval_rows, order, opts, args, device) -> dict:
    import torch

    from workbench.models.backbone import detect_kind

    before = allocated()
    model, n_virtual = peft_wrap(copy.deepcopy(master), method, opts, master.config.hidden_size)
    model.to(device)
    model.train()
    pad = tok.pad_token_id
    label_ids = label_token_ids(tok)
    enc = plain_encoder(tok, task, detect_kind(master), n_virtual)
    data = [enc.encode(r) for r in pool_rows]
    opt = baseline_optimizer(model, args.lr, device)
    n = args.steps + 2
    for chunk in order:  # the batches of our first (warm-up) run
        baseline_step(model, opt, [data[i] for i in chunk], pad, label_ids, device)
    gc.collect()
    sync()
    reset_peak()
    t0 = time.perf_counter()
    for chunk in order[2:n]:  # the batches our timed steps saw
        baseline_step(model, opt, [data[i] for i in chunk], pad, label_ids, device)
    sync()
    step_s = (time.perf_counter() - t0) / max(len(order[2:n]), 1)
    mem = peak_mib(before)

    from workbench.prompts.encoding import collate

    evaluated = [enc.encode(r) for r in eval_rows]
    label_t = torch.tensor(label_ids, device=device)

    @torch.no_grad()
    def score(net, examples):
        b = collate(examples, pad)
        with autocast(device):
            logits = net(input_ids=b["input_ids"].to(device), attention_mask=b["attention_mask"].to(device)).logits
        rows = logits[torch.arange(logits.shape[0], device=device), b["readout"].to(device) + n_virtual]
        return rows[:, label_t].float().cpu()

    model.eval()
    score(model, evaluated[:batch])  # warm-up
    sync()
    t0 = time.perf_counter()
    for s in range(0, len(evaluated), batch):
        score(model, evaluated[s : s + batch])
    sync()
    eval_eps = len(evaluated) / (time.perf_counter() - t0)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    del model, opt
    return {"step_ms": 1000 * step_s, "eval_eps": eval_eps, "peak_mib": mem, "trainable": trainable}


# ---- end to end -------------------------------------------------------------------------------------------------

def e2e_ours(master, tok, task, pool_rows, batch, steps, mode, args, device) -> tuple[float, int]:
    from workbench.models import Backbone
    from workbench.training import train

    model_copy = copy.deepcopy(master)  # untimed: a backbone already in memory
    with restored_hf_modules():
        sync()
        t0 = time.perf_counter()
        bb = Backbone.from_model(model_copy, tok, name="bench")
        _, _, model, enc, _ = build_ours(bb, "prompt-tuning", task, pool_rows)
        model.to(device)
        data = [enc.encode(r) for r in pool_rows]
        result = train(model, data, [], tok.pad_token_id, ours_config(steps, batch, args.lr, mode))
        sync()
        seconds = time.perf_counter() - t0
    del model, bb, model_copy
    cleanup()
    return seconds, result.compiled_graphs


def shuffled_batches(n: int, batch: int, steps: int, seed: int = 13) -> list[list[int]]:
    """`steps` batches of indices: shuffled epochs of full batches, as a DataLoader(shuffle=True, drop_last=True)."""
    if n < batch:
        raise ValueError(f"{n} rows cannot fill a batch of {batch}")
    rng = random.Random(seed)
    out: list[list[int]] = []
    while len(out) < steps:
        order = list(range(n))
        rng.shuffle(order)
        out += [order[s : s + batch] for s in range(0, n - batch + 1, batch)][: steps - len(out)]
    return out


def e2e_baseline(master, tok, task, pool_rows, batch, steps, args, device, seed: int) -> float:
    from workbench.adaptation import get_method
    from workbench.models.backbone import detect_kind

    opts = get_method("prompt-tuning").make_options()
    model_copy = copy.deepcopy(master)
    label_ids = label_token_ids(tok)
    sync()
    t0 = time.perf_counter()
    model, n_virtual = peft_wrap(model_copy, "prompt-tuning", opts, master.config.hidden_size)
    model.to(device)
    model.train()
    enc = plain_encoder(tok, task, detect_kind(master), n_virtual)
    data = [enc.encode(r) for r in pool_rows]
    opt = baseline_optimizer(model, args.lr, device)
    for chunk in shuffled_batches(len(data), batch, steps, seed):
        baseline_step(model, opt, [data[i] for i in chunk], tok.pad_token_id, label_ids, device)
    sync()
    seconds = time.perf_counter() - t0
    del model, opt, model_copy
    cleanup()
    return seconds


def end_to_end(tok, task, train_rows, args, device) -> dict:
    shape = "smollm2-135m" if device.type == "cuda" else "tiny"
    batch, steps, trials = 8, args.e2e_steps, args.e2e_trials
    log(f"end to end: {shape} shape, prompt-tuning, batch {batch}, {trials} trials of {steps} steps")
    master = build_master(shape, tok)
    pool_rows = train_rows[: batch * args.pool_batches]
    modes = ["auto", "max"] if device.type == "cuda" or args.compile == "max" else ["auto"]
    out: dict = {"shape": shape, "method": "prompt-tuning", "batch": batch, "steps": steps, "trials": trials,
                 "ours": {}}
    for mode in modes:
        cleanup(reset_compiled=True)  # this mode's first trial compiles as a new process would (disk caches aside)
        secs, graphs = [], []
        for t in range(trials):
            s, g = e2e_ours(master, tok, task, pool_rows, batch, steps, mode, args, device)
            secs.append(s)
            graphs.append(g)
            log(f"  ours compile={mode} trial {t + 1}: {s:.2f} s, {g} graphs")
        out["ours"][mode] = {"seconds": secs, "graphs": graphs}
    secs = []
    for t in range(trials):
        secs.append(e2e_baseline(master, tok, task, pool_rows, batch, steps, args, device, seed=13 + t))
        log(f"  baseline trial {t + 1}: {secs[-1]:.2f} s")
    out["baseline"] = {"seconds": secs}
    del master
    cleanup(reset_compiled=True)
    return out


# ---- report -----------------------------------------------------------------------------------------------------

def fmt(x, spec: str, na: str = "n/a") -> str:
    return na if x is None or (isinstance(x, float) and not math.isfinite(x)) else format(x, spec)


def ratio(a, b) -> float | None:
    return a / b if a is not None and b not in (None, 0) else None


def percent(v) -> str:
    return "n/a" if v is None else f"{100 * v:.3f}%"


def times(v) -> str:
    return "n/a" if v is None else f"{v:.2f}x"


def gmean(values) -> float | None:
    values = [v for v in values if v]
    return math.exp(sum(map(math.log, values)) / len(values)) if values else None


def table(rows: list[dict]) -> list[str]:
    lines = [("| shape | batch | method | ours ms | base ms | step x | ours ex/s eval | base ex/s eval | eval x | "
              "ours MiB | base MiB | mem x | MFU ours | MFU base | graphs |"),
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        o, b = r.get("ours") or {}, r.get("base") or {}
        cells = [r["shape"], str(r["batch"]), r["method"],
                 fmt(o.get("step_ms"), ".1f", o.get("error", "-")), fmt(b.get("step_ms"), ".1f", b.get("error", "-")),
                 fmt(r.get("step_x"), ".2f", "-"),
                 fmt(o.get("eval_eps"), ".0f", "-"), fmt(b.get("eval_eps"), ".0f", "-"), fmt(r.get("eval_x"), ".2f", "-"),
                 fmt(o.get("peak_mib"), ".0f"), fmt(b.get("peak_mib"), ".0f"), fmt(r.get("mem_x"), ".2f"),
                 percent(o.get("mfu")), percent(b.get("mfu")), fmt(o.get("graphs"), "d", "-")]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def summary(rows: list[dict]) -> list[str]:
    lines = []
    for method in dict.fromkeys(r["method"] for r in rows):
        mine = [r for r in rows if r["method"] == method and r.get("step_x")]
        if not mine:
            continue
        step, evals, mem = (gmean(r.get(key) for r in mine) for key in ("step_x", "eval_x", "mem_x"))
        faster = sum(r["step_x"] > 1 for r in mine)
        lines.append(f"{method}: ours runs a training step at {times(step)} the baseline's speed (geometric mean "
                     f"over {len(mine)} rows; faster in {faster}), evaluation at {times(evals)}, peak memory "
                     f"{times(mem)}")
    return lines


def e2e_lines(e2e: dict) -> list[str]:
    lines = [(f"end to end ({e2e['shape']} shape, {e2e['method']}, batch {e2e['batch']}, {e2e['steps']} steps a "
              f"run; build + move to the device + train, compile included):")]
    base = e2e["baseline"]["seconds"]
    for mode, r in e2e["ours"].items():
        s = r["seconds"]
        lines.append(f"  ours compile={mode:4s}: one run {s[0]:.2f} s ({r['graphs'][0]} graphs); {len(s)}-trial sweep "
                     f"{sum(s):.2f} s (trials: {', '.join(f'{x:.2f}' for x in s)}; graphs: "
                     f"{', '.join(map(str, r['graphs']))})")
    lines.append(f"  baseline (PEFT)  : one run {base[0]:.2f} s; {len(base)}-trial sweep {sum(base):.2f} s (trials: "
                 f"{', '.join(f'{x:.2f}' for x in base)})")
    for mode, r in e2e["ours"].items():
        s = r["seconds"]
        lines.append(f"  ratio compile={mode}: one run {base[0] / s[0]:.2f}x, sweep {sum(base) / sum(s):.2f}x, "
                     f"trials after the first {sum(base[1:]) / sum(s[1:]):.2f}x" if len(s) > 1 else
                     f"  ratio compile={mode}: one run {base[0] / s[0]:.2f}x (baseline s / ours s)")
    return lines


# ---- main -------------------------------------------------------------------------------------------------------

def parse_args():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shapes", help=f"comma-separated, of {', '.join(SHAPES)} (default: the three real shapes on "
                                     f"CUDA, tiny on CPU)")
    ap.add_argument("--batches", help="comma-separated batch sizes (default 8,32 on CUDA, 8 on CPU)")
    ap.add_argument("--methods", default=",".join(ALL_METHODS), help="comma-separated, of " + ", ".join(ALL_METHODS))
    ap.add_argument("--steps", type=int, help="timed steps per row (default 20 on CUDA, 3 on CPU)")
    ap.add_argument("--warmup", type=int, help="length of the untimed first run; at least steps + 2 (default 30 on "
                                               "CUDA, 0 on CPU: steps + 2)")
    ap.add_argument("--compile", choices=("auto", "off", "max"), help="ours: TrainerConfig.compile (default max on "
                                                                      "CUDA, off on CPU)")
    ap.add_argument("--lr", type=float, default=1e-4, help="learning rate of both (the timing does not depend on it)")
    ap.add_argument("--pool-batches", type=int, default=4, help="training rows = batch x this (distinct batches)")
    ap.add_argument("--eval-examples", type=int, help="SST-2 dev rows for evaluation (default 512 CUDA, 64 CPU)")
    ap.add_argument("--peak-tflops", type=float, default=989.0, help="peak dense bf16 TFLOP/s for MFU (989: H100/H200 "
                                                                     "SXM)")
    ap.add_argument("--end-to-end", action=argparse.BooleanOptionalAction, default=True,
                    help="whole-run and mini-sweep wall times (default on)")
    ap.add_argument("--e2e-steps", type=int, default=30, help="steps of each end-to-end run")
    ap.add_argument("--e2e-trials", type=int, default=10, help="runs in the end-to-end mini sweep")
    ap.add_argument("--fresh-compile-cache", action="store_true",
                    help="new empty inductor/Triton cache folders: compile as on a new machine")
    ap.add_argument("--tokenizer", default="smollm2-135m", help="model alias whose tokenizer gives the ids, or "
                                                               "'trained' (a BPE trained on SST-2 here)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: leave as is)")
    ap.add_argument("--json", help="write every figure to this file as JSON")
    return ap.parse_args()


def main() -> None:
    args = parse_args()
    if args.fresh_compile_cache:  # before torch reads them
        root = tempfile.mkdtemp(prefix="bench_gpu_cache_")
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = os.path.join(root, "inductor")
        os.environ["TRITON_CACHE_DIR"] = os.path.join(root, "triton")
    import torch

    from workbench.adaptation import get_method
    from workbench.data import get_task
    from workbench.training.kernels import liger_available

    if args.threads:
        torch.set_num_threads(args.threads)
    on_cuda = torch.cuda.is_available()
    device = torch.device("cuda" if on_cuda else "cpu")
    shapes = (args.shapes or ("smollm2-135m,gemma3-270m,llama-1b" if on_cuda else "tiny")).split(",")
    batches = [int(b) for b in (args.batches or ("8,32" if on_cuda else "8")).split(",")]
    methods = args.methods.split(",")
    args.steps = args.steps if args.steps is not None else (20 if on_cuda else 3)
    args.warmup = args.warmup if args.warmup is not None else (30 if on_cuda else 0)
    args.compile = args.compile or ("max" if on_cuda else "off")
    args.eval_examples = args.eval_examples if args.eval_examples is not None else (512 if on_cuda else 64)
    for name, known, given in (("shape", SHAPES, shapes), ("method", ALL_METHODS, methods)):
        unknown = [g for g in given if g not in known]
        if unknown:
            sys.exit(f"unknown {name}(s) {unknown}; choose from {', '.join(known)}")
    if args.steps < 1 or args.e2e_steps < 1 or args.e2e_trials < 1 or args.eval_examples < 1:
        sys.exit("--steps, --e2e-steps, --e2e-trials and --eval-examples must be at least 1")

    task = get_task("sst2")
    train_rows = task.load_split("train")
    eval_rows = task.load_split("dev")[: args.eval_examples]
    tok, tok_name = get_tokenizer(args.tokenizer, train_rows)
    gpu = torch.cuda.get_device_name() if on_cuda else "cpu"
    import peft
    import transformers

    env = {"device": gpu, "torch": torch.__version__, "transformers": transformers.__version__,
           "peft": peft.__version__, "liger": liger_available(), "tokenizer": tok_name, "compile": args.compile,
           "steps": args.steps, "warmup_run": max(args.warmup, args.steps + 2), "threads": torch.get_num_threads(),
           "inductor_cache": os.environ.get("TORCHINDUCTOR_CACHE_DIR", "default")}
    header = (f"device {gpu}, torch {env['torch']}, transformers {env['transformers']}, peft {env['peft']}, liger "
              f"{'yes' if env['liger'] else 'no'}; tokenizer {tok_name}; ours compile={args.compile}; {args.steps} timed "
              f"steps after a {env['warmup_run']}-step first run; eval {len(eval_rows)} SST-2 dev rows; "
              f"torch threads {env['threads']}")
    log(header)

    e2e = None
    if args.end_to_end:  # first: its compile=max trial is this process's first compilation
        try:
            e2e = end_to_end(tok, task, train_rows, args, device)
            for line in e2e_lines(e2e):
                log(line)
        except Exception as e:  # noqa: BLE001
            traceback.print_exc()
            e2e = {"error": f"{type(e).__name__}: {e}"}
        cleanup(reset_compiled=True)

    rows: list[dict] = []
    for shape in shapes:
        log(f"building {shape}")
        master = build_master(shape, tok)
        n_body = body_params(master)
        for batch in batches:
            pool_rows = train_rows[: batch * args.pool_batches]
            for method in methods:
                row: dict = {"shape": shape, "batch": batch, "method": method, "body_params": n_body}
                try:
                    with restored_hf_modules():
                        row["ours"] = run_ours(master, tok, task, method, batch, pool_rows, eval_rows, args, device)
                except Exception as e:  # noqa: BLE001 - the other rows still run
                    traceback.print_exc()
                    row["ours"] = {"error": "OOM" if "out of memory" in str(e).lower() else type(e).__name__}
                cleanup(reset_compiled=True)
                ours = row["ours"]
                try:  # ours' batches; if ours failed, a seeded shuffle of the same rows
                    order = ours.get("order") or shuffled_batches(len(pool_rows), batch,
                                                                  max(args.warmup, args.steps + 2))
                    opts = ours.get("opts") or get_method(method).make_options()
                    row["base"] = run_baseline(master, tok, task, method, batch, pool_rows, eval_rows, order, opts,
                                               args, device)
                except Exception as e:  # noqa: BLE001
                    traceback.print_exc()
                    row["base"] = {"error": "OOM" if "out of memory" in str(e).lower() else type(e).__name__}
                cleanup()
                base = row.get("base") or {}
                if "step_ms" in ours and "step_ms" in base:
                    row["step_x"] = base["step_ms"] / ours["step_ms"]
                    row["eval_x"] = ours["eval_eps"] / base["eval_eps"]
                    row["mem_x"] = ratio(ours["peak_mib"], base["peak_mib"])
                    if on_cuda:
                        flops = (6 if ours["full_weights"] else 4) * n_body * ours["tokens_per_step"]
                        row["flops_per_step"] = flops
                        for side in (ours, base):
                            side["mfu"] = flops / (side["step_ms"] / 1000) / (args.peak_tflops * 1e12)
                ours.pop("opts", None)
                ours.pop("order", None)
                rows.append(row)
                log(f"{shape} b{batch} {method}: ours {fmt(ours.get('step_ms'), '.1f', ours.get('error', '-'))} ms, "
                    f"base {fmt(base.get('step_ms'), '.1f', base.get('error', '-'))} ms, step x "
                    f"{fmt(row.get('step_x'), '.2f', '-')}, eval x {fmt(row.get('eval_x'), '.2f', '-')}")
        del master
        cleanup(reset_compiled=True)

    print(header)
    print()
    print("\n".join(table(rows)))
    print()
    print("step x = base ms / ours ms, eval x = ours ex/s / base ex/s (above 1: ours faster); mem x = ours / base "
          "peak (below 1: ours smaller); MFU = k x non-embedding params x tokens / step time / "
          f"{args.peak_tflops:g} TFLOP/s (k = 6 full weights, 4 frozen body)")
    for line in summary(rows):
        print(line)
    if e2e is not None:
        print()
        print("\n".join(e2e_lines(e2e)) if "error" not in e2e else f"end to end failed: {e2e['error']}")
    if args.json:
        Path(args.json).write_text(json.dumps({"env": env, "args": vars(args), "rows": rows, "end_to_end": e2e},
                                              indent=2, default=str))
        print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
