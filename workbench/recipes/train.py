"""`workbench.train`: one method on one few-shot split, tracked as one MLflow run.

Everything that can be wrong with the input is checked before the model's weights are read: the
config's fields (when it is built), then the task and its data, the method's options, the template
and verbalizer files, and the label words against the vocabulary.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from workbench import resources
from workbench.adaptation import BuildContext, Method, method_for_options
from workbench.config import RunConfig, paths_with_role
from workbench.data import FewShotSplit, TaskSpec, few_shot_split, get_task
from workbench.errors import ConfigError
from workbench.prompts import Template, Verbalizer, load_templates, load_verbalizer

if TYPE_CHECKING:
    import torch

    from workbench.models import ModelRef
    from workbench.prompts import PromptEncoder
    from workbench.training import PromptClassifier

SAVE_AUTO_MAX_FRACTION = 0.05  # "auto" saves methods that train under 5% of the weights: small artifacts


@dataclass
class RunResult:
    run_id: str
    dev_accuracy: float
    test_metrics: dict[str, float]
    eval_split: str
    eval_rows: int  # rows the reported number was computed on
    trainable_params: int
    trainable_fraction: float
    train_seconds: float
    config: RunConfig

    @property
    def test_accuracy(self) -> float:
        return self.test_metrics["accuracy"]


@dataclass
class Prepared:
    """Everything a run needs, checked and built: the model with its method applied, and the encoder."""

    task: TaskSpec
    method: Method
    split: FewShotSplit
    template: Template | None
    verbalizer: Verbalizer | None
    model: PromptClassifier
    encoder: PromptEncoder
    ref: ModelRef
    device: torch.device


def load_pvp(cfg: RunConfig, task: TaskSpec, method: Method) -> tuple[Template | None, Verbalizer | None]:
    """Template and verbalizer (objects, or read from their files), checked against the task; (None, None)
    for methods that read plain input."""
    if not method.uses_verbalizer:
        return None, None
    template = cfg.prompt.template
    if not isinstance(template, Template):
        path = Path(template) if template else _builtin_file(resources.template_file(task.name), task, "template")
        templates = load_templates(path)
        if cfg.prompt.template_id not in templates:
            raise ConfigError(f"{path}: no template with id {cfg.prompt.template_id}; ids are {sorted(templates)}",
                              field="prompt.template_id")
        template = templates[cfg.prompt.template_id]
    if not template.has_mask:
        raise ConfigError(f"{template.source}: template has no {{\"mask\"}}; method {method.name!r} reads the "
                          f"label word at the mask", field="prompt.template")
    verbalizer = cfg.prompt.verbalizer
    if not isinstance(verbalizer, Verbalizer):
        verbalizer = load_verbalizer(verbalizer or _builtin_file(resources.verbalizer_file(task.name), task,
                                                                 "verbalizer"))
    verbalizer.check_classes(task.label_names)
    return template, verbalizer


def _builtin_file(path: Path, task: TaskSpec, what: str) -> Path:
    if not path.exists():
        raise ConfigError(f"task {task.name!r} has no built-in {what} file; set prompt.{what} to yours",
                          field=f"prompt.{what}")
    return path


def prepare(cfg: RunConfig, backbone=None) -> Prepared:
    """Check the input, then load the model and apply the method."""
    import torch

    from workbench.models import load_backbone, load_tokenizer, resolve_model
    from workbench.prompts import PromptEncoder
    from workbench.prompts.verbalizer import label_word_ids
    from workbench.training.trainer import pick_device

    cfg.validate()
    task = get_task(cfg.task)
    method = method_for_options(cfg.method)
    split = few_shot_split(task, cfg.shots, cfg.seed)
    template, verbalizer = load_pvp(cfg, task, method)
    if template is not None and method.rewrite_template is not None:
        template = method.rewrite_template(template, cfg.method)

    ref = resolve_model(cfg.model)
    tokenizer = load_tokenizer(ref) if backbone is None else backbone.tokenizer
    label_words = label_word_ids(verbalizer, tokenizer, cfg.prompt.multi_token) if verbalizer else None
    extra = method.extra_tokens(cfg.method) if method.extra_tokens else 0
    context = _context_length(ref, backbone)
    if extra >= context:
        raise ConfigError(f"method {method.name!r} adds {extra} prompt tokens but {cfg.model!r} has a context of "
                          f"{context} tokens", field="method")
    max_length = min(cfg.prompt.max_seq_length, context) - extra
    encoder = PromptEncoder(template, tokenizer, ref.kind, task.text_fields, max_length)
    encoder.check_fields(split.train[0])

    device = pick_device()
    if backbone is None:
        backbone = load_backbone(ref, tokenizer=tokenizer)
    ctx = BuildContext(backbone, task, template, verbalizer, label_words, split, cfg.seed)
    torch.manual_seed(cfg.seed)
    model = method.build(ctx, cfg.method).to(device)
    if method.after_build is not None:
        encoder = method.after_build(ctx, cfg.method, model, encoder)
    return Prepared(task, method, split, template, verbalizer, model, encoder, ref, device)


def _context_length(ref, backbone) -> int:
    if backbone is not None:
        return backbone.max_length
    from transformers import AutoConfig

    return int(getattr(AutoConfig.from_pretrained(ref.path), "max_position_embeddings", None) or 512)


def resolved_tree(cfg: RunConfig) -> dict[str, Any]:
    """The config tree with the defaults that depend on other choices filled in: learning rate, split."""
    tree = cfg.to_dict()
    tree["train"]["lr"] = effective_lr(cfg)
    tree["eval"]["split"] = cfg.eval.split or get_task(cfg.task).eval_split
    return tree


def identity_params(cfg: RunConfig) -> dict[str, str]:
    """The params a run logs that decide its result, as MLflow stores them: how a finished run is found again."""
    from workbench.tracking import flatten_params

    # The save policy changes no number, but a run saved with `never` (a sweep trial) cannot stand in for one
    # whose weights the user asked to keep.
    neutral = set(paths_with_role("neutral", type(cfg.method))) - {"tracking.save"}
    return {k: v for k, v in flatten_params(resolved_tree(cfg)).items() if k not in neutral}


def resolved_config(cfg: RunConfig, p: Prepared) -> dict[str, Any]:
    """The config as it ran: `resolved_tree`, plus the prompt's text and label words and where it ran."""
    tree = resolved_tree(cfg)
    tree["runtime"] = {"template_text": p.template.text if p.template else None,
                       "label_words": [list(w) for w in p.verbalizer.words] if p.verbalizer else None,
                       "model_kind": p.ref.kind.value, "device": p.device.type}
    return tree


