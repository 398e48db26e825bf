"""`workbench sweep`: the workbench's main job.

1. an Optuna study for (task, method, model, shots) until it holds the requested trials;
2. the best configuration trained on the protocol's seeds, beside full fine-tuning (its own sweep's
   best if one exists, or a small sweep of its own with `baseline_trials`, else its defaults) on the
   same splits; runs already in the store with the same config are reused;
3. the paired difference over seeds with its spread.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from workbench.recipes.compare import PROTOCOL_SEEDS, CompareConfig, CompareResult, compare, paired_difference
from workbench.sweeps import SweepConfig, SweepResult, run_sweep, validate


@dataclass
class SweepJob:
    sweep: SweepConfig
    final_seeds: list[int] = field(default_factory=lambda: list(PROTOCOL_SEEDS))  # [] skips the final comparison
    baseline: str | None = "finetune"
    baseline_trials: int = 0  # > 0: a small sweep of the baseline first (resumed if it exists)
    final_overrides: dict = field(default_factory=dict)  # RunConfig fields for the final runs (e.g. eval_limit)


@dataclass
class JobResult:
    sweep: SweepResult
    comparison: CompareResult | None
    difference: tuple[float, float, int] | None  # mean, sd, n of (method - baseline) over seeds


def run_job(job: SweepJob, log=print) -> JobResult:
    s = job.sweep
    validate(s)
    if job.baseline_trials and job.baseline:
        validate(dataclasses.replace(s, method=job.baseline, space_file=None, params=[]))
    if job.baseline == s.method:  # sweeping the baseline itself: its best config on the seeds, nothing to compare
        job = dataclasses.replace(job, baseline=None)
    result = run_sweep(s, log=log)
    log(f"best trial: dev accuracy {result.best_value}  params {result.best_params}  ({result.n_complete} complete, "
        f"{result.n_pruned} pruned, {result.n_failed} failed)")
    if not job.final_seeds or result.best_value is None:
        return JobResult(result, None, None)
    if job.baseline and job.baseline_trials:
        log(f"baseline sweep: {job.baseline}, {job.baseline_trials} trials")
        run_sweep(dataclasses.replace(s, method=job.baseline, trials=job.baseline_trials, space_file=None, params=[],
                                      study_name=None, resume=True), log=log)
    shared = {k: v for k, v in s.run_overrides.items() if k not in ("eval_limit", "save")}
    methods = [s.method] + ([job.baseline] if job.baseline else [])
    cmp = CompareConfig(task=s.task, methods=methods, model=s.model, shots=s.shots, seeds=job.final_seeds,
                        run_overrides={**shared, **job.final_overrides}, configs={s.method: result.best_overrides},
                        storage=s.storage, tracking_uri=s.tracking_uri, progress=s.progress,
                        run_name=f"final-{result.study_name}")
    comparison = compare(cmp, log=log)
    log("\n" + comparison.table())
    diff = None
    if job.baseline:
        diff = paired_difference(comparison.rows[0], comparison.rows[1])
        mean, sd, n = diff
        log(f"\n{s.method} - {job.baseline}: {100 * mean:+.1f} ± {100 * sd:.1f} points {comparison.eval_split} "
            f"accuracy (mean ± sd of the paired difference over {n} seeds, the same splits)")
    return JobResult(result, comparison, diff)


__all__ = ["JobResult", "SweepJob", "run_job"]
