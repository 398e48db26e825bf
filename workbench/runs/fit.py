"""Fitting and scoring a prepared run, with no tracking: the trainer's settings from the run config (a learning rate
or batch size left null is the method's default), the train and evaluation passes, and what a run returns
(`RunResult`). What a job logs of it is the job's business."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from workbench.adaptation import method_for_options
from workbench.data.metrics import EvalScope
from workbench.progress import duration
from workbench.runs.config import RunConfig
from workbench.runs.prepared import PreparedRun


@dataclass
class RunResult:
    run_id: str
    dev_accuracy: float  # of the kept state: the best evaluation's, restored at the end
    test_metrics: dict[str, float]
    scope: EvalScope  # the rows the reported number was computed on
    trainable_params: int
    trainable_fraction: float
    train_seconds: float
    config: RunConfig
    best_step: int = 0  # the step whose weights were kept; 0 for a method that does not train
    steps: int = 0  # steps trained
    eval_examples_per_s: float = 0.0  # scoring speed on the evaluation split

    @property
    def test_accuracy(self) -> float:
        return self.test_metrics["accuracy"]

    @property
    def eval_split(self) -> str:
        return self.scope.split

    @property
    def eval_rows(self) -> int:
        return self.scope.rows


def effective_lr(cfg: RunConfig) -> float:
    return cfg.train.lr if cfg.train.lr is not None else method_for_options(cfg.method).default_lr


def effective_batch_size(cfg: RunConfig) -> int:
    b = cfg.train.batch_size
    return b if b is not None else method_for_options(cfg.method).default_batch_size


def trainer_config(cfg: RunConfig):
    """The trainer's settings from the run config's `train` section (method defaults filled in)."""
    from workbench.training import distributed

    return trainer_settings(cfg.train, lr=effective_lr(cfg), batch_size=effective_batch_size(cfg),
                            eval_batch_size=cfg.eval.batch_size, seed=cfg.seed,
                            progress=cfg.tracking.progress and distributed.is_main())


def trainer_settings(t, **decided):
    """The trainer's settings from a `train` section (`TrainConfig`), for any job that trains; `decided`: what the
    job resolves itself (the rate and batch size with the method's defaults, the seed, progress bars, ...)."""
    from workbench.training import TrainerConfig

    return TrainerConfig(max_steps=t.max_steps, grad_accum=t.grad_accum, warmup_ratio=t.warmup_ratio,
                         weight_decay=t.weight_decay, eval_every=t.eval_every, patience=t.patience,
                         compile=t.compile, **decided)


@dataclass
class FitScores:
    """What training and evaluating a prepared run produced, before anything is logged."""

    dev_accuracy: float
    test_metrics: dict[str, float]
    eval_rows: list  # the rows the reported number was computed on
    scores: Any  # numpy [rows, classes]
    eval_seconds: float
    fit: Any  # the trainer's TrainResult; None for a method that does not train


def fit_and_score(p: PreparedRun, cfg: RunConfig, on_log: Callable[[int, dict], None] | None = None) -> FitScores:
    """Train the prepared model (when the method trains) with the best dev state restored, then score the dev
    split and the evaluation split. No tracking: `train` logs what this returns."""
    import numpy as np

    from workbench.data import compute_metrics
    from workbench.training import predict
    from workbench.training import train as train_loop

    encoder, pad_id = p.encoder, p.encoder.tokenizer.pad_token_id
    eval_rows = p.eval_rows
    dev_enc = [encoder.encode(e) for e in p.split.dev]
    eval_enc = [encoder.encode(e) for e in eval_rows]
    fit = None
    if p.method.trains:
        fit = train_loop(p.model, [encoder.encode(e) for e in p.split.train], dev_enc, pad_id, trainer_config(cfg),
                         on_log=on_log)
    dev_scores = predict(p.model, dev_enc, pad_id, cfg.eval.batch_size)
    dev_acc = float((dev_scores.argmax(-1) == np.array([e.label for e in dev_enc])).mean())
    start = time.perf_counter()
    scores = predict(p.model, eval_enc, pad_id, cfg.eval.batch_size, progress=cfg.tracking.progress,
                     desc=p.eval_split)
    eval_seconds = time.perf_counter() - start
    test = compute_metrics([e.label for e in eval_rows], scores.argmax(-1).tolist())
    return FitScores(dev_acc, test, eval_rows, scores, eval_seconds, fit)


class Forecast:
    """What a run will do, said as it starts, and how long each part should take, said as soon as it is
    measured: the training time after the second step (the first carries one-time costs, such as the optimizer's
    state, that would inflate the estimate threefold), the scoring time after the first dev evaluation (the same
    batched forward pass as the final scoring). A 20-minute run must not look like a 2-minute one until it ends."""

    def __init__(self, cfg: RunConfig, p: PreparedRun):
        self.trains = p.method.trains
        self.steps = cfg.train.max_steps
        self.batch = effective_batch_size(cfg) * cfg.train.grad_accum
        self.dev_rows = len(p.split.dev)
        self.scope = p.scope
        self.last = 0.0  # when the previous step ended
        self.first_step = 0.0
        self.scoring_said = False

    def plan(self) -> str:
        training = f"{self.steps} training steps of {self.batch} examples, then " if self.trains else ""
        hint = "" if self.scope.limited or self.scope.total <= 500 else " (--eval-limit N scores fewer, for a quick look)"
        return f"this run: {training}scoring {self.scope.describe()}{hint}"

    def start(self) -> None:
        self.last = time.perf_counter()

    def on_log(self, step: int, metrics: dict) -> str | None:
        """A line to say after this step, or None."""
        now = time.perf_counter()
        took, self.last = now - self.last, now
        rate = metrics.get("eval/examples_per_s")
        if rate:
            took -= self.dev_rows / rate  # the step's dev evaluation is not training time
        lines = []
        if step == 1:
            self.first_step = took
        elif step == 2:
            expected = self.first_step + took * (self.steps - 1)
            lines.append(f"training: about {duration(expected)} ({self.steps} steps at {took:.1f} s, measured at "
                         f"step 2; step 1 took {self.first_step:.1f} s)")
        if rate and not self.scoring_said:
            self.scoring_said = True
            lines.append(f"scoring {self.scope.describe()} after training: about {duration(self.scope.rows / rate)} "
                         f"(the dev split was scored at {rate:.1f} rows/s)")
        return "\n".join(lines) or None
