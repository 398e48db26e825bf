"""What identifies a run: the params that decide its result (and so its hash), its name and its tags, and the
config as it ran (`resolved_config`)."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from workbench.data import FewShotSplit, TaskSpec, get_task
from workbench.data.metrics import EvalScope
from workbench.runs.config import RunConfig, paths_with_role
from workbench.runs.fit import effective_batch_size, effective_lr
from workbench.runs.prepared import PreparedRun
from workbench.tracking import flatten_params
from workbench.tracking.guide import RUN_KIND


def resolved_tree(cfg: RunConfig) -> dict[str, Any]:
    """The config tree with the defaults that depend on other choices filled in: learning rate, split."""
    tree = cfg.to_dict()
    tree["train"]["lr"] = effective_lr(cfg)
    tree["train"]["batch_size"] = effective_batch_size(cfg)
    tree["eval"]["split"] = cfg.eval.split or get_task(cfg.task).eval_split
    return tree


def identity_params(cfg: RunConfig) -> dict[str, str]:
    """The params a run logs that decide its result, as MLflow stores them: how a finished run is found again."""
    # The save policy changes no number, but a run saved with `never` (a sweep trial) cannot stand in for one
    # whose weights the user asked to keep.
    neutral = set(paths_with_role("neutral", type(cfg.method))) - {"tracking.save"}
    return {k: v for k, v in flatten_params(resolved_tree(cfg)).items() if k not in neutral}


def config_hash(cfg: RunConfig) -> str:
    """12 hex digits of the params that decide a run's result: two runs share it exactly when their configs
    do, whatever the options that differ (a prompt encoder, calibration, a learning rate)."""
    return hashlib.sha256(json.dumps(identity_params(cfg), sort_keys=True).encode()).hexdigest()[:12]


def resolved_config(cfg: RunConfig, p: PreparedRun) -> dict[str, Any]:
    """The config as it ran: `resolved_tree`, plus the prompt's text and label words and where it ran."""
    tree = resolved_tree(cfg)
    tree["runtime"] = {"template_text": p.template.text if p.template else None,
                       "label_words": [list(w) for w in p.verbalizer.words] if p.verbalizer else None,
                       "model_kind": p.ref.kind.value, "device": p.device.type,
                       "method_decisions": dict(p.model.decisions)}
    return tree


def run_name(cfg: RunConfig, task: TaskSpec, scope: EvalScope, digest: str) -> str:
    """`p-tuning-sst2-k16-s13-3f9a2c` (+ `-test100of1821` for a limited evaluation): readable, and unique per
    config through the first six digits of its `config_hash` (`digest`)."""
    return f"{cfg.method_name}-{task.name}-k{cfg.shots}-s{cfg.seed}-{digest[:6]}{scope.name_suffix()}"


def run_tags(cfg: RunConfig, task: TaskSpec, split: FewShotSplit, scope: EvalScope, digest: str,
             identity: dict) -> dict:
    return {"kind": RUN_KIND, "task": task.name, "method": cfg.method_name, "model": cfg.model,
            "seed": str(cfg.seed), "shots": str(cfg.shots), "split_fingerprint": split.fingerprint,
            "config_hash": digest, **scope.tags(), **{f"model/{k}": str(v) for k, v in identity.items()}}
