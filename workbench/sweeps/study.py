"""`run_study`: an Optuna study driven by an objective function, one MLflow parent run per study.

This module knows nothing of training: the caller passes `objective(params, trial) -> TrialOutcome`,
where `params` maps dotted config paths to this trial's values and `trial.report(step, value)` feeds
the pruner (it raises `optuna.TrialPruned` when the trial should stop). Only COMPLETE and PRUNED
trials count toward `trials`, so a failed or killed trial is replaced, and several workers (processes
or machines sharing one storage) stop together once the study holds that many finished trials.
"""

from __future__ import annotations

import json
import math
import time
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import optuna
from optuna.trial import TrialState

from workbench.config.space import SearchSpace
from workbench.errors import ConfigError, WorkbenchError
from workbench.progress import duration
from workbench.sweeps.storage import (WORKER, check_storage, end_trial_run, open_storage, reap_dead_trials, redact,
                                      resolve_storage, worker_scope)
from workbench.tracking import RunTracker, reap_orphan_runs
from workbench.tracking.guide import SWEEP_KIND

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
PRUNERS = ("median", "halving", "none")
MAX_STUDY_NAME = 200  # Optuna stores up to 512 characters; the MLflow run is named sweep-<study>


def study_name_problem(name: object) -> str | None:
    """Why `name` cannot name a study, or None."""
    if not isinstance(name, str):
        return f"expected a string, got {type(name).__name__}"
    if not name.strip():
        return "empty"
    if name != name.strip():
        return f"{name!r} starts or ends with spaces"
    if any(unicodedata.category(c).startswith("C") for c in name):
        return f"{name!r} holds a control character (newline, tab, ...)"
    if len(name) > MAX_STUDY_NAME:
        return f"{len(name)} characters; at most {MAX_STUDY_NAME}"
    return None


@dataclass
class StudySpec:
    """One study: where it is stored, what it searches, and what must match to add trials to it."""

    name: str
    space: SearchSpace  # dotted paths
    protocol: dict[str, Any]  # settings shared by every trial; a resume or a second worker must match them
    fixed: dict[str, Any]  # the base config's searchable and budget settings: part of the best config
    experiment: str  # MLflow experiment of the parent run
    tracking_uri: str
    storage: str | None = None  # default: $WORKBENCH_SWEEP_STORAGE or sqlite:///optuna.db
    trials: int = 20
    seed: int = 13  # the sampler's seed
    timeout: float | None = None
    resume: bool = False
    pruner: str = "median"
    max_failures: int = 3  # stop after this many failed trials in a row; 1: at the first failure
    tags: dict[str, str] = field(default_factory=dict)  # tags of the parent run

    def __post_init__(self) -> None:
        """Refuse, in one line naming the field, what would fail only once the study runs (or run wrongly)."""
        problem = study_name_problem(self.name)
        if problem:
            raise ConfigError(f"sweep.study_name: {problem}", field="sweep.study_name")
        for name in ("trials", "max_failures"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"sweep.{name}: {value!r} is not allowed; expected an integer >= 1",
                                  field=f"sweep.{name}")
        t = self.timeout
        if t is not None and (isinstance(t, bool) or not isinstance(t, (int, float)) or math.isnan(t) or t <= 0):
            raise ConfigError(f"sweep.timeout: {t!r} is not allowed; expected a number of seconds > 0 or null",
                              field="sweep.timeout")
        if self.pruner not in PRUNERS:
            raise ConfigError(f"sweep.pruner: {self.pruner!r} is not allowed; expected one of {', '.join(PRUNERS)}",
                              field="sweep.pruner")
        problem = check_storage(self.storage)
        if problem:
            raise ConfigError(f"sweep.storage: {problem}" if self.storage else problem,
                              field="sweep.storage" if self.storage else None)


