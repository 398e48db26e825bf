"""A comparison: several methods on the same few-shot splits, one parent MLflow run (`workbench compare`, and the
last stage of `workbench sweep`).

Each method runs with its best known config (the best trial of its sweep in the Optuna storage, if
one exists; else its defaults) on every seed; a finished run already in the store with exactly the
same config is reused (a nested run records its metrics and `reused_from`). The table has, per method,
the mean and standard deviation of the reported accuracy over seeds, the paired difference from the
baseline with its 95% interval (`workbench.runs.paired`), where its config came from and how many tuning
trials found it, trainable fraction and training time; a warning says when the methods were not tuned
with the same number of trials. Two plots: accuracy against trainable fraction and against training time.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field
from collections.abc import Callable
from typing import ClassVar

from workbench.config import DEFAULT_MODEL, Section, option, validate as validate_fields
from workbench.config.fields import SEED_MAX, check_each_once
from workbench.data import TaskSpec
from workbench.data.metrics import EvalScope
from workbench.errors import ConfigError, WorkbenchError
from workbench.progress import duration
from workbench.runs.config import RunConfig
from workbench.runs.fit import RunResult
from workbench.runs.identity import config_hash, identity_params
from workbench.runs.paired import PairedDifference, mean_sd
from workbench.runs.paired import paired_difference as paired_scores

PROTOCOL_SEEDS = (13, 21, 42, 87, 100)  # the LM-BFF seeds
SAME_SEED_TWICE = "a seed run twice is the same run counted twice"  # n and the spread would be wrong
COPIED_METRICS = ("eval/accuracy", "eval/best_accuracy", "best_step", "test/accuracy", "test/macro_f1",
                  "trainable_params", "trainable_fraction", "train/seconds", "train/examples_per_s",
                  "test/examples_per_s", "peak_mem_mb", "test/rows")


@dataclass
class CompareConfig(Section):
    section: ClassVar[str] = "compare"
    task: str | TaskSpec = option("sst2", role="study", help="built-in task name, task YAML file or TaskSpec")
    methods: list[str] = option(default_factory=lambda: ["finetune", "prompt-finetune", "icl"], role="study",
                                help="methods to compare, each on every seed")
    model: str = option(DEFAULT_MODEL, role="study", help="offline alias, local folder or Hugging Face id")
    shots: int = option(16, role="study", min=1, max=100_000, help="training examples per class")
    seeds: list[int] = option(default_factory=lambda: list(PROTOCOL_SEEDS), role="study",
                              min=0, max=SEED_MAX, help="few-shot split and training seeds; every method runs on each")
    overrides: dict = option(default_factory=dict, role="budget",
                             help="dotted run-config fields shared by every run, e.g. {'train.max_steps': 20}")
    configs: dict = option(default_factory=dict, help="method -> dotted overrides; skips the sweep look-up")
    baseline: str | None = option(None, role="study", help="the method every other is compared with (paired "
                                                           "difference, 95% interval); null: finetune when it is "
                                                           "among the methods, else the first")
    trials: dict = option(default_factory=dict, help="method -> tuning trials behind a config given in `configs` "
                                                     "(shown in the table; equal tuning is checked)")
    origins: dict = option(default_factory=dict, help="method -> where a config given in `configs` came from "
                                                      "(shown in the table; default 'given')")
    storage: str | None = option(None, role="neutral", help="Optuna storage to take best configs from")
    use_sweeps: bool = option(True, role="neutral", help="take each method's best config from its sweep, if any")
    reuse: bool = option(True, role="neutral", help="reuse a finished run with exactly the same config")
    run_name: str | None = option(None, role="neutral", help="name of the parent MLflow run")

    def check(self) -> None:
        if not self.methods:
            raise ConfigError("compare.methods: no methods given", field="compare.methods")
        if len(set(self.methods)) != len(self.methods):
            raise ConfigError(f"compare.methods: a method is named twice in {self.methods}", field="compare.methods")
        if not self.seeds:
            raise ConfigError("compare.seeds: no seeds given", field="compare.seeds")
        check_each_once(self.seeds, "compare.seeds", "seed", SAME_SEED_TWICE)
        for key in ("configs", "trials", "origins"):
            for name in getattr(self, key):
                if name not in self.methods:
                    raise ConfigError(f"compare.{key}: {name!r} is not among the methods {self.methods}",
                                      field=f"compare.{key}")
        if self.baseline is not None and self.baseline not in self.methods:
            raise ConfigError(f"compare.baseline: {self.baseline!r} is not among the methods {self.methods}",
                              field="compare.baseline")

    @property
    def baseline_method(self) -> str:
        if self.baseline is not None:
            return self.baseline
        return "finetune" if "finetune" in self.methods else self.methods[0]


@dataclass
class MethodRow:
    method: str
    source: str  # where its config came from
    overrides: dict
    trials: int  # tuning trials behind the config; 0: defaults or a config given without a count
    seeds: list[int] = field(default_factory=list)
    test: list[float] = field(default_factory=list)
    dev: list[float] = field(default_factory=list)
    trainable_fraction: float = 0.0
    train_seconds: list[float] = field(default_factory=list)
    run_ids: list[str] = field(default_factory=list)
    difference: PairedDifference | None = None  # from the baseline; None for the baseline itself
    eval_rates: list[float] = field(default_factory=list)  # rows scored per second on the evaluation split

    @property
    def by_seed(self) -> dict[int, float]:
        return dict(zip(self.seeds, self.test))

    @property
    def mean(self) -> float:
        return statistics.mean(self.test)

    @property
    def sd(self) -> float | None:
        """None with one seed: there is no spread to show."""
        return mean_sd(self.test)[1]


@dataclass
class CompareResult:
    parent_run_id: str
    rows: list[MethodRow]
    scope: EvalScope  # the rows every reported accuracy was computed on
    baseline: str
    notes: list[str] = field(default_factory=list)  # warnings the table must carry (unequal tuning)

    @property
    def eval_split(self) -> str:
        return self.scope.split

    def accuracy_header(self) -> str:
        """`test accuracy on the first 150 of 1,821 test rows (mean ± sd, n=3)`; one seed shows no spread."""
        n = len(self.rows[0].seeds) if self.rows else 0
        spread = f"mean ± sd, n={n}" if n > 1 else "one seed, no spread"
        return f"accuracy on {self.scope.describe()} ({spread})"

    def table(self) -> str:
        lines = [f"| method | {self.accuracy_header()} | vs {self.baseline}: points [95% paired t interval] "
                 f"| dev accuracy | trainable fraction | train s (mean) | eval rows/s (mean) | config from "
                 f"| tuning trials |",
                 "|---|---|---|---|---|---|---|---|---|"]
        for r in self.rows:
            acc = f"{100 * r.mean:.1f}" + (f" ± {100 * r.sd:.1f}" if r.sd is not None else "")
            diff = "baseline" if r.difference is None else r.difference.cell()
            lines.append(f"| {r.method} | {acc} | {diff} | {100 * statistics.mean(r.dev):.1f} "
                         f"| {r.trainable_fraction:.4%} | {statistics.mean(r.train_seconds):.1f} "
                         f"| {statistics.mean(r.eval_rates):.1f} | {r.source} | {r.trials} |")
        return "\n".join(lines + [""] + [f"Note: {note}" for note in self.notes]).rstrip()


def tuning_note(rows: list[MethodRow]) -> str | None:
    """A warning when the methods were not tuned with the same number of trials, else None."""
    counts = {r.method: r.trials for r in rows}
    if len(set(counts.values())) <= 1:
        return None
    listed = ", ".join(f"{m} {n}" for m, n in counts.items())
    return (f"unequal tuning: trials per method were {listed}; a method tuned more has an advantage. Sweep each "
            f"with the same --trials (workbench sweep gives its baseline as many by default).")


def run_config(cfg: CompareConfig, method: str, seed: int, config: dict) -> RunConfig:
    """One run: the shared settings, then the method's config (its sweep's best, or one given)."""
    base = RunConfig(task=cfg.task, model=cfg.model, shots=cfg.shots, seed=seed, method=method)
    return base.with_overrides({**cfg.overrides, **config}, f"compare ({method})")


def best_config(cfg: CompareConfig, method: str) -> tuple[dict, str, int]:
    """(dotted overrides, where they came from, tuning trials behind them) for one method."""
    if method in cfg.configs:
        return dict(cfg.configs[method]), cfg.origins.get(method, "given"), int(cfg.trials.get(method, 0))
    if cfg.use_sweeps:
        from workbench.data import get_task
        from workbench.sweeps import best_known, study_name

        known = best_known(study_name(get_task(cfg.task).name, method, cfg.model, cfg.shots), cfg.storage)
        if known is not None:
            # The comparison's shared settings (e.g. its eval limit) win over the study's fixed ones,
            # the trial's searched values over both.
            return {k: v for k, v in known.overrides.items() if k not in cfg.overrides or k.startswith("method.")}, \
                f"sweep {known.source}", known.trials
    return {}, "defaults", 0


def _reused_run(rc: RunConfig, model_tags: dict) -> str | None:
    from workbench.data import few_shot_split, get_task
    from workbench.tracking import find_matching_run

    task = get_task(rc.task)
    tags = {"task": task.name, "method": rc.method_name, "model": rc.model, "seed": str(rc.seed),
            "shots": str(rc.shots), "split_fingerprint": few_shot_split(task, rc.shots, rc.seed).fingerprint,
            **model_tags}
    return find_matching_run(rc.tracking.experiment or task.name, rc.tracking.uri, tags, identity_params(rc))


def _record_reused(source_id: str, rc: RunConfig) -> RunResult:
    """A nested run under the comparison that carries a reused run's params and metrics."""
    import mlflow

    from workbench.tracking import RunTracker

    client = mlflow.MlflowClient()
    src = client.get_run(source_id)
    m = dict(src.data.metrics)
    tags = src.data.tags
    # the kept state's dev accuracy; a method that does not train logs only the one `eval/accuracy`
    dev = m.get("eval/best_accuracy", m.get("eval/accuracy", float("nan")))
    parent = mlflow.active_run()
    experiment = client.get_experiment(parent.info.experiment_id if parent else src.info.experiment_id).name
    with RunTracker(experiment, f"{src.info.run_name} (reused)", mlflow.get_tracking_uri(), nested=True,
                    tags={**{k: v for k, v in src.data.tags.items() if not k.startswith("mlflow.")},
                          "reused_from": source_id}) as reused:
        reused.log_params(src.data.params)
        reused.log_metrics({k: m[k] for k in COPIED_METRICS if k in m})
    rows = int(m.get("test/rows", 0))
    scope = EvalScope(tags.get("eval_split", "test"), rows, int(tags.get("eval_total", rows)))
    return RunResult(source_id, dev, {"accuracy": m["test/accuracy"]}, scope, int(m.get("trainable_params", 0)),
                     m.get("trainable_fraction", 0.0), m.get("train/seconds", 0.0), rc, int(m.get("best_step", 0)),
                     0, m.get("test/examples_per_s", 0.0))


