"""PET and iPET as one job (the methods `pet` and `ipet`; `workbench.train` runs it for them):

    for each generation g (PET: one):
        for each member (a PVP x a repetition):
            restore the backbone's pretrained weights and build the PVP's prompt-finetune model
            score the labelled shots with it untrained: its weight in the ensemble (wmean)
            train it on the shots, plus (g > 0) its iPET set; score dev, the evaluation rows and the pool
        merge the members' scores: the generation's ensemble
        (iPET) label pool examples for each member of the next generation with a few of the others
    distil the last ensemble's soft labels on the pool into the final model (or report the ensemble)

Tracking: one parent run, like any method's (`kind=run`, so comparisons and reuse treat it as one), and a nested
run per member (`kind=pet-member`) holding its scores (`scores.npz`) and, from generation 1, the training set it
was given. Running the same config again resumes the newest unfinished parent: a member whose run finished is not
trained again, its scores are read back. The pool's ids are logged; the distilled model is saved as the run's
method artifact, so `workbench predict --run ID` uses it.
"""

from __future__ import annotations

import contextlib
import math
import random
import tempfile
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from workbench.adaptation import method_for_options
from workbench.adaptation.pet import PetOptions
from workbench.data import Example, FewShotSplit, TaskSpec, check_classes, check_no_leakage, few_shot_split, get_task
from workbench.data.metrics import EvalScope
from workbench.ensemble import (draw_labelled, ensemble_weights, merge, new_examples, per_class, pick_labellers,
                                softmax)
from workbench.errors import ConfigError, WorkbenchError
from workbench.progress import duration
from workbench.prompts import Template, load_templates
from workbench.runs import (RunConfig, RunResult, config_hash, identity_params, load_pvp, prepare, resolved_config,
                            run_name, run_tags, trainer_config)
from workbench.runs.identity import resolved_tree
from workbench.runs.prepared import task_file

MEMBER_KIND = "pet-member"
SCORES = "scores.npz"
PARTS = ("dev", "test", "pool")  # the rows every member scores


@dataclass(frozen=True)
class Member:
    """One model of a generation: a pattern (template id), a verbalizer, a repetition."""

    generation: int
    index: int  # its place in the generation; the same place in every generation
    template_id: int
    verbalizer: str | None  # a file, or None for the run's verbalizer
    verbalizer_index: int
    repetition: int

    @property
    def key(self) -> str:
        return f"g{self.generation}-p{self.template_id}-v{self.verbalizer_index}-r{self.repetition}"


@dataclass
class Scores:
    """What a member produced: its weight before training and its class scores on dev, evaluation and pool rows."""

    prior: float  # accuracy on the labelled shots before training; nan without shots
    dev: np.ndarray
    test: np.ndarray
    pool: np.ndarray
    train_seconds: float = 0.0
    test_seconds: float = 0.0
    pool_seconds: float = 0.0
    reused_from: str | None = None  # the finished member run these scores were read from (not saved)

    def save(self, path: Path) -> None:
        np.savez(path, prior=self.prior, dev=self.dev, test=self.test, pool=self.pool,
                 seconds=np.array([self.train_seconds, self.test_seconds, self.pool_seconds]))

    @classmethod
    def load(cls, path: Path) -> Scores:
        """Scores `save` wrote; arrays only (allow_pickle=False: a pickle or object array in the file is refused,
        never unpickled), anything else one WorkbenchError naming the file."""
        try:
            with np.load(path, allow_pickle=False) as f:
                seconds = f["seconds"].tolist()
                return cls(float(f["prior"]), f["dev"], f["test"], f["pool"], *seconds)
        except (OSError, ValueError, KeyError, TypeError, zipfile.BadZipFile, AttributeError) as e:
            raise WorkbenchError(f"{path}: not member scores this workbench wrote ({str(e).splitlines()[0]}); "
                                 f"nothing in it was run") from None


