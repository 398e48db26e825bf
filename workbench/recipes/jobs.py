"""The job table: which job runs a run config. `workbench.train` (and every sweep trial and comparison run) comes
through here.

Most methods train one model (`recipes.train`). A method that declares `own_job` (PET and iPET: several models, an
ensemble, distillation) is run by the job this table holds for it, with the same contract: the same arguments, a
`RunResult`, one parent MLflow run of kind `run`. The method says *that* it is a job; only this table says where
the job lives, so the library never names a recipe. This is the one module of `recipes/` that imports others.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from workbench.adaptation import method_for_options
from workbench.errors import WorkbenchError
from workbench.recipes import pet
from workbench.recipes.train import check_one_model, train_one_model
from workbench.runs import RunConfig, RunResult


@dataclass(frozen=True)
class Job:
    """How a run config is run (`run`: `workbench.train`'s signature) and checked without loading a model (`check`:
    what a sweep or a comparison runs once, before its first run)."""

    run: Callable[..., RunResult]
    check: Callable[[RunConfig], object]


ONE_MODEL = Job(train_one_model, check_one_model)
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
        return ONE_MODEL
    if method.name not in _JOBS:
        raise WorkbenchError(f"method {method.name!r} is a job of its own (own_job=True) but no job runs it; register "
                             f"one with workbench.recipes.jobs.register_job({method.name!r}, Job(run, check))")
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


__all__ = ["Job", "check_run", "job_for", "register_job", "train"]
