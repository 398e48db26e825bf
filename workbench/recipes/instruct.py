"""Instruction tuning and its evaluation: `tune` (a method trained on instruction data with the response-only
language-model loss), `evaluate_zero_shot` (FLAN-style zero-shot accuracy of a base or tuned model on held-out
templates), and `flan` (mix -> tune -> evaluate, base against tuned, under one parent MLflow run).

tune, in order: the config and method (one that `generates`), the tracking store, the data (every record checked,
tokenized, too-long ones counted) -- all before the model's weights are read; then the method is built for the
generate objective, the shared trainer runs with the `LanguageModeling` objective (dev loss picks the kept
state, length-grouped batches), and the run logs what a classification run logs plus the templates it trained on,
with the tuned weights (adapter, prompt, or the whole model) as the `method/` artifact.
"""

from __future__ import annotations

import hashlib
import json
import random
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from workbench.config.fields import BATCH_MAX, ROWS_MAX, SEED_MAX, TOKENS_MAX, Section, option, validate
from workbench.config import DEFAULT_MODEL, TrackingConfig, TrainConfig
from workbench.runs.config import method_options, section_dict
from workbench.errors import ConfigError

RUN_KIND, EVAL_KIND, FLAN_KIND = "instruct-tune", "instruct-eval", "instruct-flan"
EXPERIMENT = "instruct"
TRAINED_TEMPLATES = "trained_templates.json"  # artifact: task -> template ids the tuning data used
METHOD_ALIASES = {"full": "finetune"}  # `--method full`: every weight trains (the finetune method, no head)


def _say(log: Callable[[str], None] | None) -> Callable[[str], None]:
    return log or (lambda _: None)


def _tasks(text: str) -> tuple[str, ...]:
    return tuple(t.strip() for t in text.split(",") if t.strip())


def generating_method(name: str, options: dict | None = None):
    """(method, options) for instruction tuning: a registered method that builds for the generate objective."""
    from workbench.adaptation import all_methods, get_method

    method = get_method(METHOD_ALIASES.get(name, name))
    if not method.generates:
        able = ["full" if m.name == "finetune" else m.name for m in all_methods().values() if m.generates]
        raise ConfigError(f"tune.method: {name!r} cannot instruction-tune a model (it needs a template or a task's "
                          f"classes); methods: {', '.join(able)}", field="tune.method")
    return method, method_options({"name": method.name, **(options or {})})


@dataclass
class TuneConfig(Section):
    section: ClassVar[str] = "tune"
    data: str = option("", role="study", help="instruction data: an `instruct mix` folder (or its mixture.jsonl / hf), "
                                              "self-instruct or Alpaca JSON lines, Alpaca's JSON array, or a Hugging "
                                              "Face dataset on disk with instruction/input/output fields")
    model: str = option(DEFAULT_MODEL, role="study", help="offline alias, local folder or Hugging Face id")
    method: str = option("lora", role="study", help="full | lora | prompt-tuning | prefix-tuning | p-tuning-v2 | "
                                                    "bitfit; its options as --option NAME=VALUE")
    max_length: int = option(512, min=16, max=TOKENS_MAX,
                             help="tokens per example (prompt + response), capped by the model's "
                                  "context; longer records are left out and counted")
    dev_size: int = option(64, min=0, max=ROWS_MAX, role="budget",
                           help="records held out of training for the dev loss that picks "
                                "the kept state (0: keep the last state)")
    holdout: str = option("", role="study", help="comma-separated tasks, datasets or clusters the data must not "
                                                 "contain (those evaluated as held out)")
    seed: int = option(13, role="study", min=0, max=SEED_MAX, help="seed of the dev split and of training")
    options: dict = field(default_factory=dict)  # the method's options (--option NAME=VALUE)
    train: TrainConfig = field(default_factory=TrainConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)

    def check(self) -> None:
        if not self.data.strip():
            raise ConfigError("tune.data: required; give --data PATH (e.g. the folder `workbench instruct mix` "
                              "wrote)", field="tune.data")


@dataclass
class TuneResult:
    run_id: str
    dev_loss: float  # of the kept state (nan with no dev records)
    steps: int
    best_step: int
    train_records: int
    dev_records: int
    too_long: int
    trainable_params: int
    trainable_fraction: float
    seconds: float
    tokens_per_s: float
    trained_templates: dict[str, list[str]] = field(default_factory=dict)