@dataclass
class PetPlan:
    """A PET/iPET job, checked: everything that can be wrong with the input fails here, before a model loads."""

    cfg: RunConfig
    task: TaskSpec
    opts: PetOptions
    split: FewShotSplit
    eval_split: str
    eval_rows: list[Example]
    eval_total: int
    pool: list[Example]
    pool_source: str
    pvps: list[tuple[int, str | None]]  # (template id, verbalizer file or None)
    reduction: str
    new_counts: list[int]  # pool examples each member of generation g+1 gets from generation g

    @property
    def generations(self) -> int:
        return self.opts.generations

    @property
    def size(self) -> int:
        return len(self.pvps) * self.opts.repetitions

    @property
    def scope(self) -> EvalScope:
        return EvalScope(self.eval_split, len(self.eval_rows), self.eval_total)

    def members(self, generation: int) -> list[Member]:
        out = []
        verbalizers = self.opts.verbalizer_files() or [None]
        for t, v in self.pvps:
            for r in range(self.opts.repetitions):
                out.append(Member(generation, len(out), t, v, verbalizers.index(v), r))
        return out

    def member_config(self, m: Member) -> RunConfig:
        return pvp_config(self.cfg, m.template_id, m.verbalizer)

    def student_config(self) -> RunConfig:
        o = self.opts
        budget = {"train.max_steps": o.distill_steps, "train.batch_size": o.distill_batch_size, "train.lr": o.distill_lr}
        if o.distill == "classifier":
            return self.cfg.with_overrides({"method": "finetune", **budget})
        return self.member_config(self.members(0)[0]).with_overrides(budget)

    def describe(self) -> str:
        o = self.opts
        gens = f", {self.generations} generations" if self.generations > 1 else ""
        final = {"classifier": f"distilled into a sequence classifier ({o.distill_steps} steps)",
                 "pvp": f"distilled into a PVP model ({o.distill_steps} steps)",
                 "none": "the ensemble reported"}[o.distill]
        shots = f"{len(self.split.train)} labelled shots" if self.split.train else "no labelled shots"
        return (f"this run: {len(self.pvps)} PVP(s) x {o.repetitions} repetition(s) = {self.size} models{gens}, "
                f"each {self.cfg.train.max_steps} steps on {shots} ({self.reduction} ensemble); {final}; "
                f"{len(self.pool):,} unlabelled examples from {self.pool_source}; scoring {self.scope.describe()}")


def pvp_config(cfg: RunConfig, template_id: int, verbalizer: str | None) -> RunConfig:
    """The run config of one PVP's model: this run's, with its template id and (when given) verbalizer file."""
    changes: dict = {"prompt.template_id": template_id}
    if verbalizer is not None:
        changes["prompt.verbalizer"] = verbalizer
    return cfg.with_overrides(changes)


def plan(cfg: RunConfig) -> PetPlan:
    """Check the config, the task's data, every PVP, the pool and iPET's arithmetic; load no model."""
    cfg.validate()
    opts = cfg.method
    method = method_for_options(opts)
    task = get_task(cfg.task)
    check_classes(task)
    split = few_shot_split(task, cfg.shots, cfg.seed)
    eval_split = cfg.eval.split or task.eval_split
    check_no_leakage(task, eval_split, cfg.shots, "eval.split" if cfg.eval.split else None)
    all_eval = task.load_split(eval_split)
    reduction = opts.reduction or ("wmean" if split.train else "mean")
    if reduction == "wmean" and not split.train:
        raise ConfigError("method.reduction: wmean weighs each model by its accuracy on the labelled shots, and there "
                          "are none (shots: 0); use --option reduction=mean", field="method.reduction")
    pvps = _pvps(cfg, task, opts)
    for t, v in pvps:  # every template and verbalizer read and checked against the task now
        load_pvp(pvp_config(cfg, t, v), task, method)
    if opts.generations > 1 and len(pvps) * opts.repetitions < 2:
        raise ConfigError("method.patterns: iPET labels data for each model with the others of its generation, and "
                          "this run has one model; choose more patterns or --option repetitions=2",
                          field="method.patterns")
    pool, source = unlabeled_pool(task, split, opts.unlabeled, cfg.seed, eval_split)
    counts = [new_examples(len(split.train), g, getattr(opts, "scale", 1.0)) for g in range(opts.generations - 1)]
    for g, n in enumerate(counts):
        most = getattr(opts, "most_likely", None)
        need = most * task.num_classes if g == 0 and most else n
        if need > len(pool):
            raise ConfigError(f"method.unlabeled: iPET generation {g + 1} gives each model {need:,} pool examples, but "
                              f"the pool has {len(pool):,} (from {source}); use a larger pool (--option unlabeled=N, "
                              f"or a longer unlabeled file) or fewer generations", field="method.unlabeled")
    return PetPlan(cfg, task, opts, split, eval_split, all_eval[: cfg.eval.limit], len(all_eval), pool, source, pvps,
               reduction, counts)