@dataclass
class TrialOutcome:
    value: float  # the objective: dev accuracy
    run_id: str  # the trial's MLflow run
    info: dict = field(default_factory=dict)  # shown in the trials table (test accuracy, seconds, ...)


@dataclass
class StudyResult:
    study_name: str
    storage: str  # redacted
    parent_run_id: str
    n_complete: int
    n_pruned: int
    n_failed: int
    best_value: float | None
    best_params: dict  # dotted path -> value: the best trial's searched values
    best_run_id: str | None


class TrialHandle:
    """What the objective sees of its trial: its number, the pruner, the run it trains in, and its `label` in the
    sweep's progress lines ("trial 3/20")."""

    def __init__(self, trial: optuna.Trial, study_name: str | None = None, tracking_uri: str | None = None,
                 label: str | None = None):
        self._trial = trial
        self.number = trial.number
        self.study_name = study_name or trial.study.study_name
        self.tracking_uri = tracking_uri
        self.label = label or f"trial #{trial.number}"
        self.run_id: str | None = None

    def started(self, run_id: str) -> None:
        """Link the trial and its MLflow run both ways as soon as the run exists (the trial's `mlflow_run_id`, the
        run's `optuna.*` tags with state RUNNING), so a worker killed at any point of the trial leaves nothing
        untraceable: the next worker or `--resume` ends that run."""
        if self.run_id != run_id:
            self.run_id = run_id
            self._trial.set_user_attr("mlflow_run_id", run_id)
            _tag_trial_run(run_id, self.study_name, self.number, "RUNNING", uri=self.tracking_uri)

    def report(self, step: int, value: float) -> None:
        self._trial.report(value, step)
        if self._trial.should_prune():
            raise optuna.TrialPruned(f"pruned at step {step}: dev accuracy {value:.4f}")


Objective = Callable[[dict[str, Any], TrialHandle], TrialOutcome]


class _BudgetReached(Exception):
    pass


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


def _jsonable(d: dict) -> dict:
    return json.loads(json.dumps(d, default=str))


def _open_study(spec: StudySpec, storage) -> tuple[optuna.Study, bool]:
    sampler, pruner = _make_sampler(spec.seed, 0, spec.trials), _make_pruner(spec.pruner)
    protocol = _jsonable(spec.protocol)
    try:
        study = optuna.create_study(storage=storage, study_name=spec.name, direction="maximize", sampler=sampler,
                                    pruner=pruner)
        study.set_user_attr("protocol", protocol)
        study.set_user_attr("fixed", _jsonable(spec.fixed))
        study.set_user_attr("space", spec.space.to_yaml())
        return study, True
    except optuna.exceptions.DuplicatedStudyError:
        study = optuna.load_study(study_name=spec.name, storage=storage, sampler=sampler, pruner=pruner)
    if study.trials and not spec.resume:
        raise WorkbenchError(f"study {spec.name!r} already holds {len(study.trials)} trial(s) in "
                             f"{redact(resolve_storage(spec.storage))}; pass --resume to continue it, or "
                             f"--study-name for a new one")
    theirs = study.user_attrs.get("protocol")
    if theirs is not None and protocol != theirs:
        diff = {k: (theirs.get(k), v) for k, v in protocol.items() if theirs.get(k) != v}
        diff.update({k: (v, None) for k, v in theirs.items() if k not in protocol})
        raise ConfigError(f"study {spec.name!r} was run with other settings {{field: (study, now)}}: {diff}; use the "
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


def _tag_trial_run(run_id: str, study_name: str, number: int, state: str, uri: str | None = None,
                   **extra: str) -> None:
    import mlflow
    from mlflow.entities import RunTag

    tags = {"optuna.study": study_name, "optuna.trial": str(number), "sweep_trial": "true", "optuna.state": state,
            **extra}
    mlflow.MlflowClient(uri).log_batch(run_id, tags=[RunTag(k, v) for k, v in tags.items()])


def end_orphaned_trial_runs(study: optuna.Study, parent_run_id: str, tracking_uri: str | None) -> list[str]:
    """End KILLED the trial runs left RUNNING in MLflow: those of failed trials (failed by the heartbeat check,
    reaped, interrupted), and the children of the parent run whose worker process on this host is gone, linked
    to a trial or not (killed before the link was made). Returns their run ids."""
    import mlflow

    ended = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL,)):
        error = t.user_attrs.get("error") or f"trial {t.number} ended {t.state.name} while its run was RUNNING"
        if end_trial_run(t.user_attrs.get("mlflow_run_id"), tracking_uri, error, t.state.name):
            ended.append(t.user_attrs["mlflow_run_id"])
    try:
        client = mlflow.MlflowClient(tracking_uri)
        parent = client.get_run(parent_run_id)
        ended += reap_orphan_runs(client, [parent.info.experiment_id], parent_run_id=parent_run_id,
                                  reason="died during the trial")
    except Exception:  # best effort: the sweep goes on
        pass
    return ended


