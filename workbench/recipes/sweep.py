"""`workbench.sweep`: the workbench's main job.

1. an Optuna study for (task, method, model, shots) until it holds the requested trials, each trial a
   `workbench.train` run scored on the few-shot dev split;
2. the baseline (full fine-tuning by default) gets the same tuning effort: a study of its own with as many
   trials and the same step budget (an existing one of at least that size is reused), unless
   `baseline_trials` says otherwise, in which case the table says the tuning was unequal;
3. both best configurations trained on the protocol's seeds, on the same splits; runs already in the store
   with the same config are reused;
4. the paired difference over seeds with its 95% interval (`workbench.runs.paired`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from workbench.adaptation import Method, get_method, method_for_options
from workbench.config import SearchSpace, Section, option
from workbench.config.fields import ROWS_MAX, SEED_MAX, TRIALS_MAX, check_each_once
from workbench.config.sections import flat
from workbench.config.space import candidate_values, parse_param
from workbench.errors import ConfigError
from workbench.recipes.train import check_run, train
from workbench.runs.comparison import (PROTOCOL_SEEDS, SAME_SEED_TWICE, CompareConfig, CompareResult, compare,
                                       paired_difference)
from workbench.runs.config import RunConfig, identity, paths_with_role, resolve_path, top_level_fields
from workbench.runs.paired import PairedDifference
from workbench.sweeps import StudyResult, StudySpec, TrialHandle, TrialOutcome, run_study, study_name


@dataclass
class SweepConfig(Section):
    """A study over `run`'s method, then its best config against a baseline on the protocol seeds."""

    section: ClassVar[str] = "sweep"
    run: RunConfig = field(default_factory=RunConfig)  # the base run: task, method, model, fixed settings
    trials: int = option(20, min=1, max=TRIALS_MAX, help="finished (complete or pruned) trials the study should hold")
    space: SearchSpace | str | None = option(None, help="search space: a SearchSpace, a YAML file, or null for "
                                                        "the method's default")
    params: dict = option(default_factory=dict, help="changes to the space: name -> Float/Int/Categorical, a "
                                                     "fixed value, None (drop), or the command line's text "
                                                     "('1e-5..1e-3:log', 'lstm|mlp')")
    timeout: float | None = option(None, above=0, max=1e9, role="neutral",
                                   help="seconds after which no new trial starts")
    storage: str | None = option(None, role="neutral", help="Optuna storage URL; null: $WORKBENCH_SWEEP_STORAGE "
                                                            "or sqlite:///optuna.db")
    study_name: str | None = option(None, role="neutral", help="null: <task>-<method>-<model>-k<shots>")
    resume: bool = option(False, role="neutral", help="continue an existing study (also how more workers join)")
    pruner: str = option("median", choices=("median", "halving", "none"), help="early stopping of weak trials")
    max_failures: int = option(3, min=1, max=TRIALS_MAX, role="neutral",
                               help="stop after this many failed trials in a row")
    trial_eval_limit: int | None = option(200, min=1, max=ROWS_MAX, role="budget",
                                          help="trials report the eval split on its first N rows only (selection "
                                               "uses the few-shot dev split); final runs use run.eval.limit")
    final_seeds: list[int] = option(default_factory=lambda: list(PROTOCOL_SEEDS), role="study",
                                    min=0, max=SEED_MAX,
                                    help="seeds for the best config and the baseline; [] stops after the study")
    baseline: str | None = option("finetune", role="study", help="method to compare with; null: no comparison")
    baseline_trials: int | None = option(None, min=0, max=TRIALS_MAX,
                                         help="trials of the baseline's own study (resumed if it exists); "
                                              "null: as many as `trials` (equal effort); 0: its "
                                              "defaults, untuned (the table says so)")

    def check(self) -> None:
        check_each_once(self.final_seeds, "sweep.final_seeds", "seed", SAME_SEED_TWICE)


