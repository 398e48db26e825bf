"""`workbench.train`: one method on one few-shot split, tracked as one MLflow run.

Everything that can be wrong with the input is checked before the model's weights are read: the
config's fields (when it is built), then the task and its data, the method's options, the template
and verbalizer files, and the label words against the vocabulary.
"""

from __future__ import annotations

import importlib
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from workbench.adaptation import BuildContext, Method, all_methods, method_for_options
from workbench.adaptation.registry import RewriteContext
from workbench.config import RunConfig, paths_with_role
from workbench.data import FewShotSplit, TaskSpec, check_classes, check_no_leakage, few_shot_split, get_task
from workbench.data.metrics import EvalScope
from workbench.errors import ConfigError
from workbench.progress import duration
from workbench.prompts import Template, Verbalizer, load_templates, load_verbalizer
from workbench.prompts.template import NO_INPUT

if TYPE_CHECKING:
    import torch

    from workbench.models import ModelRef
    from workbench.prompts import PromptEncoder
    from workbench.training import PromptClassifier

SAVE_AUTO_MAX_FRACTION = 0.05  # "auto" saves methods that train under 5% of the weights: small artifacts


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


@dataclass
class Prepared:
    """Everything a run needs, checked and built: the model with its method applied, and the encoder."""

    task: TaskSpec
    method: Method
    split: FewShotSplit
    eval_split: str
    eval_rows: list  # the rows of the evaluation split that are scored (eval.limit applied)
    eval_total: int  # rows the evaluation split has
    template: Template | None
    verbalizer: Verbalizer | None
    model: PromptClassifier
    encoder: PromptEncoder
    ref: ModelRef
    device: torch.device

    @property
    def scope(self) -> EvalScope:
        return EvalScope(self.eval_split, len(self.eval_rows), self.eval_total)


def load_pvp(cfg: RunConfig, task: TaskSpec, method: Method) -> tuple[Template | None, Verbalizer | None]:
    """Template and verbalizer (objects, or read from their files), checked against the task; (None, None)
    for methods that read plain input."""
    from workbench.prompts.template import soft_as_words

    if not method.uses_verbalizer:
        return None, None
    template = cfg.prompt.template
    template_id = None
    if not isinstance(template, Template):
        path = Path(template) if template else _task_file(task, "template")
        templates = load_templates(path)
        if cfg.prompt.template_id not in templates:
            raise ConfigError(f"{path}: no template with id {cfg.prompt.template_id}; ids are {sorted(templates)}",
                              field="prompt.template_id")
        template_id = cfg.prompt.template_id
        template = templates[template_id]
    if not template.has_mask:
        raise ConfigError(f"{template.source}: template has no {{\"mask\"}}; method {method.name!r} reads the "
                          f"label word at the mask", field="prompt.template")
    if not template.fields_used():
        raise ConfigError(f"{template.source}: prompt.template: {NO_INPUT}", field="prompt.template")
    if not method.trains_soft_slots:
        template = soft_as_words(template, method.name, template_id)
    verbalizer = cfg.prompt.verbalizer
    if not isinstance(verbalizer, Verbalizer):
        verbalizer = load_verbalizer(verbalizer or _task_file(task, "verbalizer"))
    for problem in verbalizer.word_problems():  # a file's are refused when it is read; an object's here
        raise ConfigError(str(problem), field="prompt.verbalizer")
    verbalizer.check_classes(task.label_names)
    return template, verbalizer


def _task_file(task: TaskSpec, what: str) -> Path:
    """The task's "template" or "verbalizer" file, for a config that names none: its YAML's `templates:` /
    `verbalizer:` file, else the one shipped for its name."""
    path = task.prompt_file(what)
    if path is None:
        flag, key = ("--template-file", "templates") if what == "template" else ("--verbalizer-file", "verbalizer")
        yaml = f"the task YAML ({task.source})" if task.source != "builtin" else "a task YAML"
        raise ConfigError(f"task {task.name!r} has no {what}: give {flag} FILE (prompt.{what}) or a {key}: field "
                          f"in {yaml}", field=f"prompt.{what}")
    return path


@dataclass
class Checked:
    """A run's input, read and checked; no model loaded."""

    task: TaskSpec
    method: Method
    split: FewShotSplit
    eval_split: str
    all_eval_rows: list
    template: Template | None
    verbalizer: Verbalizer | None