def _short_value(value: Any) -> str:
    if isinstance(value, float) and value != 0 and not 1e-3 <= abs(value) < 1e4:
        return f"{value:.1e}"
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def describe_params(params: dict[str, Any]) -> str:
    """`lr=3.1e-04 num_soft=8`: each dotted path by its last part, unless two paths share it."""
    last = [path.rsplit(".", 1)[-1] for path in params]
    return " ".join(f"{name if last.count(name) == 1 else path}={_short_value(value)}"
                    for (path, value), name in zip(params.items(), last))


class _Progress:
    """The sweep's console lines: each trial as `trial i/N` when it starts (its values) and when it ends (its
    score, the best so far, how long it took, and about how long the rest will take: the mean of the trials this
    process finished times the trials still missing). i counts the study's finished trials, so a resumed study or
    a second worker goes on from what the storage holds, and a failed trial's replacement keeps its i."""

    def __init__(self, spec: StudySpec, log):
        self.spec, self.log = spec, log
        self.seconds: list[float] = []  # the trials this process finished (complete or pruned)
        self.label: str | None = None  # the trial running now

    def started(self, number: int, position: int, params: dict[str, Any]) -> str:
        self.label = f"trial {position}/{self.spec.trials}"
        self.log(f"{self.label} (#{number} of study {self.spec.name}): {describe_params(params)}")
        return self.label

    def ended(self, study: optuna.Study, trial: optuna.trial.FrozenTrial, seconds: float) -> None:
        label, self.label = self.label or f"trial #{trial.number}", None
        if trial.state == TrialState.FAIL:
            self.log(f"{label}: failed after {duration(seconds)} ({trial.user_attrs.get('error')}); another trial "
                     f"takes its place")
            return
        self.seconds.append(seconds)
        if trial.state == TrialState.PRUNED:
            steps = trial.intermediate_values
            what = f"pruned at step {max(steps)}, dev {steps[max(steps)]:.3f}" if steps else "pruned"
        else:
            what = f"complete, dev {trial.value:.3f}"
        try:
            best = study.best_trial
            what += f" (best so far {best.value:.3f}, #{best.number})"
        except ValueError:  # no complete trial yet
            pass
        counts = _counts(study)
        left = self.spec.trials - counts[TrialState.COMPLETE] - counts[TrialState.PRUNED]
        eta = f"; about {duration(left * sum(self.seconds) / len(self.seconds))} left" if left > 0 else ""
        self.log(f"{label}: {what}  {duration(seconds)}{eta}")


