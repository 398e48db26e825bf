"""A saved run: its method artifact fetched from the MLflow store, its config as it ran (exact template and label
words), and its model built again from them."""

from __future__ import annotations

import json
from pathlib import Path

from workbench.adaptation.artifacts import ARTIFACT_DIR, CONFIG, load_trained
from workbench.errors import WorkbenchError
from workbench.prompts import Verbalizer, parse_template
from workbench.runs.config import RunConfig
from workbench.runs.prepared import PreparedRun, prepare
from workbench.tracking import check_tracking_uri
from workbench.tracking.runs import download_artifact


def fetch_run(run_id: str, tracking_uri: str | None, into: Path) -> Path:
    # The same fast check as train, sweep and compare: MLflow's client retries an unreachable server for minutes.
    uri = check_tracking_uri(tracking_uri)
    try:
        folder = download_artifact(run_id, ARTIFACT_DIR, uri, into)
    except Exception as e:  # MLflow raises several types for a missing run or artifact
        raise WorkbenchError(f"run {run_id!r} in {uri}: no saved method artifact ({str(e).splitlines()[0]}). "
                             f"Runs of methods that train most weights are saved only with save: always") from None
    refuse_instruction_tuning(run_id, folder)
    return folder


def refuse_instruction_tuning(run_id: str, folder: Path) -> None:
    """`instruct tune` saves its method artifact the same way, with a config of another shape (a `tune` section, no
    task or prompt): it generates text rather than labelling rows, so it is refused here, saying what reads it."""
    try:
        saved = json.loads((folder / CONFIG).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return  # saved_config reports an unreadable config
    if isinstance(saved, dict) and "tune" in saved:
        raise WorkbenchError(f"run {run_id} is an instruction-tuning run; `workbench predict` labels "
                             f"rows with a classification run from `workbench train`; evaluate this one with "
                             f"`workbench instruct eval --run {run_id}`")


def saved_config(folder: Path) -> RunConfig:
    """The run's config as saved with its method, with its exact template and label words."""
    resolved = json.loads((folder / CONFIG).read_text(encoding="utf-8"))
    runtime = resolved.get("runtime") or {}
    tree = {k: v for k, v in resolved.items() if k != "runtime"}
    tree["tracking"] = {**tree.get("tracking", {}), "progress": False}
    if runtime.get("template_text"):
        tree["prompt"]["template"] = parse_template(runtime["template_text"], "run template")
    if runtime.get("label_words"):
        tree["prompt"]["verbalizer"] = Verbalizer(tuple(tuple(w) for w in runtime["label_words"]), "run verbalizer")
    return RunConfig.from_dict(tree, str(folder / CONFIG))


def rebuild(folder: Path, cfg: RunConfig | None = None) -> PreparedRun:
    """The run's model, built again from its saved config (`saved_config`)."""
    prepared = prepare(cfg if cfg is not None else saved_config(folder), restoring=True)
    load_trained(prepared.model, folder)
    return prepared