def check_input(cfg: RunConfig, restoring: bool = False) -> Checked:
    """Every check of one run's input that needs no model: the fields, the task (two classes at least), its data,
    an evaluation split that shares no rows with the training split, the template and verbalizer. `restoring`: a
    saved run (`predict`), whose split was chosen when it trained."""
    cfg.validate()
    task = get_task(cfg.task)
    check_classes(task)
    method = method_for_options(cfg.method)
    split = few_shot_split(task, cfg.shots, cfg.seed)
    eval_split = cfg.eval.split or task.eval_split
    if not restoring:
        check_no_leakage(task, eval_split, cfg.shots, "eval.split" if cfg.eval.split else None)
    all_eval_rows = task.load_split(eval_split)  # read now: a bad file fails before the model loads
    template, verbalizer = load_pvp(cfg, task, method)
    return Checked(task, method, split, eval_split, all_eval_rows, template, verbalizer)


def check_run(cfg: RunConfig) -> None:
    """What `train` checks before its model loads, for a sweep or a comparison to check once, before its first
    run: a task without a template then fails in one line, not inside every trial after a model has loaded. A method
    with a recipe of its own (PET) is checked by that recipe's `plan`."""
    method = method_for_options(cfg.method)
    if method.recipe is not None:
        module, _, _ = method.recipe.partition(":")
        importlib.import_module(module).plan(cfg)
        return
    check_shots(cfg, method)
    check_input(cfg)


def prepare(cfg: RunConfig, backbone=None, restoring: bool = False) -> Prepared:
    """Check the input, then load the model and apply the method. `restoring`: saved weights will replace the
    trained ones, and the config's template and words are the ones the run used (`workbench predict`)."""
    import torch

    from workbench.models import load_backbone, load_tokenizer, resolve_model
    from workbench.prompts import PromptEncoder
    from workbench.prompts.verbalizer import label_word_ids
    from workbench.training.trainer import pick_device

    checked = check_input(cfg, restoring)
    task, method, split, eval_split = checked.task, checked.method, checked.split, checked.eval_split
    all_eval_rows, template, verbalizer = checked.all_eval_rows, checked.template, checked.verbalizer
    eval_rows = all_eval_rows[: cfg.eval.limit]
    ref = resolve_model(cfg.model)
    if template is not None and method.rewrite_prompt is not None:
        template, verbalizer = method.rewrite_prompt(RewriteContext(cfg.method, task, ref, cfg.tracking.uri,
                                                                    restoring), template, verbalizer)
    tokenizer = load_tokenizer(ref) if backbone is None else backbone.tokenizer
    label_words = label_word_ids(verbalizer, tokenizer, cfg.prompt.multi_token) if verbalizer else None
    extra = method.extra_tokens(cfg.method) if method.extra_tokens else 0
    context = _context_length(ref, backbone)
    if extra >= context:
        raise ConfigError(f"method {method.name!r} adds {extra} prompt tokens but {cfg.model!r} has a context of "
                          f"{context} tokens", field="method")
    max_length = min(cfg.prompt.max_seq_length, context) - extra
    encoder = PromptEncoder(template, tokenizer, ref.kind, task.text_fields, max_length)
    encoder.check_fields(split.train[0] if split.train else eval_rows[0])

    device = pick_device()
    if backbone is None:
        backbone = load_backbone(ref, tokenizer=tokenizer)
    ctx = BuildContext(backbone, task, template, verbalizer, label_words, split, cfg.seed, cfg.tracking.uri,
                       restoring)
    torch.manual_seed(cfg.seed)
    model = method.build(ctx, cfg.method).to(device)
    if method.after_build is not None:
        encoder = method.after_build(ctx, cfg.method, model, encoder)
    return Prepared(task, method, split, eval_split, eval_rows, len(all_eval_rows), template, verbalizer, model,
                    encoder, ref, device)


def _context_length(ref, backbone) -> int:
    if backbone is not None:
        return backbone.max_length
    from transformers import AutoConfig

    return int(getattr(AutoConfig.from_pretrained(ref.path), "max_position_embeddings", None) or 512)


