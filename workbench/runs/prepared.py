"""Preparing one run: its input read and checked (no model loaded), then the model built with its method applied.

Everything that can be wrong with the input is checked before the model's weights are read: the config's fields
(when it is built), then the task and its data, the method's options, the template and verbalizer files, and the
label words against the vocabulary.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from workbench.adaptation import BuildContext, Method, all_methods, method_for_options
from workbench.adaptation.registry import RewriteContext
from workbench.data import FewShotSplit, TaskSpec, check_classes, check_no_leakage, few_shot_split, get_task
from workbench.data.metrics import EvalScope
from workbench.errors import ConfigError
from workbench.prompts import PromptEncoder, Template, Verbalizer, load_templates, load_verbalizer
from workbench.prompts.template import NO_INPUT, soft_as_words
from workbench.prompts.verbalizer import label_word_ids
from workbench.runs.config import RunConfig

if TYPE_CHECKING:
    import torch

    from workbench.models import ModelRef
    from workbench.training import PromptClassifier


@dataclass
class PreparedRun:
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
    if not method.uses_verbalizer:
        return None, None
    template = cfg.prompt.template
    template_id = None
    if not isinstance(template, Template):
        path = Path(template) if template else task_file(task, "template")
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
        verbalizer = load_verbalizer(verbalizer or task_file(task, "verbalizer"))
    for problem in verbalizer.word_problems():  # a file's are refused when it is read; an object's here
        raise ConfigError(str(problem), field="prompt.verbalizer")
    verbalizer.check_classes(task.label_names)
    return template, verbalizer


def task_file(task: TaskSpec, what: str) -> Path:
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
class CheckedInput:
    """A run's input, read and checked; no model loaded."""

    task: TaskSpec
    method: Method
    split: FewShotSplit
    eval_split: str
    all_eval_rows: list
    template: Template | None
    verbalizer: Verbalizer | None


def check_input(cfg: RunConfig, restoring: bool = False) -> CheckedInput:
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
    return CheckedInput(task, method, split, eval_split, all_eval_rows, template, verbalizer)


def check_shots(cfg: RunConfig, method: Method) -> None:
    """`shots: 0` (no labelled examples) only for methods that run without them."""
    if cfg.shots == 0 and method.needs_shots:
        zero = [m.name for m in all_methods().values() if not m.needs_shots]
        raise ConfigError(f"shots: 0 leaves method {method.name!r} nothing to train on; give --shots 1 or more "
                          f"(methods that run without labelled examples: {', '.join(zero)})", field="shots")


def prepare(cfg: RunConfig, backbone=None, restoring: bool = False) -> PreparedRun:
    """Check the input, then load the model and apply the method. `restoring`: saved weights will replace the
    trained ones, and the config's template and words are the ones the run used (`workbench predict`)."""
    import torch

    from workbench.models import load_backbone, load_tokenizer, resolve_model
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
    context = context_length(ref, backbone)
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
    return PreparedRun(task, method, split, eval_split, eval_rows, len(all_eval_rows), template, verbalizer, model,
                    encoder, ref, device)


def context_length(ref, backbone) -> int:
    if backbone is not None:
        return backbone.max_length
    from transformers import AutoConfig

    return int(getattr(AutoConfig.from_pretrained(ref.path), "max_position_embeddings", None) or 512)
