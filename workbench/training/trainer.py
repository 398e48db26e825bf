"""One training loop for every method and objective: AdamW, linear warm-up and decay, gradient accumulation,
bf16 autocast on CUDA, evaluation on the dev split every N steps, early stopping, and the best state restored at
the end.

What is trained for is an `Objective`: how examples become a batch, the loss of a batch, and the dev metric that
picks the state kept. `Classification` (the default): cross-entropy on the labels, or, for examples that carry a
teacher's scores (`target`: PET's distillation), the temperature-softened KL divergence from them; dev accuracy.
`LanguageModeling`: next-token loss on the response tokens (instruction tuning); dev loss. An auxiliary loss (PET's
language-model loss on unlabelled text) can be mixed in with a weight."""

from __future__ import annotations

import contextlib
import math
import random
import resource
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from workbench.errors import WorkbenchError
from workbench.prompts.encoding import EncodedExample, collate
from workbench.training import distributed
from workbench.training.classifier import PromptClassifier


class Diverged(WorkbenchError, FloatingPointError):
    """The loss, or a trained parameter, became non-finite (inf or nan) at a step: whatever the run would score
    next means nothing, so it ends here, in one line naming the step (its MLflow run ends FAILED) and with no
    accuracy reported."""


def _check_finite(params: dict[str, torch.Tensor], step: int) -> None:
    """Refuse a state that holds a non-finite value (one device read for all parameters) before it is scored or
    kept: a loss that was finite can still have pushed the weights to inf or nan in the update after it."""
    finite = torch.stack([torch.isfinite(p).all() for p in params.values()])
    if not bool(finite.all()):
        name = next(n for n, ok in zip(params, finite.tolist()) if not ok)
        raise Diverged(f"training diverged at step {step} ({name} is no longer finite); no result is reported; "
                       f"lower the learning rate or the weight decay")


@dataclass
class TrainerConfig:
    max_steps: int = 100
    lr: float = 1e-5
    batch_size: int = 8
    grad_accum: int = 1
    warmup_ratio: float = 0.1
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    eval_every: int = 20
    patience: int | None = None  # evaluations without improvement before stopping; None = never
    eval_batch_size: int = 32
    seed: int = 13
    progress: bool = True
    temperature: float = 2.0  # softens teacher and student scores for examples with a `target` (distillation)
    aux_weight: float = 0.0  # loss = (1 - w) * task loss + w * aux_loss(); PET's language-model weight is 1e-4
    checkpoint_every: int = 0  # steps between calls of `on_checkpoint` (a long job's resume points); 0 = never
    # Batches of similar length (shuffled in groups of 50 batches, each group sorted): far less padding when
    # lengths vary widely (instruction data), the same examples per epoch.
    group_by_length: bool = False
    compile: str = "off"  # "auto" | "off" | "max": see `compile_plan`


COMPILE_MODES = ("auto", "off", "max")
# auto compiles on CUDA only, and only runs this long: compiling took 62-82 s before the first fast step in the
# measured probe while a compiled step saves about 0.1 s, so a 30-step few-shot run would only lose by it. Later runs
# in the same machine reuse inductor's on-disk graph cache and compile in a fraction of that.
COMPILE_MIN_STEPS = 600
LENGTH_BUCKET = 16  # compiled steps pad to multiples of this many tokens: a few shapes, a few compilations


def compile_plan(mode: str, device: torch.device, micro_steps: int) -> bool:
    """Whether a run compiles its steps: `max` always, `off` never, `auto` on CUDA for runs of at least
    COMPILE_MIN_STEPS micro-batches."""
    if mode not in COMPILE_MODES:
        raise ValueError(f"compile {mode!r}: expected one of {COMPILE_MODES}")
    return mode == "max" or (mode == "auto" and device.type == "cuda" and micro_steps >= COMPILE_MIN_STEPS)