def _pvps(cfg: RunConfig, task: TaskSpec, opts: PetOptions) -> list[tuple[int, str | None]]:
    chosen = opts.pattern_ids()
    if isinstance(cfg.prompt.template, Template):  # one template object: one pattern
        if chosen is not None:
            raise ConfigError("method.patterns: the run's template is an object, not a file; choose patterns from a "
                              "template file (prompt.template)", field="method.patterns")
        ids = [cfg.prompt.template_id]
    else:
        path = Path(cfg.prompt.template) if cfg.prompt.template else task_file(task, "template")
        templates = load_templates(path)
        for t in chosen or []:
            if t not in templates:
                raise ConfigError(f"method.patterns: {path} has no template with id {t}; ids are {sorted(templates)}",
                                  field="method.patterns")
        # `all`: every pattern a PVP model can read, so not those with a bare {"soft"} slot (P-tuning's).
        ids = chosen or [t for t, tpl in sorted(templates.items())
                         if tpl.has_mask and not any(s.kind == "soft" and not s.value for s in tpl.segments)]
        if not ids:
            raise ConfigError(f"method.patterns: {path} has no template with a {{\"mask\"}} and no bare "
                              f"{{\"soft\"}} slot, which PET's models need", field="method.patterns")
    return [(t, v) for t in ids for v in (opts.verbalizer_files() or [None])]


def unlabeled_pool(task: TaskSpec, split: FewShotSplit, size: int, seed: int,
                   eval_split: str) -> tuple[list[Example], str]:
    """The unlabelled examples: the task's `unlabeled` file, or its training split minus every labelled shot (train
    and dev); never the evaluation split. Shuffled with the seed and capped at `size`."""
    if task.unlabeled_file is not None:
        rows, source = task.load_unlabeled(), task.unlabeled_file
    else:
        if eval_split == "train":
            raise ConfigError(f"task {task.name!r} reports on its training split, so its training rows cannot be an "
                              f"unlabelled pool; name an unlabeled file in the task YAML", field="task")
        labelled = {e.guid for e in (*split.train, *split.dev)}
        rows = [e for e in task.load_split("train") if e.guid not in labelled]
        source = f"the {task.name} training split minus {len(labelled)} labelled shots"
    if not rows:
        raise ConfigError(f"task {task.name!r}: the unlabelled pool is empty ({source})", field="method.unlabeled")
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    return [rows[i] for i in order[:size]], source


# ---- the job ------------------------------------------------------------------------------------------------

def train_pet(cfg: RunConfig, backbone=None, on_eval: Callable[[int, float], None] | None = None,
              on_start: Callable[[str], None] | None = None, log: Callable[[str], None] | None = None) -> RunResult:
    """`workbench.train` for `pet` and `ipet`: same arguments, same result. `on_eval(generation, dev accuracy)` is
    called with each generation's ensemble (a sweep's pruner may stop the job there)."""
    from workbench.models import load_backbone, resolve_model
    from workbench.tracking import RunTracker, check_tracking_uri

    say = log or (lambda _: None)
    uri = check_tracking_uri(cfg.tracking.uri)
    job = plan(cfg)
    say(job.describe())
    ref = resolve_model(cfg.model)
    backbone = backbone if backbone is not None else load_backbone(ref)
    # Every member starts from the pretrained weights: prompt-finetune trains them all, so they are put back.
    pretrained = {k: v.detach().to("cpu", copy=True) for k, v in backbone.model.state_dict().items()}
    task, scope, digest = job.task, job.scope, config_hash(cfg)
    experiment = cfg.tracking.experiment or task.name
    resume = unfinished_parent(experiment, uri, digest, cfg.method_name)
    tags = run_tags(cfg, task, job.split, scope, digest, ref.identity)
    with RunTracker(experiment, run_name(cfg, task, scope, digest), uri, tags=tags,
                    resume_run_id=resume) as tracker:
        if on_start is not None:
            on_start(tracker.run_id)
        if resume:
            say(f"resuming run {resume}: models that finished are not trained again")
            with contextlib.suppress(Exception):  # the attempt before failed; this one has not (yet)
                tracker.client.delete_tag(tracker.run_id, "error")
        else:
            tree = resolved_tree(cfg)
            tree["runtime"] = {"pvps": [list(p) for p in job.pvps], "reduction": job.reduction,
                               "pool_source": job.pool_source, "pool_size": len(job.pool)}
            tracker.log_config(tree)
            tracker.log_dict(job.split.ids, "split_ids.json")
            tracker.log_dict([e.guid for e in job.pool], "pool_ids.json")
        result = _run(job, backbone, pretrained, tracker, on_eval, say)
        return replace(result, run_id=tracker.run_id)


