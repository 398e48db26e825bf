"""`workbench predict`: rebuild a run's model from its saved method artifact and label new rows."""

from __future__ import annotations

import csv
import json
import tempfile
from pathlib import Path

import numpy as np

from workbench.adaptation.artifacts import ARTIFACT_DIR, CONFIG, load_trained
from workbench.config import RunConfig
from workbench.data import Example, get_task
from workbench.data.registry import Table, read_table
from workbench.errors import ConfigError, WorkbenchError
from workbench.prompts import Verbalizer, parse_template
from workbench.recipes.train import Prepared, prepare
from workbench.tracking import check_tracking_uri
from workbench.tracking.runs import download_artifact
from workbench.training import predict

def read_input(path: str | Path) -> Table:
    """The input file (TSV with a header), checked before any run or model is touched."""
    return read_table(Path(path), "input file", suffix=".tsv")


def read_rows(path: str | Path | Table, text_fields: tuple[str, ...]) -> list[Example]:
    """The rows to label: every text field of the task must be a column of the header."""
    table = path if isinstance(path, Table) else read_input(path)
    header = list(table.header or ())
    missing = [t for t in text_fields if t not in header]
    if missing:
        raise ConfigError(f"{table.path}: line 1: the header {header} has no column {missing[0]!r}; the run's task "
                          f"reads text field(s) {list(text_fields)}")
    return [Example(f"input-{i}", {k: v.strip() for k, v in row.items()}, 0) for i, (_, row) in enumerate(table.rows)]


def _check_output(output: str | Path | None) -> None:
    if output is None:
        return
    out = Path(output)
    if out.is_dir():
        raise ConfigError(f"--out {output}: is a directory; give the path of the TSV file to write")
    if not out.parent.is_dir():
        raise ConfigError(f"--out {output}: folder {out.parent} does not exist")


def fetch_run(run_id: str, tracking_uri: str | None, into: Path) -> Path:
    # The same fast check as train, sweep and compare: MLflow's client retries an unreachable server for minutes.
    uri = check_tracking_uri(tracking_uri)
    try:
        folder = download_artifact(run_id, ARTIFACT_DIR, uri, into)
    except Exception as e:  # MLflow raises several types for a missing run or artifact
        raise WorkbenchError(f"run {run_id!r} in {uri}: no saved method artifact ({str(e).splitlines()[0]}). "
                             f"Runs of methods that train most weights are saved only with save: always") from None
    _refuse_instruction_tuning(run_id, folder)
    return folder


def _refuse_instruction_tuning(run_id: str, folder: Path) -> None:
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


def rebuild(folder: Path, cfg: RunConfig | None = None) -> Prepared:
    """The run's model, built again from its saved config (`saved_config`)."""
    prepared = prepare(cfg if cfg is not None else saved_config(folder), restoring=True)
    load_trained(prepared.model, folder)
    return prepared


def predict_run(run_id: str, input_path: str | Path, tracking_uri: str | None = None,
                output: str | Path | None = None) -> list[dict]:
    table = read_input(input_path)  # bad input is refused before the run is fetched or a model loads
    _check_output(output)
    with tempfile.TemporaryDirectory() as tmp:
        folder = fetch_run(run_id, tracking_uri, Path(tmp))
        cfg = saved_config(folder)
        rows = read_rows(table, get_task(cfg.task).text_fields)
        prepared = rebuild(folder, cfg)
    enc = [prepared.encoder.encode(r) for r in rows]
    scores = predict(prepared.model, enc, prepared.encoder.tokenizer.pad_token_id)
    probs = np.exp(scores - scores.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    names = prepared.task.label_names
    out = [{**{f: r.fields[f] for f in prepared.task.text_fields}, "prediction": names[int(s.argmax())],
            **{f"p_{n}": round(float(p), 5) for n, p in zip(names, pr)}} for r, s, pr in zip(rows, scores, probs)]
    if output:
        with open(output, "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=list(out[0]) if out else ["prediction"], delimiter="\t")
            writer.writeheader()
            writer.writerows(out)
    return out