def check_holdout(data, holdout: tuple[str, ...]) -> None:
    """A task evaluated as held out must not be in the tuning data (a task, its dataset, or its cluster)."""
    from workbench.instruct.sources import CLUSTERS, cluster_of

    if not holdout:
        return
    from workbench.instruct.mix import ALL_TASKS

    known = set(ALL_TASKS) | set(CLUSTERS) | {r.task for r in data.records if r.task}
    unknown = [name for name in holdout if name not in known]
    if unknown:  # a typo would otherwise check nothing
        raise ConfigError(f"tune.holdout: {unknown[0]!r} is neither a task nor a cluster; expected one of "
                          f"{', '.join(sorted(known))}", field="tune.holdout")
    banned = {t for name in holdout for t in CLUSTERS.get(name, (name,))}
    for r in data.records:
        task = (r.task or "").removesuffix("_cot")
        if task and (task in banned or cluster_of(task) in holdout):
            raise ConfigError(f"{r.where}: task {r.task!r} is held out (tune.holdout {','.join(holdout)}) but is in "
                              f"the tuning data; rebuild the data with --holdout {','.join(holdout)} or drop it "
                              f"from --holdout", field="tune.holdout")


def _fingerprint(records) -> str:
    h = hashlib.sha256()
    for r in records:
        h.update(json.dumps([r.prompt, r.response]).encode())
    return h.hexdigest()[:12]