def _run(job: PetPlan, backbone, pretrained, tracker, on_eval, say) -> RunResult:
    labels = {"dev": np.array([e.label for e in job.split.dev]), "test": np.array([e.label for e in job.eval_rows])}
    extra: dict[int, list[Example]] = {}  # iPET: each member's pool examples, labelled by the previous generation
    timer = Timer(job.size * job.generations, say)
    train_seconds = 0.0
    for g in range(job.generations):
        scores: list[Scores] = []
        for m in job.members(g):
            s = run_member(job, m, extra.get(m.index, []), backbone, pretrained, tracker)
            timer.member_done(m, s, labels)
            scores.append(s)
            train_seconds += s.train_seconds
        weights = ensemble_weights([s.prior for s in scores], job.reduction)
        ensemble = {part: merge([getattr(s, part) for s in scores], weights) for part in PARTS}
        summary = generation_summary(scores, ensemble, labels)
        tracker.log_metrics(summary, step=g)
        single = "best single model by dev" if job.split.dev else "first single model"
        say(f"generation {g}: ensemble of {len(scores)} models, dev {_fmt(summary.get('ensemble/dev_accuracy'))}, "
            f"{job.eval_split} {summary['ensemble/test_accuracy']:.4f} ({single}: "
            f"{summary['members/test_accuracy_best_dev']:.4f})")
        if on_eval is not None and "ensemble/dev_accuracy" in summary:
            on_eval(g, summary["ensemble/dev_accuracy"])
        if g + 1 < job.generations:
            extra = next_training_sets(job, g, scores, weights, tracker)
    tracker.log_metrics({"pool/size": len(job.pool),
                         "pool/examples_per_s": len(job.pool) * len(scores) / max(sum(s.pool_seconds for s in scores),
                                                                                   1e-9)})
    if job.opts.distill == "none":
        final = ReportedScores(ensemble["dev"], ensemble["test"], sum(s.test_seconds for s in scores), None)
    else:
        say(f"distilling the ensemble's soft labels on {len(job.pool):,} pool examples "
            f"({job.opts.distill_steps} steps)")
        final = distill(job, ensemble["pool"], backbone, pretrained, tracker)
        train_seconds += final.train_seconds
    return finish(job, final, labels, train_seconds, tracker, len(scores), pretrained)


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def accuracy(scores: np.ndarray, labels: np.ndarray) -> float:
    return float((scores.argmax(-1) == labels).mean()) if len(labels) else float("nan")


def generation_summary(scores: list[Scores], ensemble: dict[str, np.ndarray], labels: dict) -> dict[str, float]:
    """The generation's metrics: the ensemble's accuracy, and its members' (mean, and the one with the best dev
    accuracy: the single model a user would have picked without looking at the test split)."""
    test = [accuracy(s.test, labels["test"]) for s in scores]
    out = {"ensemble/test_accuracy": accuracy(ensemble["test"], labels["test"]),
           "members/test_accuracy_mean": float(np.mean(test))}
    if len(labels["dev"]):
        dev = [accuracy(s.dev, labels["dev"]) for s in scores]
        out["ensemble/dev_accuracy"] = accuracy(ensemble["dev"], labels["dev"])
        out["members/test_accuracy_best_dev"] = test[int(np.argmax(dev))]
    else:  # no dev split to choose by: the first member stands for "a single model"
        out["members/test_accuracy_best_dev"] = test[0]
    return out