def _wrap(spec: StudySpec, objective: Objective, progress: _Progress):
    import mlflow

    def optuna_objective(trial: optuna.Trial) -> float:
        trial.set_user_attr("worker", WORKER)
        if worker_scope():
            trial.set_user_attr("worker_scope", worker_scope())
        before = [t for t in trial.study.get_trials(deepcopy=False)
                  if t.number < trial.number and t.state in (*FINISHED, TrialState.RUNNING)]
        if len(before) >= spec.trials:  # another worker asked for a trial at the same moment
            trial.set_user_attr("error", "not run: the study already had enough trials")
            raise _BudgetReached()
        params = spec.space.sample(trial)
        trial.set_user_attr("overrides", _jsonable(params))
        label = progress.started(trial.number, len(before) + 1, params)
        handle = TrialHandle(trial, spec.name, spec.tracking_uri, label)
        try:
            outcome = objective(params, handle)
        except optuna.TrialPruned:
            if handle.run_id:  # the run ended FAILED; a pruned trial was stopped on purpose
                _tag_trial_run(handle.run_id, spec.name, trial.number, "PRUNED", spec.tracking_uri, pruned="true")
                client = mlflow.MlflowClient(spec.tracking_uri)
                client.delete_tag(handle.run_id, "error")
                client.set_terminated(handle.run_id, "KILLED")
            raise
        except KeyboardInterrupt:
            trial.set_user_attr("error", "interrupted (Ctrl-C)")
            if handle.run_id:
                _tag_trial_run(handle.run_id, spec.name, trial.number, "FAIL", spec.tracking_uri)
            raise
        except Exception as e:
            msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
            trial.set_user_attr("error", redact(f"{type(e).__name__}: {msg}")[:1000])
            if handle.run_id:
                _tag_trial_run(handle.run_id, spec.name, trial.number, "FAIL", spec.tracking_uri)
            raise
        handle.started(outcome.run_id)
        _tag_trial_run(outcome.run_id, spec.name, trial.number, "COMPLETE", spec.tracking_uri)
        trial.set_user_attr("result", _jsonable(outcome.info))
        return outcome.value

    return optuna_objective


def run_study(spec: StudySpec, objective: Objective, log=print) -> StudyResult:
    """Run (or resume, or join) the study until it holds `spec.trials` finished trials or `spec.timeout` passes.
    `log` gets a line when each trial starts and ends (see `_Progress`)."""
    if spec.pruner not in PRUNERS:
        raise ConfigError(f"sweep.pruner: {spec.pruner!r} is not allowed; expected one of {', '.join(PRUNERS)}",
                          field="sweep.pruner")
    storage_url = resolve_storage(spec.storage)
    study, created = _open_study(spec, open_storage(storage_url))
    reaped = reap_dead_trials(study, spec.tracking_uri)
    if reaped:
        log(f"marked trial(s) {reaped} FAIL: their worker died")
    tags = {"kind": SWEEP_KIND, "sweep": "true", "optuna.study": spec.name, "optuna.storage": redact(storage_url),
            **spec.tags}
    run_id = _parent_id(study, created)
    with RunTracker(spec.experiment, f"sweep-{spec.name}", spec.tracking_uri, tags=tags, nested=False,
                    resume_run_id=run_id) as parent:
        if run_id is None:
            study.set_user_attr("mlflow_parent_run_id", parent.run_id)
            parent.log_params({"sweep.trials": spec.trials, "sweep.pruner": spec.pruner,
                               **{f"sweep.{k}": v for k, v in spec.protocol.items()}})
            parent.log_dict(spec.space.to_yaml(), "search_space.yaml")
        log(f"study {spec.name} in {redact(storage_url)}; MLflow parent run {parent.run_id}")
        orphans = end_orphaned_trial_runs(study, parent.run_id, spec.tracking_uri)
        if orphans:
            log(f"marked MLflow run(s) {', '.join(orphans)} KILLED: their trial had ended or their worker died")
        _optimize(study, spec, objective, parent, log)
        _log_trials_table(study, spec, parent)
        result = _summarize(study, spec.name, storage_url, parent.run_id)
        _log_parent(study, result, parent)
    return result