def effective_lr(cfg: RunConfig) -> float:
    return cfg.train.lr if cfg.train.lr is not None else method_for_options(cfg.method).default_lr


def run_name(cfg: RunConfig, task: TaskSpec) -> str:
    return f"{cfg.method_name}-{task.name}-k{cfg.shots}-s{cfg.seed}"


def run_tags(cfg: RunConfig, task: TaskSpec, split: FewShotSplit, eval_split: str, identity: dict) -> dict:
    return {"task": task.name, "method": cfg.method_name, "model": cfg.model, "seed": str(cfg.seed),
            "shots": str(cfg.shots), "split_fingerprint": split.fingerprint, "eval_split": eval_split,
            **{f"model/{k}": str(v) for k, v in identity.items()}}


def train(cfg: RunConfig, backbone=None, on_eval: Callable[[int, float], None] | None = None,
          on_start: Callable[[str], None] | None = None) -> RunResult:
    """Train (or, for a method that does not train, just evaluate) and log one MLflow run.

    Returns the dev and test accuracy and the MLflow run id. `backbone` reuses a loaded model (its
    weights are changed by methods that train them). `on_start(run_id)` is called once the MLflow run
    exists; `on_eval(step, dev_accuracy)` at every evaluation, e.g. to report to a pruner: an exception
    it raises stops training and marks the run failed with that error.
    """
    import numpy as np

    from workbench.adaptation.artifacts import ARTIFACT_DIR, save_trained
    from workbench.data import compute_metrics
    from workbench.tracking import RunTracker
    from workbench.training import TrainerConfig, predict
    from workbench.training import train as train_loop
    from workbench.training.trainer import peak_memory_mb

    p = prepare(cfg, backbone)
    task, method, split, model, encoder = p.task, p.method, p.split, p.model, p.encoder
    eval_split = cfg.eval.split or task.eval_split
    eval_rows = task.load_split(eval_split)[: cfg.eval.limit]
    pad_id = encoder.tokenizer.pad_token_id
    train_enc = [encoder.encode(e) for e in split.train]
    dev_enc = [encoder.encode(e) for e in split.dev]
    eval_enc = [encoder.encode(e) for e in eval_rows]

    trainable, total = model.count_parameters()
    resolved = resolved_config(cfg, p)
    tags = run_tags(cfg, task, split, eval_split, p.ref.identity)
    with RunTracker(cfg.tracking.experiment or task.name, run_name(cfg, task), cfg.tracking.uri,
                    tags=tags) as tracker:
        if on_start is not None:
            on_start(tracker.run_id)
        tracker.log_config(resolved)
        tracker.log_dict(split.ids, "split_ids.json")
        tracker.log_metrics({"trainable_params": trainable, "trainable_fraction": trainable / total})
        train_seconds, final_step = 0.0, 0
        if method.trains:
            t = cfg.train
            tcfg = TrainerConfig(max_steps=t.max_steps, lr=effective_lr(cfg), batch_size=t.batch_size,
                                 grad_accum=t.grad_accum, warmup_ratio=t.warmup_ratio, weight_decay=t.weight_decay,
                                 eval_every=t.eval_every, patience=t.patience, eval_batch_size=cfg.eval.batch_size,
                                 seed=cfg.seed, progress=cfg.tracking.progress)

            def on_log(step: int, metrics: dict) -> None:
                tracker.log_metrics(metrics, step)
                if on_eval is not None and "eval/accuracy" in metrics:
                    on_eval(step, metrics["eval/accuracy"])

            result = train_loop(model, train_enc, dev_enc, pad_id, tcfg, on_log=on_log)
            train_seconds, final_step = result.seconds, result.steps
            tracker.log_metrics({"train/seconds": result.seconds, "train/examples_per_s": result.examples_per_s,
                                 "best_step": result.best_step})
            if _should_save(cfg.tracking.save, trainable / total):
                with tempfile.TemporaryDirectory() as tmp:
                    save_trained(model, Path(tmp), resolved)
                    tracker.log_artifacts(tmp, ARTIFACT_DIR)
        dev_scores = predict(model, dev_enc, pad_id, cfg.eval.batch_size)
        dev_acc = float((dev_scores.argmax(-1) == np.array([e.label for e in dev_enc])).mean())
        start = time.perf_counter()
        scores = predict(model, eval_enc, pad_id, cfg.eval.batch_size, progress=cfg.tracking.progress,
                         desc=eval_split)
        eval_seconds = time.perf_counter() - start
        preds = scores.argmax(-1).tolist()
        labels = [e.label for e in eval_rows]
        test = compute_metrics(labels, preds)
        # Logged at the last step so MLflow's compare view (latest value) shows the restored best state's score.
        tracker.log_metrics({"eval/accuracy": dev_acc, **{f"test/{k}": v for k, v in test.items()},
                             "test/examples_per_s": len(eval_rows) / max(eval_seconds, 1e-9),
                             "test/rows": len(eval_rows),
                             "peak_mem_mb": peak_memory_mb(p.device)}, step=final_step)
        tracker.log_predictions([e.guid for e in eval_rows], labels, preds, scores, task.label_names)
        tracker.log_confusion(labels, preds, task.label_names)
        return RunResult(tracker.run_id, dev_acc, test, eval_split, len(eval_rows), trainable, trainable / total,
                         train_seconds, cfg)


def _should_save(policy: str, fraction: float) -> bool:
    # "auto" keeps parameter-efficient artifacts (small) and skips full copies of the backbone.
    return policy == "always" or (policy == "auto" and fraction < SAVE_AUTO_MAX_FRACTION)


__all__ = ["Prepared", "RunResult", "identity_params", "load_pvp", "prepare", "train"]
