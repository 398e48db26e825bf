"""`workbench compare`: several methods on the same few-shot splits, one parent MLflow run.

Each method runs with its best known config (the best trial of its sweep in the Optuna storage, if
one exists; else its defaults) on every seed; a finished run already in the store with exactly the
same config is reused (a nested run records its metrics and `reused_from`). The table has mean and
standard deviation of the reported accuracy over seeds, trainable fraction and training time, and
two plots: accuracy against trainable fraction and against training time.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import ClassVar

from workbench.config import Section, option, validate as validate_fields
from workbench.config.run import DEFAULT_MODEL, RunConfig
from workbench.data import TaskSpec
from workbench.errors import ConfigError, WorkbenchError
from workbench.recipes.train import RunResult, identity_params, train

PROTOCOL_SEEDS = (13, 21, 42, 87, 100)  # the LM-BFF seeds
COPIED_METRICS = ("eval/accuracy", "test/accuracy", "test/macro_f1", "trainable_params", "trainable_fraction",
                  "train/seconds", "train/examples_per_s", "peak_mem_mb", "test/rows")


@dataclass
class CompareConfig(Section):
    section: ClassVar[str] = "compare"
    task: str | TaskSpec = option("sst2", role="study", help="built-in task name, task YAML file or TaskSpec")
    methods: list[str] = option(default_factory=lambda: ["finetune", "prompt-finetune", "icl"], role="study",
                                help="methods to compare, each on every seed")
    model: str = option(DEFAULT_MODEL, role="study", help="offline alias, local folder or Hugging Face id")
    shots: int = option(16, role="study", min=1, help="training examples per class")
    seeds: list[int] = option(default_factory=lambda: list(PROTOCOL_SEEDS), role="study",
                              help="few-shot split and training seeds; every method runs on each")
    overrides: dict = option(default_factory=dict, role="budget",
                             help="dotted run-config fields shared by every run, e.g. {'train.max_steps': 20}")
    configs: dict = option(default_factory=dict, help="method -> dotted overrides; skips the sweep look-up")
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
        for name in self.configs:
            if name not in self.methods:
                raise ConfigError(f"compare.configs: a config is given for {name!r}, which is not among the methods",
                                  field="compare.configs")


@dataclass
class MethodRow:
    method: str
    source: str  # where its config came from
    overrides: dict
    seeds: list[int]
    test: list[float]
    dev: list[float]
    trainable_fraction: float
    train_seconds: list[float]
    run_ids: list[str]

    @property
    def mean(self) -> float:
        return statistics.mean(self.test)

    @property
    def sd(self) -> float:
        return statistics.stdev(self.test) if len(self.test) > 1 else 0.0


@dataclass
class CompareResult:
    parent_run_id: str
    rows: list[MethodRow]
    eval_split: str

    def table(self) -> str:
        lines = [f"| method | {self.eval_split} accuracy (mean ± sd, n={len(self.rows[0].seeds) if self.rows else 0}) "
                 f"| dev accuracy | trainable fraction | train s (mean) | config from |", "|---|---|---|---|---|---|"]
        for r in self.rows:
            lines.append(f"| {r.method} | {100 * r.mean:.1f} ± {100 * r.sd:.1f} | {100 * statistics.mean(r.dev):.1f} "
                         f"| {r.trainable_fraction:.4%} | {statistics.mean(r.train_seconds):.1f} | {r.source} |")
        return "\n".join(lines)


def run_config(cfg: CompareConfig, method: str, seed: int, config: dict) -> RunConfig:
    """One run: the shared settings, then the method's config (its sweep's best, or one given)."""
    base = RunConfig(task=cfg.task, model=cfg.model, shots=cfg.shots, seed=seed, method=method)
    return base.with_overrides({**cfg.overrides, **config}, f"compare ({method})")


def best_config(cfg: CompareConfig, method: str) -> tuple[dict, str]:
    """(dotted overrides, where they came from) for one method."""
    if method in cfg.configs:
        return dict(cfg.configs[method]), "given"
    if cfg.use_sweeps:
        from workbench.data import get_task
        from workbench.sweeps import best_known, study_name

        config, source = best_known(study_name(get_task(cfg.task).name, method, cfg.model, cfg.shots), cfg.storage)
        if source:
            # The comparison's shared settings (e.g. its eval limit) win over the study's fixed ones,
            # the trial's searched values over both.
            return {k: v for k, v in config.items() if k not in cfg.overrides or k.startswith("method.")}, \
                f"sweep {source}"
    return {}, "defaults"


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
    # the final dev accuracy is the last one logged (MLflow's "latest" is the one at the highest step)
    history = client.get_metric_history(source_id, "eval/accuracy")
    if history:
        m["eval/accuracy"] = max(history, key=lambda x: (x.timestamp, x.step)).value
    parent = mlflow.active_run()
    experiment = client.get_experiment(parent.info.experiment_id if parent else src.info.experiment_id).name
    with RunTracker(experiment, f"{src.info.run_name} (reused)", mlflow.get_tracking_uri(), nested=True,
                    tags={**{k: v for k, v in src.data.tags.items() if not k.startswith("mlflow.")},
                          "reused_from": source_id}) as reused:
        reused.log_params(src.data.params)
        reused.log_metrics({k: m[k] for k in COPIED_METRICS if k in m})
    return RunResult(source_id, m.get("eval/accuracy", float("nan")), {"accuracy": m["test/accuracy"]},
                     src.data.tags.get("eval_split", "test"), int(m.get("test/rows", 0)),
                     int(m.get("trainable_params", 0)), m.get("trainable_fraction", 0.0), m.get("train/seconds", 0.0),
                     rc)


def compare(cfg: CompareConfig, log=print) -> CompareResult:
    """Every method on every seed's few-shot split, one parent MLflow run with a table and plots."""
    import mlflow

    from workbench.data import get_task
    from workbench.models import resolve_model
    from workbench.tracking import RunTracker, check_tracking_uri

    validate(cfg)
    plans = {m: best_config(cfg, m) for m in cfg.methods}
    # Every run's config is built (and so checked) before the first one starts.
    configs = {m: [run_config(cfg, m, seed, plans[m][0]) for seed in cfg.seeds] for m in cfg.methods}
    first = configs[cfg.methods[0]][0]
    uri = check_tracking_uri(first.tracking.uri)
    ref = resolve_model(cfg.model)
    model_tags = {f"model/{k}": str(v) for k, v in ref.identity.items()}
    task = get_task(cfg.task)
    for m, (config, source) in plans.items():
        log(f"{m}: config from {source} {config or ''}".rstrip())
    name = cfg.run_name or f"compare-{task.name}-k{cfg.shots}"
    tags = {"compare": "true", "task": task.name, "model": cfg.model, "shots": str(cfg.shots),
            "methods": ",".join(cfg.methods), "seeds": ",".join(map(str, cfg.seeds))}
    rows = []
    with RunTracker(first.tracking.experiment or task.name, name, uri, tags=tags, nested=False) as parent:
        parent.log_dict({m: {"source": s, "config": c} for m, (c, s) in plans.items()}, "configs.json")
        eval_split = task.eval_split
        for method, (config, source) in plans.items():
            row = MethodRow(method, source, config, [], [], [], 0.0, [], [])
            for rc in configs[method]:
                reused = _reused_run(rc, model_tags) if cfg.reuse else None
                r = _record_reused(reused, rc) if reused else train(rc)
                if not reused:
                    mlflow.MlflowClient().set_tag(r.run_id, "compare.parent", parent.run_id)
                eval_split = r.eval_split
                row.seeds.append(rc.seed)
                row.test.append(r.test_metrics["accuracy"])
                row.dev.append(r.dev_accuracy)
                row.train_seconds.append(r.train_seconds)
                row.trainable_fraction = r.trainable_fraction
                row.run_ids.append(r.run_id)
                log(f"{method:16s} seed {rc.seed:3d}: dev {r.dev_accuracy:.3f}  {r.eval_split} "
                    f"{r.test_metrics['accuracy']:.4f}  train {r.train_seconds:.1f}s  "
                    + (f"reused run {reused}" if reused else f"run {r.run_id}"))
            rows.append(row)
            parent.log_metrics({f"{method}/test_accuracy_mean": row.mean, f"{method}/test_accuracy_sd": row.sd,
                                f"{method}/trainable_fraction": row.trainable_fraction,
                                f"{method}/train_seconds_mean": statistics.mean(row.train_seconds)})
        result = CompareResult(parent.run_id, rows, eval_split)
        parent.log_text(result.table() + "\n", "comparison.md")
        parent.log_dict([{"method": r.method, "source": r.source, "seeds": r.seeds, "test_accuracy": r.test,
                          "dev_accuracy": r.dev, "mean": r.mean, "sd": r.sd,
                          "trainable_fraction": r.trainable_fraction, "train_seconds": r.train_seconds,
                          "run_ids": r.run_ids} for r in rows], "comparison.json")
        _log_plots(result, parent)
    return result