def resolved_tree(cfg: RunConfig) -> dict[str, Any]:
    """The config tree with the defaults that depend on other choices filled in: learning rate, split."""
    tree = cfg.to_dict()
    tree["train"]["lr"] = effective_lr(cfg)
    tree["train"]["batch_size"] = effective_batch_size(cfg)
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
                       "model_kind": p.ref.kind.value, "device": p.device.type,
                       "method_decisions": dict(p.model.decisions)}
    return tree


def effective_lr(cfg: RunConfig) -> float:
    return cfg.train.lr if cfg.train.lr is not None else method_for_options(cfg.method).default_lr


def effective_batch_size(cfg: RunConfig) -> int:
    b = cfg.train.batch_size
    return b if b is not None else method_for_options(cfg.method).default_batch_size


def config_hash(cfg: RunConfig) -> str:
    """12 hex digits of the params that decide a run's result: two runs share it exactly when their configs
    do, whatever the options that differ (a prompt encoder, calibration, a learning rate)."""
    import hashlib
    import json

    return hashlib.sha256(json.dumps(identity_params(cfg), sort_keys=True).encode()).hexdigest()[:12]


def run_name(cfg: RunConfig, task: TaskSpec, scope: EvalScope, digest: str) -> str:
    """`p-tuning-sst2-k16-s13-3f9a2c` (+ `-test100of1821` for a limited evaluation): readable, and unique per
    config through the first six digits of its `config_hash` (`digest`)."""
    return f"{cfg.method_name}-{task.name}-k{cfg.shots}-s{cfg.seed}-{digest[:6]}{scope.name_suffix()}"


def run_tags(cfg: RunConfig, task: TaskSpec, split: FewShotSplit, scope: EvalScope, digest: str,
             identity: dict) -> dict:
    from workbench.tracking.guide import RUN_KIND

    return {"kind": RUN_KIND, "task": task.name, "method": cfg.method_name, "model": cfg.model,
            "seed": str(cfg.seed), "shots": str(cfg.shots), "split_fingerprint": split.fingerprint,
            "config_hash": digest, **scope.tags(), **{f"model/{k}": str(v) for k, v in identity.items()}}


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
class Scored:
    """What training and evaluating a prepared run produced, before anything is logged."""

    dev_accuracy: float
    test_metrics: dict[str, float]
    eval_rows: list  # the rows the reported number was computed on
    scores: Any  # numpy [rows, classes]
    eval_seconds: float
    fit: Any  # the trainer's TrainResult; None for a method that does not train


def fit_and_score(p: Prepared, cfg: RunConfig, on_log: Callable[[int, dict], None] | None = None) -> Scored:
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
    return Scored(dev_acc, test, eval_rows, scores, eval_seconds, fit)