def next_training_sets(job: PetPlan, generation: int, scores: list[Scores], weights: np.ndarray,
                       tracker) -> dict[int, list[Example]]:
    """iPET: for each member of the next generation, pool examples labelled by a random few of the others of this
    one, per class in the labelled shots' proportions, drawn by confidence (`workbench.ensemble`)."""
    opts = job.opts
    rng = np.random.default_rng([job.cfg.seed, generation])
    counts = per_class([e.label for e in job.split.train], job.task.num_classes, job.new_counts[generation])
    most = opts.most_likely if generation == 0 else None
    out, right, known = {}, 0, 0
    for m in range(len(scores)):
        chosen = pick_labellers(len(scores), m, opts.labeller_fraction, rng)
        probs = softmax(merge([scores[i].pool for i in chosen], weights[chosen]))
        drawn = draw_labelled(probs, counts, rng, most, job.task.label_names)
        out[m] = [replace(job.pool[i], label=c) for i, c in drawn]
        right += sum(job.pool[i].label == c for i, c in drawn if job.pool[i].label >= 0)
        known += sum(job.pool[i].label >= 0 for i, _ in drawn)
    if known:  # the pool came from the training split: how often the new labels are right
        tracker.log_metrics({"ipet/label_accuracy": right / known}, step=generation + 1)
    return out


@dataclass
class ReportedScores:
    """The reported model's scores: the distilled model's, or the ensemble's."""

    dev: np.ndarray
    test: np.ndarray
    test_seconds: float
    prepared: object  # the distilled model's PreparedRun; None for the ensemble
    train_seconds: float = 0.0
    best_step: int = 0
    steps: int = 0


# ---- one member -------------------------------------------------------------------------------------------------

def run_member(job: PetPlan, m: Member, extra: list[Example], backbone, pretrained, parent) -> Scores:
    """Train one member in a nested run and return its scores (also saved in the run, for a resume)."""
    from workbench.tracking import RunTracker
    from workbench.training import predict
    from workbench.training import train as train_loop
    from workbench.training.lm_loss import unlabeled_lm_loss

    cfg, opts = job.cfg, job.opts
    digest = member_hash(job, m, extra)
    tags = {"kind": MEMBER_KIND, "member": m.key, "member_hash": digest, "generation": str(m.generation),
            "template_id": str(m.template_id), "repetition": str(m.repetition), "task": job.task.name,
            "method": cfg.method_name}
    found = finished_member(parent, digest)
    if found is not None:  # trained before (a stopped job, or another job with this member): not again
        with RunTracker(parent.experiment, f"{parent.run_name}-{m.key}", parent.uri,
                        tags={**tags, "reused_from": found[0]}, nested=True) as run:
            with tempfile.TemporaryDirectory() as tmp:
                found[1].save(Path(tmp) / SCORES)
                run.log_artifacts(tmp)
        return replace(found[1], reused_from=found[0])
    backbone.model.load_state_dict(pretrained)
    mcfg = job.member_config(m)
    p = prepare(mcfg, backbone)
    encode, pad = p.encoder.encode, p.encoder.tokenizer.pad_token_id
    bs, progress = cfg.eval.batch_size, cfg.tracking.progress
    shots = [encode(e) for e in job.split.train]
    dev = [encode(e) for e in job.split.dev]
    pool = [encode(e) for e in job.pool]
    with RunTracker(parent.experiment, f"{parent.run_name}-{m.key}", parent.uri, tags=tags, nested=True) as run:
        run.log_params({"template_id": m.template_id, "verbalizer": m.verbalizer or "run's", "repetition": m.repetition,
                        "generation": m.generation, "train_examples": len(shots) + len(extra),
                        "template": p.template.text if p.template else ""})
        prior = float("nan")
        if shots:
            prior = accuracy(predict(p.model, shots, pad, bs), np.array([e.label for e in shots]))
            run.log_metrics({"prior/accuracy": prior})
        train_set = shots + [encode(e) for e in extra]
        seconds = 0.0
        if train_set:
            tcfg = replace(trainer_config(mcfg), seed=cfg.seed + m.repetition, aux_weight=opts.lm_weight)
            aux = (unlabeled_lm_loss(p.model.model, p.ref.kind, pool, p.encoder.tokenizer, tcfg.batch_size,
                                     cfg.seed + m.repetition) if opts.lm_weight else None)
            fit = train_loop(p.model, train_set, dev, pad, tcfg, on_log=lambda step, rec: run.log_metrics(rec, step),
                             aux_loss=aux)
            seconds = fit.seconds
            run.log_metrics({"train/seconds": fit.seconds, "best_step": fit.best_step})
        if extra:
            _log_training_set(run, extra, job.task)
        dev_scores = predict(p.model, dev, pad, bs)
        t0 = time.perf_counter()
        test_scores = predict(p.model, [encode(e) for e in job.eval_rows], pad, bs, progress, job.eval_split)
        t1 = time.perf_counter()
        pool_scores = predict(p.model, pool, pad, bs, progress, "pool")
        t2 = time.perf_counter()
        s = Scores(prior, dev_scores, test_scores, pool_scores, seconds, t1 - t0, t2 - t1)
        metrics = {"test/accuracy": accuracy(test_scores, np.array([e.label for e in job.eval_rows])),
                   "pool/examples_per_s": len(pool) / max(t2 - t1, 1e-9)}
        if dev:
            metrics["eval/best_accuracy"] = accuracy(dev_scores, np.array([e.label for e in job.split.dev]))
        run.log_metrics(metrics)
        with tempfile.TemporaryDirectory() as tmp:
            s.save(Path(tmp) / SCORES)
            run.log_artifacts(tmp)
    return s