@dataclass
class SweepResult:
    study: StudyResult
    comparison: CompareResult | None
    difference: PairedDifference | None  # (method - baseline) over seeds


@dataclass
class Plan:
    """A checked sweep: the base run of every trial, and the study it adds trials to."""

    base: RunConfig
    method: Method
    spec: StudySpec


def search_space(cfg: SweepConfig, method: Method) -> SearchSpace:
    """The method's space (or the one given), with `params` applied and every name a dotted path."""
    if isinstance(cfg.space, SearchSpace):
        space = cfg.space
    elif isinstance(cfg.space, str):
        space = SearchSpace.from_yaml(cfg.space)
    else:
        space = SearchSpace(method.space.params, f"the default space of {method.name!r}")
    changes = {}
    for name, spec in cfg.params.items():
        changes[name] = parse_param(f"{name}={spec}")[1] if isinstance(spec, str) else spec
    options_cls = method.options
    space = space.renamed(lambda n, src: resolve_path(n, options_cls, src))
    changes = {resolve_path(n, options_cls, "sweep.params"): v for n, v in changes.items()}
    return space.updated(changes, "sweep.params")


def plan(cfg: SweepConfig) -> Plan:
    """Every check that needs no trial: the run, the space and every value it can produce."""
    from workbench.config import validate
    from workbench.data import few_shot_split, get_task
    from workbench.tracking import check_tracking_uri

    validate(cfg)
    run = cfg.run.validate()
    method = method_for_options(run.method)
    task = get_task(run.task)
    few_shot_split(task, run.shots, run.seed)  # reads the data: missing data fails before the model is resolved
    if cfg.baseline is not None:
        get_method(cfg.baseline)
    space = search_space(cfg, method)
    # Trials evaluate at most trial_eval_limit rows, and never more than the final runs will.
    trial_limit = min((n for n in (run.eval.limit, cfg.trial_eval_limit) if n is not None), default=None)
    # A trial's weights are not worth an artifact; the final runs keep theirs. A trial keeps the run's progress
    # bars: they say how far the trial is between its `trial i/N` lines.
    base = run.with_overrides({**space.fixed(), "eval.limit": trial_limit, "tracking.save": "never"}, "sweep")
    searched = space.searched()
    for path, spec in searched.items():  # every value the space can produce must pass the field's own checks
        if not method.trains and path.startswith("train."):
            raise ConfigError(f"{space.source}: method {method.name!r} does not train; {path} cannot be searched",
                              field=path)
        for value in candidate_values(spec):
            base.with_overrides({path: value}, space.source)
    protocol = {k: v for k, v in identity(base).items() if k not in searched}
    budget_and_search = set(paths_with_role("search", method.options)) | set(paths_with_role("budget", method.options))
    fixed = {k: v for k, v in flat(base.to_dict()).items()
             if k in budget_and_search and k not in searched and not k.startswith("eval.")}
    uri = check_tracking_uri(run.tracking.uri)
    check_run(base)  # once, here: a task without a template would otherwise fail in every trial, after its model
    name = cfg.study_name if cfg.study_name is not None else study_name(task.name, method.name, run.model, run.shots)
    tags = {"task": task.name, "method": method.name, "model": run.model, "shots": str(run.shots),
            "seed": str(run.seed)}
    spec = StudySpec(name=name, space=SearchSpace(searched, space.source), protocol=protocol, fixed=fixed,
                     experiment=run.tracking.experiment or task.name, tracking_uri=uri, storage=cfg.storage,
                     trials=cfg.trials, seed=run.seed, timeout=cfg.timeout, resume=cfg.resume, pruner=cfg.pruner,
                     max_failures=cfg.max_failures, tags=tags)
    return Plan(base.with_overrides({"tracking.uri": uri}), method, spec)


