"""`workbench.train`: the job table, and the one-model job most methods run.

`train` runs one run config as one MLflow run of kind `run`; every sweep trial and comparison run comes through it.
Most methods train one model: `train_one_model`, one method on one few-shot split. A method that declares `own_job`
(PET and iPET: several models, an ensemble, distillation) is run by the job the table holds for it, with the same
contract: the same arguments, a `RunResult`, one parent run. The method says *that* it is a job; only this table
says where the job lives, so the library never names a recipe. This is the one recipe module that imports another.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from workbench.adaptation import method_for_options
from workbench.errors import WorkbenchError
from workbench.recipes import pet
from workbench.runs import (Forecast, RunConfig, RunResult, check_input, check_shots, config_hash, fit_and_score,
                            prepare, resolved_config, run_name, run_tags)

SAVE_AUTO_MAX_FRACTION = 0.05  # "auto" saves methods that train under 5% of the weights: small artifacts


@dataclass(frozen=True)
class Job:
    """How a run config is run (`run`: `workbench.train`'s signature) and checked without loading a model (`check`:
    what a sweep or a comparison runs once, before its first run)."""

    run: Callable[..., RunResult]
    check: Callable[[RunConfig], object]


_JOBS: dict[str, Job] = {}


def register_job(method: str, job: Job) -> Job:
    """The job that runs `method` (a method registered with `own_job=True`); a method has one."""
    if method in _JOBS:
        raise WorkbenchError(f"a job for method {method!r} is already registered ({_JOBS[method].run.__module__})")
    _JOBS[method] = job
    return job


register_job("pet", Job(pet.train_pet, pet.plan))
register_job("ipet", Job(pet.train_pet, pet.plan))


def job_for(cfg: RunConfig) -> Job:
    method = method_for_options(cfg.method)
    if not method.own_job:
        return Job(train_one_model, check_one_model)
    if method.name not in _JOBS:
        raise WorkbenchError(f"method {method.name!r} is a job of its own (own_job=True) but no job runs it; register "
                             f"one with workbench.recipes.train.register_job({method.name!r}, Job(run, check))")
    return _JOBS[method.name]


def train(cfg: RunConfig, backbone=None, on_eval: Callable[[int, float], None] | None = None,
          on_start: Callable[[str], None] | None = None, log: Callable[[str], None] | None = None) -> RunResult:
    """Train (or, for a method that does not train, just evaluate) and log one MLflow run: `workbench.train`.

    Returns the dev and test accuracy and the MLflow run id. `backbone` reuses a loaded model (its weights are
    changed by methods that train them). `on_start(run_id)` is called once the MLflow run exists; `on_eval(step,
    dev_accuracy)` at every evaluation, e.g. to report to a pruner: an exception it raises stops training and marks
    the run failed with that error. `log` receives what the run will do as it starts and, after the first step, how
    long it should take.
    """
    return job_for(cfg).run(cfg, backbone=backbone, on_eval=on_eval, on_start=on_start, log=log)


def check_run(cfg: RunConfig) -> None:
    """Everything `train` checks before its model loads, without loading one."""
    job_for(cfg).check(cfg)


def check_one_model(cfg: RunConfig) -> None:
    """What `train_one_model` checks before its model loads, for a sweep or a comparison to check once, before its
    first run: a task without a template then fails in one line, not inside every trial after a model has loaded."""
    check_shots(cfg, method_for_options(cfg.method))
    check_input(cfg)


def train_one_model(cfg: RunConfig, backbone=None, on_eval: Callable[[int, float], None] | None = None,
          on_start: Callable[[str], None] | None = None, log: Callable[[str], None] | None = None) -> RunResult:
    """Train one model (or, for a method that does not train, just evaluate it) and log one MLflow run.

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
            if should_save(cfg.tracking.save, trainable / total):
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


def should_save(policy: str, fraction: float) -> bool:
    # "auto" keeps parameter-efficient artifacts (small) and skips full copies of the backbone.
    return policy == "always" or (policy == "auto" and fraction < SAVE_AUTO_MAX_FRACTION)


__all__ = ["Job", "RunResult", "check_run", "job_for", "register_job", "train", "train_one_model"]
