"""`workbench predict`: rebuild a run's model from its saved method artifact and label new rows."""

from __future__ import annotations

import csv
import json
import tempfile
from pathlib import Path

import numpy as np

from workbench.errors import ConfigError, WorkbenchError
from workbench.adaptation.artifacts import ARTIFACT_DIR, CONFIG, load_trained
from workbench.prompts import Verbalizer, parse_template
from workbench.config import RunConfig
from workbench.recipes.train import Prepared, prepare
from workbench.data import Example
from workbench.tracking import resolve_tracking_uri
from workbench.training import predict


def read_rows(path: Path, text_fields: tuple[str, ...]) -> list[Example]:
    if not path.exists():
        raise ConfigError(f"{path}: input file not found")
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        header = next(reader, None) or []
        missing = [t for t in text_fields if t not in header]
        if missing:
            raise ConfigError(f"{path}: header {header} lacks the task's text field(s) {missing}")
        rows = []
        for line, values in enumerate(reader, start=2):
            if len(values) != len(header):
                raise ConfigError(f"{path}: line {line}: {len(values)} columns, header has {len(header)}")
            rows.append(Example(f"input-{line - 2}", {k: v.strip() for k, v in zip(header, values)}, 0))
    return rows


def fetch_run(run_id: str, tracking_uri: str | None, into: Path) -> Path:
    import mlflow

    uri = resolve_tracking_uri(tracking_uri)
    try:
        return Path(mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=ARTIFACT_DIR,
                                                        dst_path=str(into), tracking_uri=uri))
    except Exception as e:  # MLflow raises several types for a missing run or artifact
        raise WorkbenchError(f"run {run_id!r} in {uri}: no saved method artifact ({str(e).splitlines()[0]}). "
                             f"Runs of methods that train most weights are saved only with save: always") from None


def rebuild(folder: Path) -> Prepared:
    """The run's model, built again from its saved config (with its exact template and label words)."""
    resolved = json.loads((folder / CONFIG).read_text())
    runtime = resolved.get("runtime") or {}
    tree = {k: v for k, v in resolved.items() if k != "runtime"}
    tree["tracking"] = {**tree.get("tracking", {}), "progress": False}
    if runtime.get("template_text"):
        tree["prompt"]["template"] = parse_template(runtime["template_text"], "run template")
    if runtime.get("label_words"):
        tree["prompt"]["verbalizer"] = Verbalizer(tuple(tuple(w) for w in runtime["label_words"]), "run verbalizer")
    prepared = prepare(RunConfig.from_dict(tree, str(folder / CONFIG)))
    load_trained(prepared.model, folder)
    return prepared


def predict_run(run_id: str, input_path: str | Path, tracking_uri: str | None = None,
                output: str | Path | None = None) -> list[dict]:
    with tempfile.TemporaryDirectory() as tmp:
        prepared = rebuild(fetch_run(run_id, tracking_uri, Path(tmp)))
    rows = read_rows(Path(input_path), prepared.task.text_fields)
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