def _optimize(study: optuna.Study, spec: StudySpec, objective: Objective, parent: RunTracker, log) -> None:
    progress = _Progress(spec, log)
    wrapped = _wrap(spec, objective, progress)
    start, failures = time.monotonic(), 0
    counts = _counts(study)
    done = counts[TrialState.COMPLETE] + counts[TrialState.PRUNED]
    if done:
        log(f"the study already holds {done}/{spec.trials} finished trials"
            + ("" if done < spec.trials else "; none is added"))
    while True:
        reap_dead_trials(study, spec.tracking_uri)
        counts = _counts(study)
        done = counts[TrialState.COMPLETE] + counts[TrialState.PRUNED]
        if done + counts[TrialState.RUNNING] >= spec.trials:
            break
        if spec.timeout is not None and time.monotonic() - start >= spec.timeout:
            log(f"timeout: {spec.timeout:g}s passed; {done}/{spec.trials} trials finished")
            break
        study.sampler = _make_sampler(spec.seed, sum(counts.values()), spec.trials)
        began = time.monotonic()
        study.optimize(wrapped, n_trials=1, catch=(Exception,))
        trials = study.get_trials(deepcopy=False)
        trial = next((t for t in reversed(trials) if t.user_attrs.get("worker") == WORKER), trials[-1])
        if trial.state == TrialState.FAIL and trial.user_attrs.get("error", "").startswith("not run:"):
            break
        progress.ended(study, trial, time.monotonic() - began)
        if trial.state == TrialState.COMPLETE:
            parent.log_metrics({"sweep/dev_accuracy": trial.value, "sweep/best_dev_accuracy": study.best_value},
                               step=trial.number)
        _log_trials_table(study, spec, parent)  # the parent's note and table of trials, as trials finish
        failures = failures + 1 if trial.state == TrialState.FAIL else 0
        if failures >= spec.max_failures:
            raise WorkbenchError(f"{failures} trials in a row failed; last error: {trial.user_attrs.get('error')}")


def _summarize(study: optuna.Study, name: str, storage_url: str, parent_id: str) -> StudyResult:
    counts = _counts(study)
    try:
        best = study.best_trial
    except ValueError:
        best = None
    return StudyResult(name, redact(storage_url), parent_id, counts[TrialState.COMPLETE], counts[TrialState.PRUNED],
                       counts[TrialState.FAIL], best.value if best else None,
                       dict(best.user_attrs.get("overrides", {})) if best else {},
                       best.user_attrs.get("mlflow_run_id") if best else None)


def _trials_table(study: optuna.Study) -> dict[str, list]:
    """Every trial of the study, by number: its state, dev accuracy, searched values and MLflow run."""
    trials = study.get_trials(deepcopy=False)
    names = sorted({k for t in trials for k in t.params})
    return {"number": [t.number for t in trials], "state": [t.state.name for t in trials],
            "dev_accuracy": [t.value for t in trials],
            **{name: [t.params.get(name) for t in trials] for name in names},
            "mlflow_run_id": [t.user_attrs.get("mlflow_run_id") for t in trials],
            "error": [t.user_attrs.get("error") for t in trials]}


def _trials_note(study: optuna.Study, spec: StudySpec, table: dict[str, list]) -> str:
    def cell(v) -> str:
        if v is None:
            return ""
        return f"{v:.4g}" if isinstance(v, float) else str(v).replace("|", "/").replace("\n", " ")

    counts = _counts(study)
    done = counts[TrialState.COMPLETE] + counts[TrialState.PRUNED]
    head = (f"**sweep-{spec.name}**: {done} of {spec.trials} trials finished ({counts[TrialState.COMPLETE]} complete, "
            f"{counts[TrialState.PRUNED]} pruned, {counts[TrialState.FAIL]} failed, {counts[TrialState.RUNNING]} "
            f"running); one nested run per trial.")
    complete = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE]
    if complete:
        best = max(complete, key=lambda t: t.value)
        head += f" Best: trial {best.number}, dev accuracy {best.value:.4f}."
    columns = [c for c in table if c != "error"]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(table[c][i]) for c in columns) + " |" for i in range(len(table["number"]))]
    return head + "\n\n" + "\n".join(lines) + "\n"