def train(cfg: RunConfig, backbone=None, on_eval: Callable[[int, float], None] | None = None,
          on_start: Callable[[str], None] | None = None, log: Callable[[str], None] | None = None) -> RunResult:
    """Train (or, for a method that does not train, just evaluate) and log one MLflow run.

    Returns the dev and test accuracy and the MLflow run id. `backbone` reuses a loaded model (its
    weights are changed by methods that train them). `on_start(run_id)` is called once the MLflow run
    exists; `on_eval(step, dev_accuracy)` at every evaluation, e.g. to report to a pruner: an exception
    it raises stops training and marks the run failed with that error. `log` receives what the run will do
    as it starts and, after the first step, how long it should take.
    """
    from workbench.adaptation.artifacts import ARTIFACT_DIR, save_trained
    from workbench.tracking import check_tracking_uri
    from workbench.tracking.runs import job_tracker
    from workbench.training.trainer import peak_memory_mb

    method = method_for_options(cfg.method)
    if method.recipe is not None:  # a job of several models (PET): its own recipe, the same contract
        module, _, function = method.recipe.partition(":")
        job = getattr(importlib.import_module(module), function)
        return job(cfg, backbone=backbone, on_eval=on_eval, on_start=on_start, log=log)
    check_shots(cfg, method)
    say = log or (lambda _: None)
    uri = check_tracking_uri(cfg.tracking.uri)  # an unreachable or misplaced store fails before the model loads
    p = prepare(cfg, backbone)
    task, split, model = p.task, p.split, p.model
    scope, digest = p.scope, config_hash(cfg)
    trainable, total = model.count_parameters()
    resolved = resolved_config(cfg, p)
    tags = run_tags(cfg, task, split, scope, digest, p.ref.identity)
    forecast = Forecast(cfg, p)
    for key, value in p.model.decisions.items():
        say(f"{method.name}: {key} = {value}")
    say(forecast.plan())
    # under torchrun, one run written by the first process
    with job_tracker(cfg.tracking.experiment or task.name, run_name(cfg, task, scope, digest), uri,
                     tags=tags) as tracker:
        if on_start is not None:
            on_start(tracker.run_id)
        tracker.log_config(resolved)
        tracker.log_dict(split.ids, "split_ids.json")
        tracker.log_metrics({"trainable_params": trainable, "trainable_fraction": trainable / total})
        forecast.start()

        def on_log(step: int, metrics: dict) -> None:
            tracker.log_metrics(metrics, step)
            line = forecast.on_log(step, metrics)
            if line:
                say(line)
            if on_eval is not None and "eval/accuracy" in metrics:
                on_eval(step, metrics["eval/accuracy"])

        out = fit_and_score(p, cfg, on_log)
        final_step, best_step = 0, 0
        final = {}
        if out.fit is not None:
            final_step, best_step = out.fit.steps, out.fit.best_step
            # The dev score of the kept state has a name of its own: logging it as another `eval/accuracy` point
            # at the last step would make the curve jump there.
            final = {"train/seconds": out.fit.seconds, "train/examples_per_s": out.fit.examples_per_s,
                     "train/compiled_graphs": out.fit.compiled_graphs,
                     "best_step": best_step, "eval/best_accuracy": out.dev_accuracy}
            tracker.set_tags({"kept_step": f"{best_step} of {final_step}"})
            if _should_save(cfg.tracking.save, trainable / total):
                with tempfile.TemporaryDirectory() as tmp:
                    save_trained(model, Path(tmp), resolved)
                    tracker.log_artifacts(tmp, ARTIFACT_DIR)
        else:  # nothing trained: the one dev score there is
            final["eval/accuracy"] = out.dev_accuracy
        rows = out.eval_rows
        labels = [e.label for e in rows]
        preds = out.scores.argmax(-1).tolist()
        eval_rate = len(rows) / max(out.eval_seconds, 1e-9)
        tracker.log_metrics({**final, **{f"test/{k}": v for k, v in out.test_metrics.items()},
                             "test/examples_per_s": eval_rate, "test/rows": len(rows),
                             "peak_mem_mb": peak_memory_mb(p.device)}, step=final_step)
        tracker.log_predictions([e.guid for e in rows], labels, preds, out.scores, task.label_names,
                                texts={f: [e.fields.get(f, "") for e in rows] for f in task.text_fields})
        tracker.log_confusion(labels, preds, task.label_names)
        return RunResult(tracker.run_id, out.dev_accuracy, out.test_metrics, scope, trainable, trainable / total,
                         out.fit.seconds if out.fit else 0.0, cfg, best_step, final_step, eval_rate)


def check_shots(cfg: RunConfig, method: Method) -> None:
    """`shots: 0` (no labelled examples) only for methods that run without them."""
    if cfg.shots == 0 and method.needs_shots:
        zero = [m.name for m in all_methods().values() if not m.needs_shots]
        raise ConfigError(f"shots: 0 leaves method {method.name!r} nothing to train on; give --shots 1 or more "
                          f"(methods that run without labelled examples: {', '.join(zero)})", field="shots")


class Forecast:
    """What a run will do, said as it starts, and how long each part should take, said as soon as it is
    measured: the training time after the second step (the first carries one-time costs, such as the optimizer's
    state, that would inflate the estimate threefold), the scoring time after the first dev evaluation (the same
    batched forward pass as the final scoring). A 20-minute run must not look like a 2-minute one until it ends."""

    def __init__(self, cfg: RunConfig, p: Prepared):
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


def _should_save(policy: str, fraction: float) -> bool:
    # "auto" keeps parameter-efficient artifacts (small) and skips full copies of the backbone.
    return policy == "always" or (policy == "auto" and fraction < SAVE_AUTO_MAX_FRACTION)


__all__ = ["Prepared", "RunResult", "Scored", "fit_and_score", "identity_params", "load_pvp", "prepare", "train"]