def tune(cfg: TuneConfig, backbone=None, log: Callable[[str], None] | None = None) -> TuneResult:
    """Instruction-tune `cfg.model` with `cfg.method` on `cfg.data`, as one MLflow run. `backbone`: a loaded model
    to use instead (its weights change when the method trains them)."""
    import torch

    from workbench.adaptation import BuildContext
    from workbench.adaptation.artifacts import ARTIFACT_DIR, save_trained
    from workbench.instruct.tuning_data import encode_records, read_tuning_data
    from workbench.models import load_backbone, load_tokenizer, resolve_model
    from workbench.runs.fit import trainer_settings
    from workbench.runs.prepared import context_length
    from workbench.tracking import RunTracker, check_tracking_uri
    from workbench.training.causal_lm import InstructionModel
    from workbench.training.trainer import LanguageModeling, peak_memory_mb, pick_device
    from workbench.training.trainer import train as train_loop

    say = _say(log)
    for section in (cfg, cfg.train, cfg.tracking):  # fields may have been set after construction
        validate(section)
    method, opts = generating_method(cfg.method, cfg.options)
    uri = check_tracking_uri(cfg.tracking.uri)
    data = read_tuning_data(cfg.data)
    check_holdout(data, _tasks(cfg.holdout))
    ref = resolve_model(cfg.model) if backbone is None else None
    tokenizer = backbone.tokenizer if backbone is not None else load_tokenizer(ref)
    extra = method.extra_tokens(opts) if method.extra_tokens else 0
    max_length = min(cfg.max_length, context_length(ref, backbone)) - extra
    if max_length < 8:
        raise ConfigError(f"tune.max_length: {cfg.max_length} leaves {max_length} tokens after the method's {extra} "
                          f"prompt tokens; raise --max-length", field="tune.max_length")
    encoded = encode_records(tokenizer, data.records, max_length)
    order = list(range(len(encoded.examples)))
    random.Random(cfg.seed).shuffle(order)
    n_dev = min(cfg.dev_size, len(order) // 2)
    dev = [encoded.examples[i] for i in order[:n_dev]]
    train_set = [encoded.examples[i] for i in order[n_dev:]]
    if encoded.too_long:
        say(f"{len(encoded.too_long)} of {len(data.records)} records are longer than {max_length} tokens and are left "
            f"out (the first: {encoded.too_long[0]})")

    if backbone is None:
        backbone = load_backbone(ref, tokenizer=tokenizer)
    identity = backbone.identity
    device = pick_device()
    ctx = BuildContext(backbone, None, None, None, None, None, cfg.seed, cfg.tracking.uri, objective="generate")
    torch.manual_seed(cfg.seed)
    model = InstructionModel.from_built(method.build(ctx, opts)).to(device)
    trainable, total = model.count_parameters()
    t = cfg.train
    batch_size = t.batch_size or method.default_batch_size
    lr = t.lr if t.lr is not None else method.default_lr
    tcfg = trainer_settings(t, lr=lr, batch_size=batch_size, seed=cfg.seed, progress=cfg.tracking.progress,
                            group_by_length=True)
    resolved = {"tune": {**section_dict(cfg), "method": method.name, "max_length_effective": max_length},
                "method": {"name": method.name, **section_dict(opts)},
                "train": {**section_dict(t), "lr": lr, "batch_size": batch_size},
                "runtime": {"model_kind": backbone.kind.value, "device": device.type,
                            "chat_template": bool(getattr(tokenizer, "chat_template", None)),
                            "method_decisions": dict(model.decisions)}}
    # every template in the data counts as seen, the dev records' too
    trained_templates = data.trained_templates()
    tags = {"kind": RUN_KIND, "model": cfg.model, "method": method.name, "data": str(data.source),
            "data_fingerprint": _fingerprint(data.records), "holdout": cfg.holdout,
            **{f"model/{k}": str(v) for k, v in identity.items()}}
    name = f"tune-{method.name}-{Path(cfg.data).name or 'data'}-s{cfg.seed}"
    tokens = sum(len(e.input_ids) for e in train_set) / len(train_set)
    for key, value in model.decisions.items():
        say(f"{method.name}: {key} = {value}")
    say(f"this run: {t.max_steps} steps of {batch_size * t.grad_accum} examples from {len(train_set)} records "
        f"({len(dev)} held out for the dev loss); {trainable:,} trainable parameters")
    with RunTracker(cfg.tracking.experiment or EXPERIMENT, name, uri, tags=tags) as tracker:
        tracker.log_config(resolved)
        tracker.log_json(trained_templates, TRAINED_TEMPLATES)
        tracker.log_json(data.task_counts(), "data_tasks.json")
        tracker.log_metrics({"trainable_params": trainable, "trainable_fraction": trainable / total,
                             "data/records": len(data.records), "data/train_records": len(train_set),
                             "data/dev_records": len(dev), "data/too_long": len(encoded.too_long)})
        fit = train_loop(model, train_set, dev, backbone.tokenizer.pad_token_id, tcfg,
                         on_log=lambda step, m: tracker.log_metrics(m, step),
                         objective=LanguageModeling(backbone.tokenizer.pad_token_id))
        tokens_per_s = fit.examples_per_s * tokens
        tracker.log_metrics({"train/seconds": fit.seconds, "train/examples_per_s": fit.examples_per_s,
                             "train/tokens_per_s": tokens_per_s, "best_step": fit.best_step,
                             "train/compiled_graphs": fit.compiled_graphs,
                             "eval/best_loss": fit.best_dev, "peak_mem_mb": peak_memory_mb(device)}, fit.steps)
        tracker.set_tags({"kept_step": f"{fit.best_step} of {fit.steps}"})
        if cfg.tracking.save != "never":  # evaluation rebuilds the tuned model from it, whatever its size
            with tempfile.TemporaryDirectory() as tmp:
                save_trained(model, Path(tmp), resolved)
                tracker.log_artifacts(tmp, ARTIFACT_DIR)
        return TuneResult(tracker.run_id, fit.best_dev, fit.steps, fit.best_step, len(train_set), len(dev),
                          len(encoded.too_long), trainable, trainable / total, fit.seconds, tokens_per_s,
                          trained_templates)


# ---- zero-shot evaluation --------------------------------------------------------------------------------------

@dataclass
class ZeroShotConfig(Section):
    section: ClassVar[str] = "zeroshot"
    run: str = option("", role="study", help="an `instruct tune` run id: its tuned model is evaluated (and the base "
                                             "model beside it, unless --base false)")
    model: str = option("", role="study", help="a model to evaluate as it is (alias, folder or id), without --run")
    tasks: str = option("rte", role="study", help="comma-separated tasks: sst2, sst5, trec, rte (rank "
                                                  "classification), gsm8k, multiarith, svamp (exact match)")
    limit: int | None = option(None, min=1, max=ROWS_MAX, role="budget",
                               help="the first N examples of each task's evaluation "
                                    "split, for every template")
    base: bool = option(True, help="with --run: evaluate the base model too, side by side (--base false: skip it)")
    batch_size: int = option(16, min=1, max=BATCH_MAX, role="neutral", help="sequences per forward pass")
    max_new_tokens: int = option(32, min=1, max=TOKENS_MAX, role="budget", help="tokens generated for open answers")
    templates_dir: str | None = option(None, role="study", help="folder of <task>.yaml instruction templates "
                                                                "(default: the built-in ones)")
    experiment: str = option(EXPERIMENT, role="neutral", help="MLflow experiment")
    tracking_uri: str | None = option(None, role="neutral", help="MLflow tracking URI (default: sqlite:///mlflow.db)")
    progress: bool = option(True, role="neutral", help="progress bars")

    def check(self) -> None:
        if bool(self.run) == bool(self.model):
            raise ConfigError("zeroshot.run: give exactly one of --run RUN_ID (a tuned model) or --model M",
                              field="zeroshot.run")
        if not _tasks(self.tasks):
            raise ConfigError("zeroshot.tasks: give at least one task", field="zeroshot.tasks")


@dataclass
class ModelScores:
    label: str  # "base" / "tuned"
    model: str
    run_id: str  # this evaluation's MLflow run
    tasks: dict[str, Any]  # task -> TaskScore


@dataclass
class EvalResult:
    evaluated: list[ModelScores]

    def table(self) -> str:
        tasks = list(self.evaluated[0].tasks)
        head = f"{'task':<12}" + "".join(f"{m.label:>10}" for m in self.evaluated)
        lines = [head]
        for t in tasks:
            lines.append(f"{t:<12}" + "".join(f"{m.tasks[t].accuracy:>10.4f}" for m in self.evaluated))
        return "\n".join(lines)


@dataclass
class TunedRun:
    """What an `instruct tune` run left: its config and trained weights, and the templates it trained on."""

    run_id: str
    model: str
    method: str
    options: dict
    folder: Path
    trained: dict[str, list[str]]


def read_tuned_run(run_id: str, uri: str | None, into: Path) -> TunedRun:
    from workbench.adaptation.artifacts import ARTIFACT_DIR, CONFIG
    from workbench.errors import WorkbenchError
    from workbench.tracking.runs import download_artifact

    try:
        folder = download_artifact(run_id, ARTIFACT_DIR, uri, into)
        trained = json.loads(download_artifact(run_id, TRAINED_TEMPLATES, uri, into).read_text())
    except Exception as e:  # MLflow raises several types for a missing run or artifact
        raise WorkbenchError(f"--run {run_id}: not an `instruct tune` run with its tuned weights in this tracking "
                             f"store ({str(e).splitlines()[0][:200]})") from None
    config = json.loads((folder / CONFIG).read_text())
    opts = {k: v for k, v in config["method"].items() if k != "name"}
    return TunedRun(run_id, config["tune"]["model"], config["method"]["name"], opts, folder, trained)


def _build_tuned(run: TunedRun, backbone):
    import torch

    from workbench.adaptation import BuildContext
    from workbench.adaptation.artifacts import load_trained
    from workbench.training.causal_lm import InstructionModel

    method, opts = generating_method(run.method, run.options)
    ctx = BuildContext(backbone, None, None, None, None, None, 0, restoring=True, objective="generate")
    torch.manual_seed(0)
    model = InstructionModel.from_built(method.build(ctx, opts))
    load_trained(model, run.folder)
    return model


def _evaluate_model(label: str, model, tokenizer, cfg: ZeroShotConfig, model_name: str, items: dict, tags: dict,
                    say: Callable[[str], None]) -> ModelScores:
    from workbench.instruct.zero_shot import score_task
    from workbench.tracking import RunTracker

    tasks = list(items)
    scores = {}
    with RunTracker(cfg.experiment, f"zeroshot-{label}-{'-'.join(tasks)}", cfg.tracking_uri,
                    tags={"kind": EVAL_KIND, "evaluated": label, "model": model_name, "tasks": ",".join(tasks),
                          **tags}) as tracker:
        tracker.log_params({"tasks": ",".join(tasks), "limit": cfg.limit, "evaluated": label, "model": model_name,
                            "max_new_tokens": cfg.max_new_tokens, "templates_dir": cfg.templates_dir})
        for t in tasks:
            start = time.perf_counter()
            s = score_task(model, tokenizer, items[t], cfg.batch_size, cfg.max_new_tokens, cfg.progress)
            took = time.perf_counter() - start
            scores[t] = s
            tracker.log_metrics({f"zeroshot/{t}/accuracy": s.accuracy, f"zeroshot/{t}/rows": s.rows,
                                 f"zeroshot/{t}/seconds": took,
                                 **{f"zeroshot/{t}/template_{k.rsplit(':', 1)[1]}": v
                                    for k, v in s.per_template.items()}})
            tracker.log_json(s.predictions, f"predictions/{t}.json")
            say(f"{label}: {t} accuracy {s.accuracy:.4f} (mean of {len(s.per_template)} templates x {s.rows} "
                f"examples, {took:.0f} s)")
        return ModelScores(label, model_name, tracker.run_id, scores)


def evaluate_zero_shot(cfg: ZeroShotConfig, backbone=None, log: Callable[[str], None] | None = None) -> EvalResult:
    """Zero-shot accuracy of a model (`cfg.model`), or of a tuned run and its base model (`cfg.run`), one MLflow
    run per model evaluated; the tuned one is linked to its tuning run (tag `tune_run_id`). `backbone`: the base
    model already loaded (its weights change when the tuned method is put on it)."""
    from workbench.instruct.zero_shot import eval_items
    from workbench.models import load_backbone
    from workbench.tracking import check_tracking_uri
    from workbench.training.causal_lm import InstructionModel
    from workbench.training.trainer import pick_device

    say = _say(log)
    validate(cfg)
    check_tracking_uri(cfg.tracking_uri)
    with tempfile.TemporaryDirectory() as tmp:
        run = read_tuned_run(cfg.run, cfg.tracking_uri, Path(tmp)) if cfg.run else None
        trained = run.trained if run else None
        # every task, its unseen templates and its data read before a model loads
        items = {t: eval_items(t, cfg.limit, trained, cfg.templates_dir) for t in _tasks(cfg.tasks)}
        name = run.model if run else cfg.model
        if backbone is None:
            backbone = load_backbone(name)
        device = pick_device()
        tokenizer = backbone.tokenizer
        out = []
        if run is None or cfg.base:  # first: the tuned method is then put on the same weights (LoRA: in place)
            base = InstructionModel(backbone.model).to(device)
            out.append(_evaluate_model("base", base, tokenizer, cfg, name, items,
                                       {"tune_run_id": run.run_id} if run else {}, say))
        if run is not None:
            tuned = _build_tuned(run, backbone).to(device)
            out.append(_evaluate_model("tuned", tuned, tokenizer, cfg, name, items,
                                       {"tune_run_id": run.run_id, "method": run.method}, say))
    return EvalResult(out)


# ---- the whole loop ------------------------------------------------------------------------------------------

@dataclass
class FlanConfig(Section):
    section: ClassVar[str] = "flan"
    holdout: str = option("", role="study", help="comma-separated tasks or clusters held out of the mixture and "
                                                 "evaluated zero-shot")
    tasks: str = option("sst2,sst5,trec,rte,gsm8k", role="study", help="the mixture's tasks before the hold-out")
    method: str = option("lora", role="study", help="tuning method (as `instruct tune --method`)")
    model: str = option(DEFAULT_MODEL, role="study", help="offline alias, local folder or Hugging Face id")
    cap: int = option(500, min=1, max=ROWS_MAX, role="budget", help="examples per task in the mixture (FLAN's cap)")
    holdout_templates: int = option(2, min=0, max=6, help="the last K plain templates of every mixture task stay "
                                                          "out of it, so its tasks are evaluated in unseen words")
    eval_tasks: str = option("", role="study", help="tasks evaluated (default: the held-out ones and the mixture's "
                                                    "classification tasks)")
    limit: int | None = option(100, min=1, max=ROWS_MAX, role="budget",
                               help="examples per task and template in evaluation")
    max_length: int = option(512, min=16, max=TOKENS_MAX, help="tokens per tuning example")
    out: str = option("flan_run", role="neutral", help="folder for the mixture")
    seed: int = option(13, role="study", min=0, max=SEED_MAX, help="seed of the mixture, the dev split and training")
    options: dict = field(default_factory=dict)
    train: TrainConfig = field(default_factory=TrainConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)

    def check(self) -> None:
        if not _tasks(self.holdout):
            raise ConfigError("flan.holdout: required; give --holdout TASK (e.g. rte)", field="flan.holdout")


@dataclass
class FlanResult:
    run_id: str
    tune: TuneResult
    evaluation: EvalResult


def flan(cfg: FlanConfig, backbone=None, log: Callable[[str], None] | None = None) -> FlanResult:
    """Mix (held-out tasks out, the last templates kept back) -> tune -> zero-shot evaluation of base and tuned on
    the held-out tasks and the mixture's classification tasks, under one parent MLflow run. `backbone`: a loaded
    base model (tuning works on a copy of it; evaluation puts the tuned weights on it)."""
    import copy

    from workbench.instruct.mix import MixConfig, build_mixture, resolve_tasks
    from workbench.instruct.sources import CLASSIFICATION, CLUSTERS
    from workbench.tracking import RunTracker, check_tracking_uri

    say = _say(log)
    holdout = _tasks(cfg.holdout)
    generating_method(cfg.method, cfg.options)  # a method that cannot tune fails first
    uri = check_tracking_uri(cfg.tracking.uri)
    mix_cfg = MixConfig(tasks=_tasks(cfg.tasks), holdout=holdout, cap=cfg.cap, holdout_templates=cfg.holdout_templates,
                        seed=cfg.seed, out=cfg.out)
    mixed = resolve_tasks(mix_cfg)
    held = [t for h in holdout for t in CLUSTERS.get(h, (h,))]
    eval_tasks = _tasks(cfg.eval_tasks) or tuple(dict.fromkeys(
        [t for t in held if t in CLASSIFICATION + ("gsm8k",)] + [t for t in mixed if t in CLASSIFICATION]))
    experiment = cfg.tracking.experiment or EXPERIMENT
    with RunTracker(experiment, f"flan-holdout-{'-'.join(holdout)}-{cfg.method}", uri,
                    tags={"kind": FLAN_KIND, "holdout": ",".join(holdout), "method": cfg.method,
                          "model": cfg.model}) as parent:
        parent.log_params({"holdout": ",".join(holdout), "tasks": cfg.tasks, "method": cfg.method, "cap": cfg.cap,
                           "holdout_templates": cfg.holdout_templates, "eval_tasks": ",".join(eval_tasks),
                           "limit": cfg.limit, "model": cfg.model, "seed": cfg.seed})
        say(f"mixing {', '.join(mixed)} (held out: {', '.join(holdout)}) -> {cfg.out}")
        build_mixture(mix_cfg)
        tuned = tune(TuneConfig(data=cfg.out, model=cfg.model, method=cfg.method, max_length=cfg.max_length,
                                holdout=",".join(holdout), seed=cfg.seed, options=dict(cfg.options), train=cfg.train,
                                tracking=cfg.tracking),
                     backbone=None if backbone is None else copy.deepcopy(backbone), log=log)
        evaluation = evaluate_zero_shot(ZeroShotConfig(run=tuned.run_id, tasks=",".join(eval_tasks), limit=cfg.limit,
                                                   experiment=experiment, tracking_uri=cfg.tracking.uri,
                                                   progress=cfg.tracking.progress),
                                        backbone=backbone, log=log)
        rows = {"task": list(eval_tasks), "held_out": [t in held for t in eval_tasks]}
        for m in evaluation.evaluated:
            rows[m.label] = [m.tasks[t].accuracy for t in eval_tasks]
            parent.log_metrics({f"{m.label}/{t}/accuracy": m.tasks[t].accuracy for t in eval_tasks})
        parent.log_table(rows, "zeroshot_table.json")
        parent.set_tags({"tune_run_id": tuned.run_id})
        return FlanResult(parent.run_id, tuned, evaluation)

