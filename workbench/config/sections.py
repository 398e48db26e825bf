"""The config sections every job shares, mapped one-to-one onto YAML: `train` (what the trainer takes), `eval` and
`tracking`; and the helpers that build any section from plain data. A job's config is a tree of its own section
plus these (`workbench.runs.RunConfig` for one run; the job configs of `workbench.recipes`).
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any, ClassVar

from workbench.config.fields import BATCH_MAX, LR_MAX, ROWS_MAX, STEPS_MAX, Section, declared_fields, option
from workbench.errors import ConfigError

DEFAULT_MODEL = "smollm2-135m"


@dataclass
class TrainConfig(Section):
    section: ClassVar[str] = "train"
    max_steps: int = option(30, role="budget", min=1, max=STEPS_MAX, help="optimizer steps")
    lr: float | None = option(None, above=0, max=LR_MAX, help="learning rate; null: the method's default")
    batch_size: int | None = option(None, min=1, max=BATCH_MAX,
                                    help="examples per optimizer step (before accumulation); null: the "
                                         "method's default (`workbench methods NAME`)")
    grad_accum: int = option(1, min=1, max=1024, help="batches accumulated per optimizer step")
    warmup_ratio: float = option(0.1, min=0, max=1, help="fraction of steps with a linear warm-up")
    weight_decay: float = option(0.0, min=0, max=10, help="AdamW weight decay (not on biases and norms)")
    eval_every: int = option(10, role="budget", min=1, max=STEPS_MAX,
                             help="evaluate on the few-shot dev split every N steps")
    patience: int | None = option(None, role="budget", min=1, max=STEPS_MAX,
                                  help="evaluations without improvement before stopping; null: never stop early")
    compile: str = option("auto", role="neutral", choices=("auto", "off", "max"),
                          help="torch.compile the training and evaluation steps over length buckets (CUDA graphs on "
                               "CUDA); auto: on CUDA for runs long enough to repay compiling, max: always, off: never")


@dataclass
class EvalConfig(Section):
    section: ClassVar[str] = "eval"
    split: str | None = option(None, role="study", help="split of the reported number; null: the task's own "
                                                        "(test for sst2, dev for rte)")
    limit: int | None = option(None, role="budget", min=1, max=ROWS_MAX,
                               help="evaluate on the first N rows of that split only (smoke runs; logged)")
    batch_size: int = option(32, role="neutral", min=1, max=BATCH_MAX, help="examples per evaluation batch")


@dataclass
class TrackingConfig(Section):
    section: ClassVar[str] = "tracking"
    uri: str | None = option(None, role="neutral",
                             help="MLflow tracking URI; null: $MLFLOW_TRACKING_URI or sqlite:///mlflow.db")
    experiment: str | None = option(None, role="neutral", help="MLflow experiment; null: the task's name")
    save: str = option("auto", role="neutral", choices=("auto", "always", "never"),
                       help="save trained weights as a run artifact (auto: parameter-efficient methods only)")
    progress: bool = option(True, role="neutral", help="progress bars")


# ---- building from plain data ---------------------------------------------------------------------------

def build_section(cls: type, raw: Any, path: str) -> Any:
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of fields, got {raw!r}", field=path)
    known = [f.name for f in declared_fields(cls)]
    unknown = [k for k in raw if k not in known]
    if unknown:
        hint = did_you_mean(unknown[0], known)
        raise ConfigError(f"{path}: unknown field(s) {sorted(map(str, unknown))}{hint}; "
                          f"known: {', '.join(known) or 'none'}", field=f"{path}.{unknown[0]}")
    return cls(**raw)


def did_you_mean(name: str, known: list[str]) -> str:
    close = difflib.get_close_matches(str(name), known, n=1)
    return f" (did you mean {close[0]}?)" if close else ""


def flat(tree: dict, prefix: str = "") -> dict[str, Any]:
    out = {}
    for k, v in tree.items():
        if isinstance(v, dict):
            out.update(flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out