def transformer_body(model: torch.nn.Module) -> torch.nn.Module:
    """The transformer stack inside a method's model (LlamaModel, BertModel), through PEFT's and Hugging Face's
    wrappers: what `torch.compile` compiles."""
    body = model.model
    while getattr(body, "base_model", body) is not body:
        body = body.base_model
    return body


@contextlib.contextmanager
def compiled_body(model: torch.nn.Module, device: torch.device):
    """Within the block the transformer body runs compiled (CUDA graphs on CUDA). The body only: what methods add
    around it (soft prompts inserted into the embeddings, heads that read the label words' rows of the output layer)
    stays eager, so every method compiles the same graph and stays correct."""
    import torch._dynamo

    # Each run's model is a new object, and training and evaluation differ in grad mode: every run adds graphs for
    # the same code. Dynamo's default limit (8) would send a sweep's later trials back to eager.
    torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 256)
    torch._dynamo.config.accumulated_recompile_limit = max(torch._dynamo.config.accumulated_recompile_limit, 4096)
    body = transformer_body(model)
    body.forward = torch.compile(body.forward, dynamic=False,
                                 mode="reduce-overhead" if device.type == "cuda" else None)
    try:
        yield
    finally:
        del body.forward


def compiled_graphs() -> int:
    """Graphs compiled so far in this process (dynamo's count): a run logs how many it added."""
    from torch._dynamo.utils import counters

    return int(counters["stats"]["unique_graphs"])


@dataclass
class TrainResult:
    best_step: int
    best_dev: float  # the objective's dev metric at the kept step (accuracy, or loss for language modelling)
    steps: int
    seconds: float
    examples_per_s: float
    history: list[dict] = field(default_factory=list)
    compiled_graphs: int = 0  # graphs torch.compile built for this run (0: eager)


def _grouped_by_length(chunks: list[list[int]], lengths: list[int], rng: random.Random,
                       group: int = 50) -> list[list[int]]:
    """The same examples re-cut so each batch holds similar lengths: in groups of `group` batches (in shuffled
    order), sorted by length and cut again; the batches are then shuffled, so long and short ones alternate."""
    out: list[list[int]] = []
    size = len(chunks[0]) if chunks else 0
    for g in range(0, len(chunks), group):
        members = sorted((i for c in chunks[g : g + group] for i in c), key=lambda i: lengths[i])
        out += [members[s : s + size] for s in range(0, len(members), size)]
    rng.shuffle(out)
    return out


def pick_device() -> torch.device:
    """The GPU when there is one (this process's own under `torchrun`), else the CPU."""
    from workbench.training import distributed

    return distributed.device()


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    # Peak resident memory of the whole process (KiB on Linux): an upper bound on the CPU.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _autocast(device: torch.device):
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")


def hold_frozen_in_bf16(model: torch.nn.Module) -> int:
    """Frozen fp32 parameters stored in bf16, once (CUDA). Under bf16 autocast every one of them would otherwise be
    cast again at every step: a quarter of the GPU's time in the measured profile (reference/GPU.md). Trainable
    parameters stay fp32, the optimizer's master weights. A module with a trainable parameter keeps its frozen ones
    in fp32 too: a layer norm whose bias trains (BitFit) and whose gain is bf16 fails outside autocast's casts.
    A backbone passed in keeps its frozen weights in bf16. Returns how many parameters were cast."""
    cast: set[int] = set()
    for module in model.modules():
        own = list(module.parameters(recurse=False))
        if any(p.requires_grad for p in own):
            continue
        for p in own:
            if p.dtype == torch.float32 and id(p) not in cast:
                p.data = p.data.to(torch.bfloat16)
                cast.add(id(p))
    return len(cast)