def validate(cfg: CompareConfig) -> None:
    """Unknown task or method: one line, before any run starts (field values were checked when built)."""
    from workbench.adaptation import get_method
    from workbench.data import get_task

    validate_fields(cfg)
    get_task(cfg.task)
    for name in cfg.methods:
        get_method(name)


def paired_difference(a: MethodRow, b: MethodRow) -> tuple[float, float, int]:
    """Mean and sd over the shared seeds of (a - b): both ran on the same splits, so the pairs line up."""
    by_seed = dict(zip(b.seeds, b.test))
    diffs = [x - by_seed[s] for s, x in zip(a.seeds, a.test) if s in by_seed]
    if not diffs:
        raise WorkbenchError(f"{a.method} and {b.method} share no seed")
    return statistics.mean(diffs), statistics.stdev(diffs) if len(diffs) > 1 else 0.0, len(diffs)


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
            ax.errorbar([x], [100 * r.mean], yerr=[100 * r.sd], fmt="o", capsize=4, label=r.method)
            ax.annotate(r.method, (x, 100 * r.mean), textcoords="offset points", xytext=(6, 4), fontsize=8)
        if log_x:
            ax.set_xscale("symlog", linthresh=1e-6)
        ax.set_xlabel(label)
        ax.set_ylabel(f"{result.eval_split} accuracy (%) mean ± sd")
        ax.grid(alpha=0.3)
        fig.tight_layout()
        parent.log_figure(fig, path)
        plt.close(fig)


__all__ = ["PROTOCOL_SEEDS", "CompareConfig", "CompareResult", "MethodRow", "compare", "paired_difference"]