def compare(cfg: CompareConfig, run: Callable[[RunConfig], RunResult], check: Callable[[RunConfig], object],
            log=print) -> CompareResult:
    """Every method on every seed's few-shot split, one parent MLflow run with a table and plots. `run` trains one
    run config and `check` checks one without loading a model: the recipes' job table's (`workbench.compare`)."""
    import mlflow

    from workbench.data import get_task
    from workbench.models import resolve_model
    from workbench.tracking import RunTracker, check_tracking_uri
    from workbench.tracking.guide import COMPARISON_KIND, save_comparison_view

    validate(cfg)
    plans = {m: best_config(cfg, m) for m in cfg.methods}
    baseline = cfg.baseline_method
    # Every run's config is built (and so checked) before the first one starts.
    configs = {m: [run_config(cfg, m, seed, plans[m][0]) for seed in cfg.seeds] for m in cfg.methods}
    first = configs[cfg.methods[0]][0]
    uri = check_tracking_uri(first.tracking.uri)
    for runs in configs.values():  # each method's input once (template, verbalizer, splits), before the first run
        check(runs[0])
    task = get_task(cfg.task)
    scope = expected_scope(first, task)  # reads the evaluation split: missing data fails before the model loads
    ref = resolve_model(cfg.model)
    model_tags = {f"model/{k}": str(v) for k, v in ref.identity.items()}
    for m, (config, source, trials) in plans.items():
        log(f"{m}: config from {source} ({trials} tuning trials) {config or ''}".rstrip())
    rows = [MethodRow(m, source, config, trials) for m, (config, source, trials) in plans.items()]
    notes = [n for n in (tuning_note(rows),) if n]
    for note in notes:
        log(f"warning: {note}")
    name = (cfg.run_name or f"compare-{task.name}-k{cfg.shots}-{_plan_hash(configs)}") + scope.name_suffix()
    tags = {"kind": COMPARISON_KIND, "compare": "true", "task": task.name, "model": cfg.model, "shots": str(cfg.shots),
            "methods": ",".join(cfg.methods), "seeds": ",".join(map(str, cfg.seeds)), "baseline": baseline,
            "equal_tuning": str(not notes).lower(), **scope.tags()}
    with RunTracker(first.tracking.experiment or task.name, name, uri, tags=tags, nested=False) as parent:
        parent.log_dict({m: {"source": s, "config": c, "trials": t} for m, (c, s, t) in plans.items()},
                        "configs.json")
        scope_notes: set[str] = set()
        # Progress: `run k/N` before each run, and after it about how long the rest takes: the mean wall time of
        # the runs trained here (a reused one takes none) times the runs left, too long if some will be reused.
        total, done, trained = sum(map(len, configs.values())), 0, []
        for row in rows:
            method = row.method
            for rc in configs[method]:
                done += 1
                log(f"run {done}/{total}: {method} seed {rc.seed}")
                reused = _reused_run(rc, model_tags) if cfg.reuse else None
                began = time.monotonic()
                r = _record_reused(reused, rc) if reused else run(rc)
                if not reused:
                    trained.append(time.monotonic() - began)
                if not reused:
                    mlflow.MlflowClient().set_tag(r.run_id, "compare.parent", parent.run_id)
                if r.scope != scope:  # a reused run scored on other rows (an older run without the tag)
                    scope_notes.add(f"{method} seed {rc.seed} was scored on {r.scope.describe()}")
                row.seeds.append(rc.seed)
                row.test.append(r.test_metrics["accuracy"])
                row.dev.append(r.dev_accuracy)
                row.train_seconds.append(r.train_seconds)
                row.trainable_fraction = r.trainable_fraction
                row.run_ids.append(r.run_id)
                row.eval_rates.append(r.eval_examples_per_s)
                log(f"{method:16s} seed {rc.seed:3d}: dev {r.dev_accuracy:.3f}  {r.eval_split} "
                    f"{r.test_metrics['accuracy']:.4f}  train {r.train_seconds:.1f}s  "
                    + (f"reused run {reused}" if reused else f"run {r.run_id}")
                    + (f"; about {duration((total - done) * statistics.mean(trained))} left"
                       if trained and done < total else ""))
            parent.log_metrics({f"{method}/test_accuracy_mean": row.mean, f"{method}/test_accuracy_sd": row.sd or 0.0,
                                f"{method}/trainable_fraction": row.trainable_fraction,
                                f"{method}/train_seconds_mean": statistics.mean(row.train_seconds),
                                f"{method}/tuning_trials": row.trials})
        base_row = next(r for r in rows if r.method == baseline)
        for row in rows:
            if row is not base_row:
                row.difference = paired_scores(row.by_seed, base_row.by_seed)
                d = row.difference
                parent.log_metrics({f"{row.method}/diff_vs_{baseline}_mean": d.mean, f"{row.method}/diff_n": d.n,
                                    **({f"{row.method}/diff_ci_low": d.low, f"{row.method}/diff_ci_high": d.high}
                                       if d.low is not None else {})})
        result = CompareResult(parent.run_id, rows, scope, baseline, notes + sorted(scope_notes))
        parent.log_text(result.table() + "\n", "comparison.md")
        parent.log_dict([{"method": r.method, "source": r.source, "tuning_trials": r.trials, "seeds": r.seeds,
                          "test_accuracy": r.test, "dev_accuracy": r.dev, "mean": r.mean, "sd": r.sd,
                          "difference_vs_baseline": r.difference.as_dict() if r.difference else None,
                          "trainable_fraction": r.trainable_fraction, "train_seconds": r.train_seconds,
                          "eval_examples_per_s": r.eval_rates, "eval_scope": scope.describe(),
                          "run_ids": r.run_ids} for r in rows], "comparison.json")
        # the table where the UI shows it first: the run's description, and a table artifact
        parent.set_note(f"**{name}**: {', '.join(cfg.methods)} on {task.name}, {cfg.shots} per class, seeds "
                        f"{', '.join(map(str, cfg.seeds))}; one nested run per method and seed (`workbench dashboard` "
                        f"prints links to their charts and compare view).\n\n{result.table()}\n")
        parent.log_table({
            "method": [r.method for r in rows], "accuracy_mean": [r.mean for r in rows],
            "accuracy_sd": [r.sd for r in rows],
            f"diff_vs_{baseline}": [r.difference.mean if r.difference else None for r in rows],
            "diff_ci_low": [r.difference.low if r.difference else None for r in rows],
            "diff_ci_high": [r.difference.high if r.difference else None for r in rows],
            "dev_accuracy_mean": [statistics.mean(r.dev) for r in rows],
            "trainable_fraction": [r.trainable_fraction for r in rows],
            "train_seconds_mean": [statistics.mean(r.train_seconds) for r in rows],
            "eval_examples_per_s_mean": [statistics.mean(r.eval_rates) for r in rows],
            "config_from": [r.source for r in rows], "tuning_trials": [r.trials for r in rows],
            "seeds": [",".join(map(str, r.seeds)) for r in rows], "run_ids": [",".join(r.run_ids) for r in rows],
        }, "comparison_table.json")
        save_comparison_view(parent.client, parent.client.get_run(parent.run_id).info.experiment_id, parent.run_id)
        _log_plots(result, parent)
    return result


