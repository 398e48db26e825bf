"""`workbench predict`: rebuild a run's model from its saved method artifact and label new rows."""

from __future__ import annotations

import csv
import tempfile
from pathlib import Path

import numpy as np

from workbench.data import Example, get_task
from workbench.data.tasks import Table, read_table
from workbench.errors import ConfigError
from workbench.runs.saved import fetch_run, rebuild, saved_config
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
