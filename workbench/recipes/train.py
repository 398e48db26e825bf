"""`workbench train`: one method on one few-shot split, tracked as one MLflow run.

Everything that can be wrong with the input is checked before the model's weights are read:
task and data, method and its options, template and verbalizer files, label words against the vocabulary.
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from workbench.errors import ConfigError, WorkbenchError
from workbench.adaptation import BuildContext, get_method
from workbench.adaptation import icl as icl_method
from workbench.adaptation.artifacts import ARTIFACT_DIR, save_trained
from workbench.models import load_backbone, load_tokenizer, resolve_model
from workbench.prompts import PromptEncoder, load_templates, load_verbalizer
from workbench.prompts.verbalizer import label_word_ids
from workbench.data import compute_metrics, few_shot_split, get_task
from workbench.tracking import RunTracker
from workbench.training import PromptClassifier, TrainerConfig, predict, train
from workbench.training.trainer import peak_memory_mb, pick_device

REPO_ROOT = Path(__file__).resolve().parents[2]
TEMPLATES_DIR = REPO_ROOT / "templates"
VERBALIZERS_DIR = REPO_ROOT / "verbalizers"
DEFAULT_MODEL = "smollm2-135m"
SAVE_AUTO_MAX_FRACTION = 0.05


@dataclass
class RunConfig:
    task: str = "sst2"
    method: str = "prompt-finetune"
    model: str = DEFAULT_MODEL
    shots: int = 16
    seed: int = 13
    template_id: int = 0
    template_file: str | None = None  # default: templates/<task>.txt
    verbalizer_file: str | None = None  # default: verbalizers/<task>.txt
    multi_token: str | None = None  # "first" | "mean" for label words of several tokens
    max_seq_length: int = 128
    max_steps: int = 30
    lr: float | None = None  # None: the method's default
    batch_size: int = 8
    grad_accum: int = 1
    warmup_ratio: float = 0.1
    weight_decay: float = 0.0
    eval_every: int = 10
    patience: int | None = None
    eval_batch_size: int = 32
    eval_split: str | None = None  # default: the task's reported split (test for sst2)
    eval_limit: int | None = None  # evaluate on the first N rows of the reported split (smoke runs only)
    method_options: dict = field(default_factory=dict)
    save: str = "auto"  # trained weights as a run artifact: auto (parameter-efficient only) | always | never
    tracking_uri: str | None = None
    experiment: str | None = None  # default: the task's name
    progress: bool = True

    @classmethod
    def from_dict(cls, raw: dict, source: str = "config") -> RunConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(raw) - names
        if unknown:
            raise ConfigError(f"{source}: unknown field(s) {sorted(unknown)}; known fields: {sorted(names)}")
        return cls(**raw)


@dataclass
class RunResult:
    run_id: str
    dev_accuracy: float
    test_metrics: dict[str, float]
    eval_split: str
    trainable_params: int
    trainable_fraction: float
    train_seconds: float
    config: RunConfig


def default_template_file(task: str) -> Path:
    return TEMPLATES_DIR / f"{task}.txt"


def default_verbalizer_file(task: str) -> Path:
    return VERBALIZERS_DIR / f"{task}.txt"


@dataclass
class Prepared:
    """Everything a run needs, checked and built: the model with its method applied, and the encoder."""

    task: object
    method: object
    options: object
    split: object
    template: object
    verbalizer: object
    model: PromptClassifier
    encoder: PromptEncoder
    ref: object
    device: torch.device


def load_pvp(cfg: RunConfig, task, method):
    """Template and verbalizer from their files, checked against the task; (None, None) for plain input."""
    if not method.uses_verbalizer:
        return None, None
    tfile = Path(cfg.template_file) if cfg.template_file else default_template_file(task.name)
    templates = load_templates(tfile)
    if cfg.template_id not in templates:
        raise ConfigError(f"{tfile}: no template with id {cfg.template_id}; ids are {sorted(templates)}")
    template = templates[cfg.template_id]
    if not template.has_mask:
        raise ConfigError(f"{template.source}: template has no {{\"mask\"}}; method {method.name!r} reads the "
                          f"label word at the mask")
    verbalizer = load_verbalizer(cfg.verbalizer_file or default_verbalizer_file(task.name))
    verbalizer.check_classes(task.label_names)
    return template, verbalizer


def prepare(cfg: RunConfig, backbone=None, pvp=None) -> Prepared:
    """Check the input, then load the model and apply the method. `pvp` = (template, verbalizer) overrides files."""
    task = get_task(cfg.task)
    method = get_method(cfg.method)
    options = method.parse_options(cfg.method_options)
    split = few_shot_split(task, cfg.shots, cfg.seed)
    template, verbalizer = pvp if pvp is not None else load_pvp(cfg, task, method)
    if template is not None and method.adapt_template is not None:
        template = method.adapt_template(template, options)

    ref = resolve_model(cfg.model)
    tokenizer = load_tokenizer(ref) if backbone is None else backbone.tokenizer
    label_words = label_word_ids(verbalizer, tokenizer, cfg.multi_token) if verbalizer else None
    extra = method.extra_tokens(options) if method.extra_tokens else 0
    context = _context_length(ref, backbone)
    if extra >= context:
        raise ConfigError(f"method {method.name!r} adds {extra} prompt tokens but {cfg.model!r} has a context of "
                          f"{context} tokens")
    max_length = min(cfg.max_seq_length, context) - extra
    encoder = PromptEncoder(template, tokenizer, ref.kind, task.text_fields, max_length)
    encoder.check_fields(split.train[0])

    device = pick_device()
    if backbone is None:
        backbone = load_backbone(ref, tokenizer=tokenizer)
    ctx = BuildContext(backbone, task, template, verbalizer, label_words, split, cfg.seed)
    torch.manual_seed(cfg.seed)
    model = method.build(ctx, options).to(device)
    if method.name == "icl":
        demos = icl_method.demonstrations(ctx, options)
        # Demonstrations come on top of the query's own length budget; the model's context still caps both.
        demo_len = len(tokenizer(demos, add_special_tokens=False)["input_ids"])
        encoder = PromptEncoder(template, tokenizer, ref.kind, task.text_fields,
                                min(max_length + demo_len, context), prefix_text=demos)
        if options.calibrate:
            cf = predict(model, [encoder.encode(icl_method.content_free_example(ctx))], tokenizer.pad_token_id)
            icl_method.set_calibration(model, torch.from_numpy(cf))
    return Prepared(task, method, options, split, template, verbalizer, model, encoder, ref, device)


def _context_length(ref, backbone) -> int:
    if backbone is not None:
        return backbone.max_length
    from transformers import AutoConfig

    return int(getattr(AutoConfig.from_pretrained(ref.path), "max_position_embeddings", None) or 512)


def run(cfg: RunConfig, backbone=None, on_eval: Callable[[int, float], None] | None = None) -> RunResult:
    """Train (or, for icl, just evaluate) and log one MLflow run.

    `backbone` reuses a loaded model (its weights are changed by methods that train them).
    `on_eval(step, dev_accuracy)` is called at every evaluation, e.g. to report to a pruner; an
    exception it raises stops training and marks the run failed with that error.
    """
    eval_split = cfg.eval_split or get_task(cfg.task).eval_split
    p = prepare(cfg, backbone)
    task, method, options, split, model, encoder = p.task, p.method, p.options, p.split, p.model, p.encoder
    eval_rows = task.load_split(eval_split)[: cfg.eval_limit]
    pad_id = encoder.tokenizer.pad_token_id
    train_enc = [encoder.encode(e) for e in split.train]
    dev_enc = [encoder.encode(e) for e in split.dev]
    eval_enc = [encoder.encode(e) for e in eval_rows]

    trainable, total = model.count_parameters()
    lr = cfg.lr if cfg.lr is not None else method.default_lr
    resolved = {**dataclasses.asdict(cfg), "lr": lr, "method_options": dataclasses.asdict(options),
                "template": p.template.text if p.template else None,
                "verbalizer": [list(w) for w in p.verbalizer.words] if p.verbalizer else None,
                "model_kind": p.ref.kind.value, "eval_split": eval_split, "device": p.device.type}
    tags = {"task": task.name, "method": method.name, "model": cfg.model, "seed": str(cfg.seed),
            "shots": str(cfg.shots), "split_fingerprint": split.fingerprint, "eval_split": eval_split,
            **{f"model/{k}": str(v) for k, v in p.ref.identity.items()}}
    with RunTracker(cfg.experiment or task.name, f"{method.name}-{task.name}-k{cfg.shots}-s{cfg.seed}",
                    cfg.tracking_uri, tags=tags) as tracker:
        tracker.log_config(resolved)
        tracker.log_dict(split.ids, "split_ids.json")
        tracker.log_metrics({"trainable_params": trainable, "trainable_fraction": trainable / total})
        train_seconds, final_step = 0.0, 0
        if method.trains:
            tcfg = TrainerConfig(max_steps=cfg.max_steps, lr=lr, batch_size=cfg.batch_size, grad_accum=cfg.grad_accum,
                                 warmup_ratio=cfg.warmup_ratio, weight_decay=cfg.weight_decay,
                                 eval_every=cfg.eval_every, patience=cfg.patience,
                                 eval_batch_size=cfg.eval_batch_size, seed=cfg.seed, progress=cfg.progress)

            def on_log(step: int, metrics: dict) -> None:
                tracker.log_metrics(metrics, step)
                if on_eval is not None and "eval/accuracy" in metrics:
                    on_eval(step, metrics["eval/accuracy"])

            result = train(model, train_enc, dev_enc, pad_id, tcfg, on_log=on_log)
            train_seconds, final_step = result.seconds, result.steps
            tracker.log_metrics({"train/seconds": result.seconds, "train/examples_per_s": result.examples_per_s,
                                 "best_step": result.best_step})
            if _should_save(cfg.save, trainable / total):
                with tempfile.TemporaryDirectory() as tmp:
                    save_trained(model, Path(tmp), resolved)
                    tracker.log_artifacts(tmp, ARTIFACT_DIR)
        dev_scores = predict(model, dev_enc, pad_id, cfg.eval_batch_size)
        dev_acc = float((dev_scores.argmax(-1) == np.array([e.label for e in dev_enc])).mean())
        start = time.perf_counter()
        scores = predict(model, eval_enc, pad_id, cfg.eval_batch_size, progress=cfg.progress, desc=eval_split)
        eval_seconds = time.perf_counter() - start
        preds = scores.argmax(-1).tolist()
        labels = [e.label for e in eval_rows]
        test = compute_metrics(labels, preds)
        # Logged at the last step so MLflow's compare view (latest value) shows the restored best state's score.
        tracker.log_metrics({"eval/accuracy": dev_acc, **{f"test/{k}": v for k, v in test.items()},
                             "test/examples_per_s": len(eval_rows) / max(eval_seconds, 1e-9),
                             "peak_mem_mb": peak_memory_mb(p.device)}, step=final_step)
        tracker.log_predictions([e.guid for e in eval_rows], labels, preds, scores, task.label_names)
        tracker.log_confusion(labels, preds, task.label_names)
        return RunResult(tracker.run_id, dev_acc, test, eval_split, trainable, trainable / total,
                         train_seconds, cfg)


def _should_save(policy: str, fraction: float) -> bool:
    if policy not in ("auto", "always", "never"):
        raise ConfigError(f"save {policy!r}: choose auto, always or never")
    # "auto" keeps parameter-efficient artifacts (small) and skips full copies of the backbone.
    return policy == "always" or (policy == "auto" and fraction < SAVE_AUTO_MAX_FRACTION)


__all__ = ["DEFAULT_MODEL", "RunConfig", "RunResult", "WorkbenchError", "run"]