def expected_scope(rc: RunConfig, task: TaskSpec) -> EvalScope:
    """The rows every run of the comparison will be scored on: they share the evaluation settings."""
    split = rc.eval.split or task.eval_split
    total = len(task.load_split(split))
    return EvalScope(split, min(total, rc.eval.limit or total), total)


def _plan_hash(configs: dict[str, list[RunConfig]]) -> str:
    """Six hex digits naming the comparison's runs: a comparison of other methods, seeds or settings gets
    another parent name."""
    import hashlib

    joined = ",".join(config_hash(rc) for runs in configs.values() for rc in runs)
    return hashlib.sha256(joined.encode()).hexdigest()[:6]


def validate(cfg: CompareConfig) -> None:
    """Unknown task or method: one line, before any run starts (field values were checked when built)."""
    from workbench.adaptation import get_method
    from workbench.data import get_task

    validate_fields(cfg)
    get_task(cfg.task)
    for name in cfg.methods:
        get_method(name)


def paired_difference(a: MethodRow, b: MethodRow) -> PairedDifference:
    """(a - b) over the seeds both ran: the same splits, so the pairs line up."""
    try:
        return paired_scores(a.by_seed, b.by_seed)
    except ValueError:
        raise WorkbenchError(f"{a.method} and {b.method} share no seed") from None


def _log_plots(result: CompareResult, parent) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    for key, label, path, log_x in (
        ("trainable_fraction", "trainable fraction of parameters", "accuracy_vs_trainable_fraction.png", True),
        ("train_seconds", "training time per run (s)", "accuracy_vs_train_time.png", False),
    ):
        fig, ax = plt.subplots(figsize=(6.5, 4.5))
        for r in result.rows:
            x = r.trainable_fraction if key == "trainable_fraction" else statistics.mean(r.train_seconds)
            ax.errorbar([x], [100 * r.mean], yerr=[100 * (r.sd or 0.0)], fmt="o", capsize=4, label=r.method)
            ax.annotate(r.method, (x, 100 * r.mean), textcoords="offset points", xytext=(6, 4), fontsize=8)
        if log_x:
            ax.set_xscale("symlog", linthresh=1e-6)
        ax.set_xlabel(label)
        ax.set_ylabel(f"accuracy (%) on {result.scope.describe()}, mean ± sd")
        ax.grid(alpha=0.3)
        fig.tight_layout()
        parent.log_figure(fig, path)
        plt.close(fig)


__all__ = ["PROTOCOL_SEEDS", "CompareConfig", "CompareResult", "MethodRow", "compare", "paired_difference",
           "tuning_note"]