def _log_trials_table(study: optuna.Study, spec: StudySpec, parent: RunTracker) -> None:
    """The study's trials as the parent run's description and as its table `comparison_table.json` (rewritten
    each time). Best effort: a store refusing them must not stop the sweep."""
    try:
        table = _trials_table(study)
        parent.set_note(_trials_note(study, spec, table))
        parent.log_table(table, "comparison_table.json", replace=True)
    except Exception as e:
        import sys

        print(f"warning: the sweep's table of trials was not logged: {type(e).__name__}: {e}", file=sys.stderr)


def _log_parent(study: optuna.Study, result: StudyResult, parent: RunTracker) -> None:
    """Best params (as tags: a resumed sweep may find a better one) and score, trials table, Optuna's plots."""
    parent.log_metrics({"sweep/complete_trials": result.n_complete, "sweep/pruned_trials": result.n_pruned,
                        "sweep/failed_trials": result.n_failed})
    if result.best_value is None:
        return
    parent.log_metrics({"eval/accuracy": result.best_value,  # the fixed name: the best trial's dev accuracy
                        "best/eval_accuracy": result.best_value})
    parent.set_tags({"best.trial": str(study.best_trial.number), "best.run_id": result.best_run_id or "",
                     **{f"best.{k}": str(v) for k, v in result.best_params.items()},
                     "best.overrides": json.dumps(result.best_params)[:4000]})
    rows = [{"number": t.number, "state": t.state.name, "value": t.value, **t.params,
             "error": t.user_attrs.get("error"), "mlflow_run_id": t.user_attrs.get("mlflow_run_id")}
            for t in study.get_trials(deepcopy=False)]
    parent.log_dict(rows, "optuna/trials.json")
    _log_plots(study, parent)


def _log_plots(study: optuna.Study, parent: RunTracker) -> None:
    import warnings

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as ovm

    plots = {"optuna/optimization_history.png": ovm.plot_optimization_history,
             "optuna/param_importances.png": ovm.plot_param_importances}
    for path, plot in plots.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                ax = plot(study)
            except Exception as e:  # e.g. importances need two complete trials and a parameter that varies
                parent.log_text(f"not plotted: {e}\n", path.replace(".png", ".txt"))
                continue
        fig = ax.figure if hasattr(ax, "figure") else ax.flat[0].figure
        fig.set_size_inches(7, 4.5)
        fig.tight_layout()
        parent.log_figure(fig, path)
        plt.close(fig)


@dataclass(frozen=True)
class KnownBest:
    """The best configuration a study found, and how much search found it."""

    overrides: dict  # dotted overrides that rebuild it: the study's fixed settings, then the best trial's values
    source: str  # "<study> trial <n>"
    trials: int  # finished (complete or pruned) trials in the study


def best_known(study_name: str, storage: str | None = None) -> KnownBest | None:
    """The named study's best configuration; None when there is no such study or no complete trial."""
    import os

    url = resolve_storage(storage)
    if url.startswith("sqlite:///") and not os.path.exists(url.split("///", 1)[1]):
        return None
    try:
        study = optuna.load_study(study_name=study_name, storage=open_storage(url))
        best = study.best_trial
    except (KeyError, ValueError):
        return None
    fixed = {k: v for k, v in study.user_attrs.get("fixed", {}).items() if v is not None}
    finished = sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in study.get_trials(deepcopy=False))
    return KnownBest({**fixed, **best.user_attrs.get("overrides", {})}, f"{study_name} trial {best.number}", finished)


__all__ = ["KnownBest", "Objective", "StudyResult", "StudySpec", "TrialHandle", "TrialOutcome", "best_known",
           "run_study", "study_name_problem"]