def objective(base: RunConfig, log=print):
    """A trial: the base run with the trial's values, trained; its dev accuracy is the objective. Without
    progress bars, each evaluation is a line (`trial 3/20: step 20/100, dev 0.750`) so a long trial shows it
    is alive."""

    def run_trial(params: dict[str, Any], trial: TrialHandle) -> TrialOutcome:
        cfg = base.with_overrides(params, f"trial {trial.number}")

        def on_eval(step: int, dev_accuracy: float) -> None:
            if not cfg.tracking.progress:
                log(f"{trial.label}: step {step}/{cfg.train.max_steps}, dev {dev_accuracy:.3f}")
            trial.report(step, dev_accuracy)

        result = train(cfg, on_start=trial.started, on_eval=on_eval)
        return TrialOutcome(result.dev_accuracy, result.run_id,
                            {"test_accuracy": result.test_accuracy, "train_seconds": result.train_seconds,
                             "trainable_fraction": result.trainable_fraction})

    return run_trial


def shared_settings(run: RunConfig) -> dict[str, Any]:
    """The fields of `run` the user changed (other than what a comparison sets itself): every side of the
    final comparison gets them."""
    default = flat(RunConfig(task=run.task, model=run.model, shots=run.shots).to_dict())
    own = flat(run.to_dict())
    return {k: v for k, v in own.items() if not k.startswith("method") and k not in top_level_fields()
            and v != default.get(k)}


def sweep(cfg: SweepConfig, log=print) -> SweepResult:
    """Run (or resume) the study, then compare its best config with the baseline on `final_seeds`."""
    from workbench.models import resolve_model

    p = plan(cfg)
    baseline = None if cfg.baseline == p.method.name else cfg.baseline  # sweeping the baseline itself
    baseline_trials = cfg.trials if cfg.baseline_trials is None else cfg.baseline_trials
    baseline_plan = None
    if baseline and baseline_trials:
        # Equal effort: the same trial count, and the same run settings (step budget, eval limit) as the method's.
        baseline_plan = plan(SweepConfig(run=cfg.run.with_overrides({"method": baseline}), trials=baseline_trials,
                                         storage=cfg.storage, resume=True, pruner=cfg.pruner, timeout=cfg.timeout,
                                         max_failures=cfg.max_failures, trial_eval_limit=cfg.trial_eval_limit,
                                         final_seeds=[], baseline=None))
    resolve_model(p.base.model)  # a missing model fails here, not in every trial
    result = run_study(p.spec, objective(p.base, log), log=log)
    log(f"best trial: dev accuracy {result.best_value}  params {result.best_params}  ({result.n_complete} complete, "
        f"{result.n_pruned} pruned, {result.n_failed} failed)")
    if not cfg.final_seeds or result.best_value is None:
        return SweepResult(result, None, None)
    if baseline_plan is not None:
        log(f"baseline: {baseline}, a study of {baseline_trials} trials at the same budget (equal effort)")
        run_study(baseline_plan.spec, objective(baseline_plan.base, log), log=log)
    methods = [p.method.name] + ([baseline] if baseline else [])
    comparison = compare(CompareConfig(
        task=cfg.run.task, methods=methods, model=cfg.run.model, shots=cfg.run.shots, seeds=list(cfg.final_seeds),
        overrides={**shared_settings(cfg.run), "tracking.uri": p.spec.tracking_uri},
        configs={p.method.name: {**p.spec.fixed, **result.best_params}},
        trials={p.method.name: result.n_complete + result.n_pruned},
        origins={p.method.name: f"sweep {result.study_name}"}, baseline=baseline or p.method.name,
        storage=cfg.storage, run_name=f"final-{result.study_name}"), train, check_run, log=log)
    log("\n" + comparison.table())
    diff = None
    if baseline:
        diff = paired_difference(comparison.rows[0], comparison.rows[1])
        log(f"\n{p.method.name} - {baseline}, accuracy on {comparison.scope.describe()}, same splits: "
            f"{diff.describe()}")
    return SweepResult(result, comparison, diff)


__all__ = ["SweepConfig", "SweepResult", "plan", "sweep"]
