"""`run_sweep`: one Optuna study per (task, method, model, shots), one MLflow parent run per study.

Each trial samples the method's search space, trains with `workbench.recipes.train.run` (a nested
MLflow run), reports the dev accuracy at every evaluation to the pruner, and returns the final dev
accuracy. Only COMPLETE and PRUNED trials count toward `trials`, so a failed or killed trial is
replaced, and several workers (processes or machines sharing one storage) stop together once the
study holds that many finished trials.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field, fields

import optuna
from optuna.trial import TrialState

from workbench.errors import ConfigError, WorkbenchError
from workbench.sweeps.space import SearchSpace, check_value, load_space
from workbench.sweeps.storage import (WORKER, open_storage, reap_dead_trials, redact, resolve_storage,
                                      study_name as default_study_name)
from workbench.tracking import RunTracker, check_tracking_uri

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
# RunConfig fields that do not change a trial's result, so they may differ between workers and resumes.
NEUTRAL_FIELDS = {"progress", "tracking_uri", "experiment", "save"}


@dataclass
class SweepConfig:
    task: str = "sst2"
    method: str = "prompt-finetune"
    model: str = "smollm2-135m"
    shots: int = 16
    seed: int = 13  # the few-shot split every trial trains on, and the sampler's seed
    trials: int = 20  # finished (complete or pruned) trials the study should hold
    timeout: float | None = None  # seconds after which this worker starts no new trial
    space_file: str | None = None  # default: experiments/<method>.yaml
    params: list[str] = field(default_factory=list)  # overrides: "lr=1e-5..1e-3:log", "encoder=lstm|mlp"
    run_overrides: dict = field(default_factory=dict)  # other RunConfig fields, fixed for every trial
    storage: str | None = None  # default: $WORKBENCH_SWEEP_STORAGE or sqlite:///optuna.db
    study_name: str | None = None  # default: <task>-<method>-<model>-k<shots>
    resume: bool = False  # continue (or join) an existing study
    pruner: str = "median"  # median | halving | none
    tracking_uri: str | None = None
    max_failures: int = 3  # consecutive failed trials after which this worker stops
    progress: bool = False


@dataclass
class SweepResult:
    study_name: str
    storage: str  # redacted
    parent_run_id: str
    n_complete: int
    n_pruned: int
    n_failed: int
    best_value: float | None
    best_params: dict
    best_overrides: dict  # RunConfig fields (with method_options) of the best trial, fixed values included
    best_run_id: str | None


def _base_run(cfg: SweepConfig) -> dict:
    base = {"task": cfg.task, "method": cfg.method, "model": cfg.model, "shots": cfg.shots, "seed": cfg.seed,
            "progress": cfg.progress, "tracking_uri": cfg.tracking_uri, **cfg.run_overrides}
    base["method_options"] = dict(cfg.run_overrides.get("method_options") or {})
    from workbench.recipes.train import RunConfig

    if "save" in {f.name for f in fields(RunConfig)}:
        base.setdefault("save", "never")  # a trial's weights are not worth an artifact; the final runs keep theirs
    return base


def _protocol(base: dict) -> dict:
    """What must match for two workers (or a resume) to add trials to the same study."""
    return {k: v for k, v in sorted(base.items()) if k not in NEUTRAL_FIELDS}


def validate(cfg: SweepConfig) -> tuple[SearchSpace, dict]:
    """Every check that needs no trial: task, method, options, space, run fields. Returns (space, base run)."""
    from workbench.adaptation import get_method
    from workbench.recipes.train import RunConfig
    from workbench.data import get_task

    get_task(cfg.task)
    method = get_method(cfg.method)
    if cfg.trials < 1:
        raise ConfigError(f"--trials must be >= 1 (got {cfg.trials})")
    if cfg.pruner not in ("median", "halving", "none"):
        raise ConfigError(f"unknown pruner {cfg.pruner!r}; use median, halving or none")
    space = load_space(method.name, cfg.space_file, cfg.params)
    base = _base_run(cfg)
    RunConfig.from_dict(base, "sweep run settings")
    method.parse_options(base["method_options"])
    for p in space.params:  # every value the space can produce must fit the field or option, and pass its checks
        for v in p.values():
            if p.target == "option":
                check_value(p.name, v, method.options, p.source, f" (option of method {method.name!r})")
                method.parse_options({**base["method_options"], p.name: v})
            else:
                check_value(p.name, v, RunConfig, p.source, " (run field)")
                RunConfig.from_dict({**base, p.name: v}, p.source)
    training_only = {"lr", "batch_size", "grad_accum", "warmup_ratio", "weight_decay", "max_steps"}
    bad = [p.name for p in space.params if not method.trains and p.name in training_only and not p.fixed]
    if bad:
        raise ConfigError(f"{space.source}: method {method.name!r} does not train; {bad} cannot be searched")
    return space, base


def _make_pruner(name: str) -> optuna.pruners.BasePruner:
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=0)
    if name == "halving":
        return optuna.pruners.SuccessiveHalvingPruner()
    return optuna.pruners.NopPruner()


def _make_sampler(seed: int, n_existing: int, trials: int) -> optuna.samplers.TPESampler:
    # Re-seeded before each trial from the study's size, so a resumed sweep does not replay its random start.
    return optuna.samplers.TPESampler(seed=seed + n_existing, n_startup_trials=min(10, max(2, trials // 3)),
                                      constant_liar=True)


def _open_study(cfg: SweepConfig, name: str, storage, base: dict, space: SearchSpace) -> tuple[optuna.Study, bool]:
    sampler, pruner = _make_sampler(cfg.seed, 0, cfg.trials), _make_pruner(cfg.pruner)
    try:
        study = optuna.create_study(storage=storage, study_name=name, direction="maximize", sampler=sampler,
                                    pruner=pruner)
        study.set_user_attr("protocol", _protocol(base))
        study.set_user_attr("space", space.to_dict())
        return study, True
    except optuna.exceptions.DuplicatedStudyError:
        study = optuna.load_study(study_name=name, storage=storage, sampler=sampler, pruner=pruner)
    if study.trials and not cfg.resume:
        raise WorkbenchError(f"study {name!r} already holds {len(study.trials)} trial(s) in "
                             f"{redact(storage.url if hasattr(storage, 'url') else str(storage))}; "
                             f"pass --resume to continue it, or --study-name for a new one")
    theirs = study.user_attrs.get("protocol")
    if theirs is not None and json.loads(json.dumps(_protocol(base))) != theirs:
        diff = {k: (theirs.get(k), v) for k, v in json.loads(json.dumps(_protocol(base))).items() if theirs.get(k) != v}
        diff.update({k: (v, None) for k, v in theirs.items() if k not in _protocol(base)})
        raise ConfigError(f"study {name!r} was run with other settings {{field: (study, now)}}: {diff}; use the "
                          f"same settings or --study-name for a new study")
    return study, False


def _parent_id(study: optuna.Study, created: bool, wait_s: float = 60.0) -> str | None:
    """The study's MLflow parent run id; a worker that did not create the study waits for its creator's."""
    deadline = time.monotonic() + (0 if created else wait_s)
    while True:
        run_id = study.user_attrs.get("mlflow_parent_run_id")
        if run_id or time.monotonic() >= deadline:
            return run_id
        time.sleep(0.5)


def _counts(study: optuna.Study) -> dict[TrialState, int]:
    counts = {s: 0 for s in TrialState}
    for t in study.get_trials(deepcopy=False):
        counts[t.state] += 1
    return counts


class _BudgetReached(Exception):
    pass


def _objective(study_name_: str, space: SearchSpace, base: dict, trials: int):
    import mlflow

    from workbench.recipes.train import RunConfig, run

    def objective(trial: optuna.Trial) -> float:
        trial.set_user_attr("worker", WORKER)
        before = [t for t in trial.study.get_trials(deepcopy=False)
                  if t.number < trial.number and t.state in (*FINISHED, TrialState.RUNNING)]
        if len(before) >= trials:  # another worker asked for a trial at the same moment
            trial.set_user_attr("error", "not run: the study already had enough trials")
            raise _BudgetReached()
        run_fields, options = space.sample(trial)
        overrides = {**run_fields, "method_options": {**base["method_options"], **options}}
        trial.set_user_attr("overrides", overrides)
        cfg = RunConfig.from_dict({**base, **overrides}, f"trial {trial.number}")
        seen: dict = {}

        def on_eval(step: int, dev_acc: float) -> None:
            if "run_id" not in seen and mlflow.active_run() is not None:
                seen["run_id"] = mlflow.active_run().info.run_id
                trial.set_user_attr("mlflow_run_id", seen["run_id"])  # so a worker that dies mid-trial can be traced
            trial.report(dev_acc, step)
            if trial.should_prune():
                raise optuna.TrialPruned(f"pruned at step {step}: dev accuracy {dev_acc:.4f}")

        def tag(run_id: str, state: str, **extra: str) -> None:
            from mlflow.entities import RunTag

            tags = {"optuna.study": study_name_, "optuna.trial": str(trial.number), "sweep_trial": "true",
                    "optuna.state": state, **extra}
            mlflow.MlflowClient().log_batch(run_id, tags=[RunTag(k, v) for k, v in tags.items()])

        try:
            result = run(cfg, on_eval=on_eval)
        except optuna.TrialPruned:
            if "run_id" in seen:  # run() ended it FAILED; a pruned trial was stopped on purpose
                tag(seen["run_id"], "PRUNED", pruned="true")
                mlflow.MlflowClient().delete_tag(seen["run_id"], "error")
                mlflow.MlflowClient().set_terminated(seen["run_id"], "KILLED")
            raise
        except KeyboardInterrupt:
            trial.set_user_attr("error", "interrupted (Ctrl-C)")
            raise
        except Exception as e:
            msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
            trial.set_user_attr("error", f"{type(e).__name__}: {msg}"[:1000])
            if "run_id" in seen:
                tag(seen["run_id"], "FAIL")
            raise
        tag(result.run_id, "COMPLETE")
        if seen.get("run_id") != result.run_id:
            trial.set_user_attr("mlflow_run_id", result.run_id)
        trial.set_user_attr("result", {"test_accuracy": result.test_metrics.get("accuracy"),
                                       "train_seconds": result.train_seconds,
                                       "trainable_fraction": result.trainable_fraction})
        return result.dev_accuracy

    return objective


def run_sweep(cfg: SweepConfig, log=print) -> SweepResult:
    """Run (or resume, or join) the study until it holds `cfg.trials` finished trials or `cfg.timeout` passes."""
    import mlflow

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space, base = validate(cfg)
    from workbench.models import resolve_model

    resolve_model(cfg.model)  # a missing model fails here, not in every trial
    storage_url = resolve_storage(cfg.storage)
    storage = open_storage(storage_url)
    uri = check_tracking_uri(cfg.tracking_uri)
    base["tracking_uri"] = uri
    from workbench.data import get_task

    task_name = get_task(cfg.task).name  # a task YAML file's path differs from its name
    name = cfg.study_name or default_study_name(task_name, cfg.method, cfg.model, cfg.shots)
    study, created = _open_study(cfg, name, storage, base, space)
    reaped = reap_dead_trials(study, uri)
    if reaped:
        log(f"marked trial(s) {reaped} FAIL: their worker died")
    experiment = base.get("experiment") or task_name
    tags = {"sweep": "true", "optuna.study": name, "optuna.storage": redact(storage_url), "task": task_name,
            "method": cfg.method, "model": cfg.model, "shots": str(cfg.shots), "seed": str(cfg.seed)}
    run_id = _parent_id(study, created)
    with RunTracker(experiment, f"sweep-{name}", uri, tags=tags, resume_run_id=run_id) as parent:
        if run_id is None:
            study.set_user_attr("mlflow_parent_run_id", parent.run_id)
            mlflow.log_params({"sweep.trials": cfg.trials, "sweep.pruner": cfg.pruner,
                               **{f"sweep.{k}": str(v)[:500] for k, v in _protocol(base).items()}})
            mlflow.log_dict(space.to_dict(), "search_space.yaml")
        log(f"study {name} in {redact(storage_url)}; MLflow parent run {parent.run_id}")
        _optimize(study, cfg, space, base, name, log)
        result = _summarize(study, name, storage_url, parent.run_id, space)
        _log_parent(study, result)
    return result


def _optimize(study: optuna.Study, cfg: SweepConfig, space: SearchSpace, base: dict, name: str, log) -> None:
    import mlflow

    objective = _objective(name, space, base, cfg.trials)
    start, failures = time.monotonic(), 0
    while True:
        reap_dead_trials(study, base["tracking_uri"])
        counts = _counts(study)
        done = counts[TrialState.COMPLETE] + counts[TrialState.PRUNED]
        if done + counts[TrialState.RUNNING] >= cfg.trials:
            break
        if cfg.timeout is not None and time.monotonic() - start >= cfg.timeout:
            log(f"timeout: {cfg.timeout:g}s passed; {done}/{cfg.trials} trials finished")
            break
        study.sampler = _make_sampler(cfg.seed, sum(counts.values()), cfg.trials)
        study.optimize(objective, n_trials=1, catch=(Exception,))
        trials = study.get_trials(deepcopy=False)
        trial = next((t for t in reversed(trials) if t.user_attrs.get("worker") == WORKER), trials[-1])
        if trial.state == TrialState.FAIL and trial.user_attrs.get("error", "").startswith("not run:"):
            break
        value = f"{trial.value:.4f}" if trial.value is not None else "-"
        error = f"  error: {trial.user_attrs.get('error')}" if trial.state == TrialState.FAIL else ""
        log(f"trial {trial.number}: {trial.state.name.lower()} dev accuracy {value} {json.dumps(trial.params)}{error}")
        if trial.state == TrialState.COMPLETE:
            mlflow.log_metric("sweep/dev_accuracy", trial.value, step=trial.number)
            mlflow.log_metric("sweep/best_dev_accuracy", study.best_value, step=trial.number)
        failures = failures + 1 if trial.state == TrialState.FAIL else 0
        if failures >= cfg.max_failures:
            raise WorkbenchError(f"{failures} trials in a row failed; last error: {trial.user_attrs.get('error')}")


def _summarize(study: optuna.Study, name: str, storage_url: str, parent_id: str, space: SearchSpace) -> SweepResult:
    counts = _counts(study)
    try:
        best = study.best_trial
    except ValueError:
        best = None
    overrides = dict(best.user_attrs.get("overrides", {})) if best else {}
    return SweepResult(name, redact(storage_url), parent_id, counts[TrialState.COMPLETE], counts[TrialState.PRUNED],
                       counts[TrialState.FAIL], best.value if best else None, dict(best.params) if best else {},
                       overrides, best.user_attrs.get("mlflow_run_id") if best else None)


def _log_parent(study: optuna.Study, result: SweepResult) -> None:
    """Best params (as tags: a resumed sweep may find a better one) and score, trials table, Optuna's plots."""
    import mlflow

    mlflow.log_metrics({"sweep/complete_trials": result.n_complete, "sweep/pruned_trials": result.n_pruned,
                        "sweep/failed_trials": result.n_failed})
    if result.best_value is None:
        return
    mlflow.log_metric("eval/accuracy", result.best_value)  # the fixed name: the best trial's dev accuracy
    mlflow.log_metric("best/eval_accuracy", result.best_value)
    mlflow.set_tags({"best.trial": str(study.best_trial.number), "best.run_id": result.best_run_id or "",
                     **{f"best.{k}": str(v) for k, v in result.best_params.items()},
                     "best.overrides": json.dumps(result.best_overrides)[:4000]})
    rows = [{"number": t.number, "state": t.state.name, "value": t.value, **t.params,
             "error": t.user_attrs.get("error"), "mlflow_run_id": t.user_attrs.get("mlflow_run_id")}
            for t in study.get_trials(deepcopy=False)]
    mlflow.log_dict(rows, "optuna/trials.json")
    _log_plots(study)


