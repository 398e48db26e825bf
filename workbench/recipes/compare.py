"""`workbench compare`: several methods on the same few-shot splits, one parent MLflow run.

Each method runs with its best known config (the best trial of its sweep in the Optuna storage, if
one exists; else its defaults) on every seed; a finished run already in the store with exactly the
same config is reused (a nested run records its metrics and `reused_from`). The table has mean and
standard deviation of the reported accuracy over seeds, trainable fraction and training time, and
two plots: accuracy against trainable fraction and against training time.
"""

from __future__ import annotations

import dataclasses
import statistics
from dataclasses import dataclass, field

from workbench.errors import ConfigError, WorkbenchError
from workbench.recipes.train import DEFAULT_MODEL, RunConfig, RunResult, run

PROTOCOL_SEEDS = (13, 21, 42, 87, 100)  # the LM-BFF seeds
NEUTRAL_FIELDS = {"progress", "tracking_uri", "experiment", "save"}
COPIED_METRICS = ("eval/accuracy", "test/accuracy", "test/macro_f1", "trainable_params", "trainable_fraction",
                  "train/seconds", "train/examples_per_s", "peak_mem_mb")


@dataclass
class CompareConfig:
    task: str = "sst2"
    methods: list[str] = field(default_factory=lambda: ["finetune", "prompt-finetune", "icl"])
    model: str = DEFAULT_MODEL
    shots: int = 16
    seeds: list[int] = field(default_factory=lambda: list(PROTOCOL_SEEDS))
    run_overrides: dict = field(default_factory=dict)  # RunConfig fields shared by every run (max_steps, ...)
    configs: dict[str, dict] = field(default_factory=dict)  # method -> overrides; skips the sweep look-up
    storage: str | None = None  # Optuna storage to look for sweeps in
    use_sweeps: bool = True
    reuse: bool = True
    tracking_uri: str | None = None
    run_name: str | None = None
    progress: bool = False


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


def validate(cfg: CompareConfig) -> None:
    """Unknown task, method, option or run field: one line, before any run starts."""
    from workbench.adaptation import get_method
    from workbench.data import get_task

    get_task(cfg.task)
    if not cfg.methods:
        raise ConfigError("compare: no methods given")
    if len(set(cfg.methods)) != len(cfg.methods):
        raise ConfigError(f"compare: a method is named twice in {cfg.methods}")
    if not cfg.seeds:
        raise ConfigError("compare: no seeds given")
    for name in cfg.methods:
        get_method(name)
    for name in cfg.configs:
        if name not in cfg.methods:
            raise ConfigError(f"compare: a config is given for {name!r}, which is not among the methods")
    for name in cfg.methods:
        run_config(cfg, name, cfg.seeds[0], cfg.configs.get(name, {}))


def run_config(cfg: CompareConfig, method: str, seed: int, overrides: dict, fixed: dict | None = None) -> RunConfig:
    """The run: the sweep's fixed settings, then this comparison's shared settings, then the method's config."""
    from workbench.adaptation import get_method

    raw = {**(fixed or {}), **cfg.run_overrides, **{k: v for k, v in overrides.items() if k != "method_options"},
           "task": cfg.task, "method": method, "model": cfg.model, "shots": cfg.shots, "seed": seed,
           "tracking_uri": cfg.tracking_uri, "progress": cfg.progress,
           "method_options": {**(cfg.run_overrides.get("method_options") or {}), **overrides.get("method_options", {})}}
    rc = RunConfig.from_dict(raw, f"compare ({method})")
    get_method(method).parse_options(rc.method_options)
    return rc


def best_config(cfg: CompareConfig, method: str) -> tuple[dict, dict, str]:
    """(fixed settings, config, where it came from) for one method."""
    if method in cfg.configs:
        return {}, dict(cfg.configs[method]), "given"
    if cfg.use_sweeps:
        from workbench.sweeps import best_known

        fixed, overrides, source = best_known(cfg.task, method, cfg.model, cfg.shots, cfg.storage)
        if source:
            return fixed, overrides, f"sweep {source}"
    return {}, {}, "defaults"


def match_params(rc: RunConfig) -> dict[str, str]:
    """The params `run()` logs that decide its result, as MLflow stores them (strings)."""
    from workbench.adaptation import get_method
    from workbench.data import get_task
    from workbench.tracking import flatten_params

    method = get_method(rc.method)
    resolved = {k: v for k, v in dataclasses.asdict(rc).items() if k not in NEUTRAL_FIELDS}
    resolved["lr"] = rc.lr if rc.lr is not None else method.default_lr
    resolved["method_options"] = dataclasses.asdict(method.parse_options(rc.method_options))
    resolved["eval_split"] = rc.eval_split or get_task(rc.task).eval_split
    return flatten_params(resolved)