def _log_training_set(run, examples: list[Example], task: TaskSpec) -> None:
    """The iPET training set a member was given: pool id, the label it was given, the text."""
    run.log_table({"guid": [e.guid for e in examples], "label": [task.label_names[e.label] for e in examples],
                   **{f: [e.fields.get(f, "") for e in examples] for f in task.text_fields}},
                  "ipet_training_set.json")


# ---- distillation and the result --------------------------------------------------------------------------------

def distill(job: PetPlan, teacher: np.ndarray, backbone, pretrained, tracker) -> ReportedScores:
    """Train the student on the pool with the ensemble's scores as soft targets (temperature `opts.temperature`),
    choosing its state by accuracy on the labelled dev split when there is one."""
    from workbench.training import predict
    from workbench.training import train as train_loop

    backbone.model.load_state_dict(pretrained)
    scfg = job.student_config()
    p = prepare(scfg, backbone)
    encode, pad = p.encoder.encode, p.encoder.tokenizer.pad_token_id
    pool = [replace(encode(e), label=int(t.argmax()), target=[float(x) for x in t])
            for e, t in zip(job.pool, teacher)]
    dev = [encode(e) for e in job.split.dev]
    tcfg = replace(trainer_config(scfg), temperature=job.opts.temperature)
    fit = train_loop(p.model, pool, dev, pad, tcfg,
                     on_log=lambda step, rec: tracker.log_metrics({f"distill/{k}": v for k, v in rec.items()}, step))
    dev_scores = predict(p.model, dev, pad, job.cfg.eval.batch_size)
    t0 = time.perf_counter()
    test_scores = predict(p.model, [encode(e) for e in job.eval_rows], pad, job.cfg.eval.batch_size,
                          job.cfg.tracking.progress, job.eval_split)
    return ReportedScores(dev_scores, test_scores, time.perf_counter() - t0, p, fit.seconds, fit.best_step, fit.steps)


def finish(job: PetPlan, final: ReportedScores, labels: dict, train_seconds: float, tracker, members: int,
           pretrained: dict) -> RunResult:
    """Log the reported model's numbers, predictions and (distilled) weights; the run's result."""
    from workbench.adaptation.artifacts import ARTIFACT_DIR, save_trained
    from workbench.data import compute_metrics

    cfg, task = job.cfg, job.task
    test = compute_metrics(labels["test"].tolist(), final.test.argmax(-1).tolist())
    dev_acc = accuracy(final.dev, labels["dev"])
    metrics = {**{f"test/{k}": v for k, v in test.items()}, "train/seconds": train_seconds,
               "test/examples_per_s": len(job.eval_rows) / max(final.test_seconds, 1e-9),
               "test/rows": len(job.eval_rows), "best_step": final.best_step}
    if not math.isnan(dev_acc):
        metrics["eval/best_accuracy"] = dev_acc
    p = final.prepared
    if p is not None:
        trainable, total = p.model.count_parameters()
        metrics["distilled/test_accuracy"] = test["accuracy"]
        if not math.isnan(dev_acc):
            metrics["distilled/dev_accuracy"] = dev_acc
    else:  # the ensemble: every member trained every weight of its own copy of the backbone
        total = sum(t.numel() for t in pretrained.values() if t.is_floating_point())
        trainable = total * members
    metrics.update({"trainable_params": trainable, "trainable_fraction": trainable / total})
    tracker.log_metrics(metrics, step=final.steps)
    rows = job.eval_rows
    preds = final.test.argmax(-1).tolist()
    tracker.log_predictions([e.guid for e in rows], labels["test"].tolist(), preds, final.test, task.label_names,
                            texts={f: [e.fields.get(f, "") for e in rows] for f in task.text_fields})
    tracker.log_confusion(labels["test"].tolist(), preds, task.label_names)
    if p is not None and cfg.tracking.save != "never":
        with tempfile.TemporaryDirectory() as tmp:
            save_trained(p.model, Path(tmp), resolved_config(job.student_config(), p))
            tracker.log_artifacts(tmp, ARTIFACT_DIR)
    return RunResult("", dev_acc, test, job.scope, trainable, trainable / total, train_seconds, cfg, final.best_step,
                     final.steps, metrics["test/examples_per_s"])