def _log_plots(study: optuna.Study) -> None:
    import warnings

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import mlflow
    from optuna.visualization import matplotlib as ovm

    plots = {"optuna/optimization_history.png": ovm.plot_optimization_history,
             "optuna/param_importances.png": ovm.plot_param_importances}
    for path, plot in plots.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                ax = plot(study)
            except Exception as e:  # e.g. importances need two complete trials and a parameter that varies
                mlflow.log_text(f"not plotted: {e}\n", path.replace(".png", ".txt"))
                continue
        fig = ax.figure if hasattr(ax, "figure") else ax.flat[0].figure
        fig.set_size_inches(7, 4.5)
        fig.tight_layout()
        mlflow.log_figure(fig, path)
        plt.close(fig)


# Run fields a study fixed for all its trials that belong to its best config (its training budget and setup).
CONFIG_FIELDS = ("lr", "batch_size", "grad_accum", "warmup_ratio", "weight_decay", "max_steps", "eval_every",
                 "patience", "max_seq_length", "template_id", "template_file", "verbalizer_file", "multi_token")


def best_known(task: str, method: str, model: str, shots: int, storage: str | None = None,
               study_name: str | None = None) -> tuple[dict, dict, str | None]:
    """From the matching study: (the study's fixed settings, the best trial's params, a description);
    ({}, {}, None) when there is no such study or it has no complete trial."""
    url = resolve_storage(storage)
    if url.startswith("sqlite:///") and not os.path.exists(url.split("///", 1)[1]):
        return {}, {}, None
    from workbench.data import get_task

    name = study_name or default_study_name(get_task(task).name, method, model, shots)
    try:
        study = optuna.load_study(study_name=name, storage=open_storage(url))
        best = study.best_trial
    except (KeyError, ValueError):
        return {}, {}, None
    protocol = study.user_attrs.get("protocol", {})
    fixed = {k: protocol[k] for k in CONFIG_FIELDS if protocol.get(k) is not None}
    return fixed, dict(best.user_attrs.get("overrides", {})), f"{name} trial {best.number}"


__all__ = ["SweepConfig", "SweepResult", "best_known", "run_sweep", "validate"]