def _reused_run(rc: RunConfig, model_tags: dict) -> str | None:
    from workbench.tracking import find_matching_run
    from workbench.data import few_shot_split, get_task

    task = get_task(rc.task)
    tags = {"task": task.name, "method": rc.method, "model": rc.model, "seed": str(rc.seed), "shots": str(rc.shots),
            "split_fingerprint": few_shot_split(task, rc.shots, rc.seed).fingerprint, **model_tags}
    return find_matching_run(rc.experiment or task.name, rc.tracking_uri, tags, match_params(rc))


def _record_reused(source_id: str, method: str, seed: int) -> RunResult:
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
    rc = RunConfig(method=method, seed=seed)
    return RunResult(source_id, m.get("eval/accuracy", float("nan")), {"accuracy": m["test/accuracy"]},
                     src.data.tags.get("eval_split", "test"), int(m.get("trainable_params", 0)),
                     m.get("trainable_fraction", 0.0), m.get("train/seconds", 0.0), rc)


def compare(cfg: CompareConfig, log=print) -> CompareResult:
    import mlflow

    from workbench.models import resolve_model
    from workbench.tracking import RunTracker, check_tracking_uri
    from workbench.data import get_task

    validate(cfg)
    cfg = dataclasses.replace(cfg, tracking_uri=check_tracking_uri(cfg.tracking_uri))
    ref = resolve_model(cfg.model)
    model_tags = {f"model/{k}": str(v) for k, v in ref.identity.items()}
    task = get_task(cfg.task)
    plans = {m: best_config(cfg, m) for m in cfg.methods}
    for m, (fixed, overrides, source) in plans.items():
        log(f"{m}: config from {source} {({**fixed, **overrides}) or ''}".rstrip())
    name = cfg.run_name or f"compare-{task.name}-k{cfg.shots}"
    tags = {"compare": "true", "task": task.name, "model": cfg.model, "shots": str(cfg.shots),
            "methods": ",".join(cfg.methods), "seeds": ",".join(map(str, cfg.seeds))}
    rows = []
    with RunTracker(cfg.run_overrides.get("experiment") or task.name, name, cfg.tracking_uri, tags=tags) as parent:
        mlflow.log_dict({m: {"source": s, "fixed": f, "overrides": o} for m, (f, o, s) in plans.items()},
                        "configs.json")
        eval_split = task.eval_split
        for method, (fixed, overrides, source) in plans.items():
            row = MethodRow(method, source, overrides, [], [], [], 0.0, [], [])
            for seed in cfg.seeds:
                rc = run_config(cfg, method, seed, overrides, fixed)
                reused = _reused_run(rc, model_tags) if cfg.reuse else None
                r = _record_reused(reused, method, seed) if reused else run(rc)
                if not reused:
                    mlflow.MlflowClient().set_tag(r.run_id, "compare.parent", parent.run_id)
                eval_split = r.eval_split
                row.seeds.append(seed)
                row.test.append(r.test_metrics["accuracy"])
                row.dev.append(r.dev_accuracy)
                row.train_seconds.append(r.train_seconds)
                row.trainable_fraction = r.trainable_fraction
                row.run_ids.append(r.run_id)
                log(f"{method:16s} seed {seed:3d}: dev {r.dev_accuracy:.3f}  {r.eval_split} "
                    f"{r.test_metrics['accuracy']:.4f}  train {r.train_seconds:.1f}s  "
                    + (f"reused run {reused}" if reused else f"run {r.run_id}"))
            rows.append(row)
            mlflow.log_metrics({f"{method}/test_accuracy_mean": row.mean, f"{method}/test_accuracy_sd": row.sd,
                                f"{method}/trainable_fraction": row.trainable_fraction,
                                f"{method}/train_seconds_mean": statistics.mean(row.train_seconds)})
        result = CompareResult(parent.run_id, rows, eval_split)
        mlflow.log_text(result.table() + "\n", "comparison.md")
        mlflow.log_dict([{"method": r.method, "source": r.source, "seeds": r.seeds, "test_accuracy": r.test,
                          "dev_accuracy": r.dev, "mean": r.mean, "sd": r.sd,
                          "trainable_fraction": r.trainable_fraction, "train_seconds": r.train_seconds,
                          "run_ids": r.run_ids} for r in rows], "comparison.json")
        _log_plots(result)
    return result


def paired_difference(a: MethodRow, b: MethodRow) -> tuple[float, float, int]:
    """Mean and sd over the shared seeds of (a - b): both ran on the same splits, so the pairs line up."""
    by_seed = dict(zip(b.seeds, b.test))
    diffs = [x - by_seed[s] for s, x in zip(a.seeds, a.test) if s in by_seed]
    if not diffs:
        raise WorkbenchError(f"{a.method} and {b.method} share no seed")
    return statistics.mean(diffs), statistics.stdev(diffs) if len(diffs) > 1 else 0.0, len(diffs)


def _log_plots(result: CompareResult) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import mlflow

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
        mlflow.log_figure(fig, path)
        plt.close(fig)


__all__ = ["PROTOCOL_SEEDS", "CompareConfig", "CompareResult", "MethodRow", "compare", "paired_difference"]