# ---- resuming ---------------------------------------------------------------------------------------------------

def unfinished_parent(experiment: str, uri: str, digest: str, method: str) -> str | None:
    """The newest run of this exact config, when it did not finish (stopped, failed, killed): the one to resume."""
    import mlflow

    from workbench.tracking.workers import SCOPE_TAG, WORKER_TAG, worker_alive

    client = mlflow.MlflowClient(uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return None
    runs = client.search_runs([exp.experiment_id], f"tags.config_hash = '{digest}' and tags.method = '{method}' and "
                                                   f"tags.kind = 'run'", order_by=["attributes.start_time DESC"],
                              max_results=1)
    if not runs or runs[0].info.status == "FINISHED":
        return None
    run = runs[0]
    # RUNNING in a live process: another job with this config is at work; sharing its run would train every
    # member twice into one record. Not alive or not known to be alive (another host): start a run of our own.
    if run.info.status == "RUNNING" and worker_alive(run.data.tags.get(WORKER_TAG, ""),
                                                     run.data.tags.get(SCOPE_TAG)) is not False:
        return None
    return run.info.run_id


def member_hash(job: PetPlan, m: Member, extra: list[Example]) -> str:
    """What decides a member's scores, hashed: its run config without the PET-only options (which change other
    members, not this one), its repetition, the pool and its iPET set. Equal hashes, equal scores: a finished
    member is found again by it, in a resumed job or in another (a `pet` and an `ipet` job share generation 0)."""
    import hashlib
    import json

    ident = {k: v for k, v in identity_params(job.member_config(m)).items() if not k.startswith("method.")}
    ident.update(lm_weight=job.opts.lm_weight, repetition=m.repetition, pool=[e.guid for e in job.pool],
                 extra=[(e.guid, e.label) for e in extra])
    return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:16]


def finished_member(tracker, digest: str) -> tuple[str, Scores] | None:
    """(run id, scores) of a finished member run with this hash in the tracker's experiment, or None."""
    from workbench.tracking.runs import download_artifact

    client = tracker.client
    exp = client.get_run(tracker.run_id).info.experiment_id
    runs = client.search_runs([exp], f"tags.member_hash = '{digest}' and tags.kind = '{MEMBER_KIND}' and "
                                     f"attributes.status = 'FINISHED'", order_by=["attributes.start_time DESC"],
                              max_results=1)
    if not runs:
        return None
    run_id = runs[0].info.run_id
    with tempfile.TemporaryDirectory() as tmp:
        return run_id, Scores.load(download_artifact(run_id, SCORES, tracker.uri, Path(tmp)))


class Timer:
    """One line per member: its numbers, and the time left for the members still to train (measured on the
    members trained in this process; a reused one costs nothing)."""

    def __init__(self, total: int, say: Callable[[str], None]):
        self.total, self.say = total, say
        self.count, self.trained, self.seconds = 0, 0, 0.0
        self.last = time.perf_counter()

    def member_done(self, m: Member, s: Scores, labels: dict) -> None:
        now = time.perf_counter()
        self.count += 1
        if s.reused_from is None:
            self.trained += 1
            self.seconds += now - self.last
        self.last = now
        left = self.total - self.count
        dev = f"dev {accuracy(s.dev, labels['dev']):.3f}, " if len(labels["dev"]) else ""
        done = (f"reused from run {s.reused_from}" if s.reused_from else
                f"pool scored at {len(s.pool) / max(s.pool_seconds, 1e-9):.1f} rows/s")
        eta = f"; about {duration(self.seconds / self.trained * left)} left for the models" if left and self.trained else ""
        self.say(f"model {self.count}/{self.total} ({m.key}): {dev}test {accuracy(s.test, labels['test']):.3f}, "
                 f"{done}{eta}")