def _to(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    """The batch on `device`. On CUDA from pinned memory and without waiting: the copy overlaps the work queued
    before it, and the loop goes on collating the next batch."""
    if device.type != "cuda":
        return {k: v.to(device) for k, v in batch.items()}
    return {k: v.pin_memory().to(device, non_blocking=True) for k, v in batch.items()}


def length_batches(examples: list, batch_size: int,
                   length: Callable[[Any], int] = lambda e: len(e.input_ids)) -> Iterator[list[int]]:
    """Indices in batches of similar length, so padding is per batch and small."""
    order = sorted(range(len(examples)), key=lambda i: length(examples[i]))
    for start in range(0, len(order), batch_size):
        yield order[start : start + batch_size]


@torch.no_grad()
def predict(model: PromptClassifier, examples: list[EncodedExample], pad_id: int, batch_size: int = 32,
            progress: bool = False, desc: str = "eval", bucket: int = 1) -> np.ndarray:
    """Class scores [N, C] in the order of `examples`; batches padded to a multiple of `bucket` tokens."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    out: list[tuple[list[int], torch.Tensor]] = []
    batches = list(length_batches(examples, batch_size))
    for idx in tqdm(batches, desc=desc, disable=not progress, leave=False, file=sys.stderr):
        with _autocast(device):
            scores = model(_to(collate([examples[i] for i in idx], pad_id, bucket), device))
        out.append((idx, scores.float().cpu()))
    model.train(was_training)
    result = torch.empty(len(examples), out[0][1].shape[1]) if out else torch.empty(0, 0)
    for idx, scores in out:
        result[idx] = scores
    return result.numpy()


def accuracy(scores: np.ndarray, examples: list[EncodedExample]) -> float:
    labels = np.array([e.label for e in examples])
    return float((scores.argmax(-1) == labels).mean()) if len(labels) else 0.0


def distillation_loss(scores: torch.Tensor, targets: torch.Tensor, temperature: float) -> torch.Tensor:
    """KL(softmax(targets / T) || softmax(scores / T)) * T^2, averaged over the batch (Hinton et al.; PET's
    distillation). The T^2 keeps gradient sizes comparable across temperatures."""
    t = temperature
    return F.kl_div(F.log_softmax(scores / t, -1), F.softmax(targets / t, -1), reduction="batchmean") * t * t


def task_loss(scores: torch.Tensor, batch: dict[str, torch.Tensor], temperature: float) -> torch.Tensor:
    if "targets" in batch:
        return distillation_loss(scores, batch["targets"], temperature)
    return F.cross_entropy(scores, batch["labels"])


class Objective(Protocol):
    """What `train` optimises and how it picks the state to keep."""

    metric: str  # the dev metric's name in the run (`eval/accuracy`, `eval/loss`)
    higher_is_better: bool

    def collate(self, examples: list) -> dict[str, torch.Tensor]: ...

    def loss(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor: ...

    def evaluate(self, model: torch.nn.Module, examples: list) -> float: ...


@dataclass
class Classification:
    """Class scores against labels (or a teacher's scores); the dev metric is accuracy."""

    pad_id: int
    temperature: float = 2.0
    eval_batch_size: int = 32
    metric: str = "eval/accuracy"
    higher_is_better: bool = True
    bucket: int = 1  # pad batches to a multiple of this many tokens (compiled steps)

    def collate(self, examples: list[EncodedExample]) -> dict[str, torch.Tensor]:
        return collate(examples, self.pad_id, self.bucket)

    def loss(self, model: PromptClassifier, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        with _autocast(batch["input_ids"].device):
            scores = model(batch)
        return task_loss(scores.float(), batch, self.temperature)

    def evaluate(self, model: PromptClassifier, examples: list[EncodedExample]) -> float:
        return accuracy(predict(model, examples, self.pad_id, self.eval_batch_size, bucket=self.bucket), examples)


@dataclass
class LanguageModeling:
    """Next-token loss on the labelled (response) tokens of `causal_lm.EncodedLM` examples; the dev metric is the
    loss per response token over the whole dev set."""

    pad_id: int
    eval_batch_size: int = 16
    metric: str = "eval/loss"
    higher_is_better: bool = False
    bucket: int = 1

    def collate(self, examples: list) -> dict[str, torch.Tensor]:
        from workbench.training.causal_lm import collate_lm

        return collate_lm(examples, self.pad_id, self.bucket)

    def loss(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        with _autocast(batch["input_ids"].device):
            return model(batch)

    @torch.no_grad()
    def evaluate(self, model: torch.nn.Module, examples: list) -> float:
        device = next(model.parameters()).device
        was_training = model.training
        model.eval()
        total, tokens = 0.0, 0
        for idx in length_batches(examples, self.eval_batch_size):
            chunk = [examples[i] for i in idx]
            n = sum(e.response_tokens for e in chunk)
            with _autocast(device):
                total += float(model(_to(self.collate(chunk), device))) * n
            tokens += n
        model.train(was_training)
        return total / max(tokens, 1)


def _optimizer(model: PromptClassifier, cfg: TrainerConfig, device: torch.device) -> torch.optim.Optimizer:
    groups = []
    for group in model.param_groups(cfg.lr):
        # No weight decay on biases and norms, as is usual for transformers.
        decay = [p for p in group["params"] if p.ndim >= 2]
        no_decay = [p for p in group["params"] if p.ndim < 2]
        groups += [{"params": ps, "lr": group["lr"], "weight_decay": wd}
                   for ps, wd in ((decay, cfg.weight_decay), (no_decay, 0.0)) if ps]
    fused = device.type == "cuda"
    return torch.optim.AdamW(groups, lr=cfg.lr, fused=fused) if fused else torch.optim.AdamW(groups, lr=cfg.lr)


def read_checkpoint(path) -> dict:
    """A checkpoint `train(on_checkpoint=...)` wrote (`torch.save` of tensors, numbers, lists and dicts), read with
    `weights_only=True`: torch's restricted unpickler refuses any other object before it is built, so a pickle put
    in the checkpoint's place (by whoever can write or hand over the folder) never runs code. Anything else is one
    WorkbenchError naming the file."""
    import pickle
    import warnings

    try:
        with warnings.catch_warnings():  # a pickle of another protocol warns first; the refusal below says it all
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:  # "Weights only load failed ...": an object a checkpoint never holds
        # torch's message opens by advising to load it without weights_only (running its code): only its reason, the
        # lines after that paragraph, is passed on
        reasons = [line.rpartition("WeightsUnpickler error:")[2].strip() for line in str(e).splitlines()[1:]]
        reason = next((r for r in reasons if r and not r.startswith("Check the documentation")), "an object")
        raise WorkbenchError(f"{path}: refused: not a checkpoint this workbench wrote (it holds what a checkpoint "
                             f"never does: {reason}); nothing in it was run; delete it to start over") from None
    except (OSError, RuntimeError, EOFError, ValueError) as e:
        raise WorkbenchError(f"{path}: not readable as a checkpoint ({_first_line(e)}); delete it to start "
                             f"over") from None
    if not isinstance(state, dict) or not {"step", "params", "optimizer", "scheduler"} <= set(state):
        raise WorkbenchError(f"{path}: not a checkpoint this workbench wrote (no step, params, optimizer and "
                             f"scheduler); delete it to start over")
    return state


def _first_line(e: BaseException) -> str:
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    return lines[0] if lines else type(e).__name__


def _restore(state: dict, trainable: dict[str, torch.nn.Parameter], optimizer, scheduler, best: dict,
             history: list[dict]) -> int:
    """Put a checkpoint's state back (see `train`); returns the step it was taken at."""
    missing = sorted(set(trainable) - set(state["params"]))
    if missing:
        raise ValueError(f"the checkpoint does not fit this model: no {missing[0]}")
    with torch.no_grad():
        for n, p in trainable.items():
            p.copy_(state["params"][n].to(p.device, p.dtype))
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    best.update(state["best"])
    history.extend(state["history"])
    torch.set_rng_state(state["torch_rng"])
    return int(state["step"])


def train(model: torch.nn.Module, train_set: list, dev_set: list, pad_id: int, cfg: TrainerConfig,
          on_log: Callable[[int, dict], None] | None = None, aux_loss: Callable[[], torch.Tensor] | None = None,
          resume: dict | None = None, on_checkpoint: Callable[[dict], None] | None = None,
          objective: Objective | None = None) -> TrainResult:
    """Train `model` on `train_set`, keeping the state with the best dev metric of `objective` on `dev_set` (the
    last state when `dev_set` is empty). The objective defaults to `Classification` (dev accuracy). `aux_loss()`,
    when given with `cfg.aux_weight`, is computed at every micro-batch.

    Every `cfg.checkpoint_every` steps `on_checkpoint(state)` receives everything needed to go on (trained
    parameters, optimizer and schedule, the best state so far, the random state); `resume=state` goes on from it
    as if training had never stopped: same batches, same schedule, same result."""
    device = next(model.parameters()).device
    if not model.trainable_parameters():
        raise ValueError("the method left no parameter trainable")
    objective = objective or Classification(pad_id, cfg.temperature, cfg.eval_batch_size)
    distributed.setup()  # under torchrun: join the process group; each step then averages gradients across it
    sign = 1.0 if objective.higher_is_better else -1.0  # the kept state maximises sign * metric
    torch.manual_seed(cfg.seed)
    rng = random.Random(cfg.seed)
    optimizer = _optimizer(model, cfg, device)
    warmup = int(cfg.warmup_ratio * cfg.max_steps)

    def schedule(step: int) -> float:
        if step < warmup:
            return (step + 1) / max(1, warmup)
        return max(0.0, (cfg.max_steps - step) / max(1, cfg.max_steps - warmup))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
    best = {"step": 0, "value": -math.inf, "state": None}  # value: sign * metric
    history: list[dict] = []
    evals_since_best = 0

    def batches() -> Iterator[list]:
        while True:
            order = list(range(len(train_set)))
            rng.shuffle(order)
            chunks = [order[s : s + cfg.batch_size] for s in range(0, len(order), cfg.batch_size)]
            if len(chunks) > 1 and len(chunks[-1]) < cfg.batch_size:
                chunks.pop()  # drop the ragged tail: every step sees a full batch
            if cfg.group_by_length:
                chunks = _grouped_by_length(chunks, [len(e.input_ids) for e in train_set], rng)
            for chunk in chunks:
                yield [train_set[i] for i in chunk]

    stream = batches()
    done = 0
    if resume is not None:
        done = _restore(resume, trainable, optimizer, scheduler, best, history)
        evals_since_best = resume["evals_since_best"]
        for _ in range(done * cfg.grad_accum):  # the batch order is the seeded shuffle's: replay it to this step
            next(stream)
    if device.type == "cuda":
        from workbench.training.kernels import apply_fused_kernels

        hold_frozen_in_bf16(model)
        apply_fused_kernels(model.model)  # Liger's kernels when installed; the eager path otherwise
    # Compiled steps: the body compiled, batches padded to length buckets (a few shapes, a few compilations); the
    # dev evaluations run through it too.
    compiling = compile_plan(cfg.compile, device, cfg.max_steps * cfg.grad_accum)
    graphs_before = compiled_graphs()
    if compiling:
        import dataclasses

        objective = dataclasses.replace(objective, bucket=LENGTH_BUCKET)
    with contextlib.ExitStack() as scope:
        if compiling:
            scope.enter_context(compiled_body(model, device))
        model.train()
        start = time.perf_counter()
        eval_seconds = 0.0
        seen = 0
        bar = tqdm(total=cfg.max_steps, initial=done, desc="train", disable=not cfg.progress, file=sys.stderr)
        step = done
        # a checkpoint taken as early stopping struck has nothing left to train
        last = done if cfg.patience is not None and evals_since_best >= cfg.patience else cfg.max_steps
        # Each step's loss stays on the device until a log point (the first two steps, for the time forecast; every
        # evaluation; a checkpoint; the end): reading it at every step would make the host wait for the device at every
        # step, and the device then idles while the host prepares the next one.
        pending: list[tuple[int, torch.Tensor, float, dict]] = []

        def flush() -> None:
            if not pending:
                return
            # one transfer for all of them; under torchrun, the whole batch's loss (each process has its share's)
            losses = distributed.mean_across(torch.stack([loss for _, loss, _, _ in pending])).tolist()
            for (s, _, lr, evaluated), value in zip(pending, losses):
                record = {"train/loss": value, "train/lr": lr, **evaluated}
                history.append({"step": s, **record})
                if on_log:
                    on_log(s, record)
                if not math.isfinite(value):
                    raise Diverged(f"training diverged at step {s} (loss {value}); no result is reported; lower "
                                   f"the learning rate")
            pending.clear()
            bar.set_postfix(loss=f"{losses[-1]:.3f}", dev=f"{sign * best['value']:.3f}" if best["state"] is not None
                            else "-")

        for step in range(done + 1, last + 1):
            loss_sum = torch.zeros((), device=device)
            for _ in range(cfg.grad_accum):
                chunk = distributed.share(next(stream), cfg.batch_size)  # every process drew the same batch
                loss = objective.loss(model, _to(objective.collate(chunk), device))
                if aux_loss is not None and cfg.aux_weight:
                    loss = (1 - cfg.aux_weight) * loss + cfg.aux_weight * aux_loss()
                loss = loss / cfg.grad_accum
                loss.backward()
                loss_sum += loss.detach()
                seen += len(chunk) * distributed.world_size()
            distributed.average_gradients(list(trainable.values()))
            if cfg.max_grad_norm:
                torch.nn.utils.clip_grad_norm_(list(trainable.values()), cfg.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            evaluated = {}
            if dev_set and (step % cfg.eval_every == 0 or step == cfg.max_steps):
                try:
                    _check_finite(trainable, step)
                except Diverged:
                    flush()  # a non-finite loss logged before this step is named at its own step, not this one
                    raise
                t0 = time.perf_counter()
                value = objective.evaluate(model, dev_set)
                took = time.perf_counter() - t0
                eval_seconds += took
                evaluated = {objective.metric: value, "eval/examples_per_s": len(dev_set) / max(took, 1e-9)}
                if sign * value > best["value"]:
                    best.update(step=step, value=sign * value,
                                state={n: p.detach().clone() for n, p in trainable.items()})
                    evals_since_best = 0
                else:
                    evals_since_best += 1
            pending.append((step, loss_sum, scheduler.get_last_lr()[0], evaluated))
            bar.update(1)
            stop = cfg.patience is not None and evals_since_best >= cfg.patience
            checkpoint = on_checkpoint is not None and cfg.checkpoint_every and (
                step % cfg.checkpoint_every == 0 or stop or step == cfg.max_steps)
            if step <= done + 2 or evaluated or checkpoint or stop or step == last:
                flush()
            if checkpoint:
                on_checkpoint({"step": step, "params": {n: p.detach().cpu().clone() for n, p in trainable.items()},
                               "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                               "best": best, "history": history, "evals_since_best": evals_since_best,
                               "torch_rng": torch.get_rng_state()})
            if stop:
                break
        flush()
        if best["state"] is None:  # the last state is the one kept: checked as an evaluated one is
            _check_finite(trainable, step)
    bar.close()
    seconds = time.perf_counter() - start - eval_seconds
    if best["state"] is not None:
        with torch.no_grad():
            for n, p in trainable.items():
                p.copy_(best["state"][n])
    return TrainResult(
        best_step=best["step"], best_dev=sign * best["value"] if best["state"] is not None else math.nan, steps=step,
        seconds=seconds,
        examples_per_s=seen / seconds if seconds > 0 else 0.0, history=history,
        compiled_graphs=compiled_graphs() - graphs_before if compiling else 0,
    )
