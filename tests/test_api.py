"""The public Python API: `import workbench as wb` is all a Python user needs."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import mlflow

import workbench as wb

from conftest import requires_data


@requires_data("sst2")
def test_train_from_python_returns_accuracy_and_run_id(tiny_mlm_dir):
    folder, verbalizer = tiny_mlm_dir
    result = wb.train(wb.RunConfig(task="sst2", method={"name": "lora", "r": 2}, model=str(folder), shots=4,
                                   prompt={"verbalizer": str(verbalizer), "template_id": 1},
                                   train={"max_steps": 2, "eval_every": 2}, eval={"limit": 16},
                                   tracking={"progress": False}))
    assert result.eval_rows == 16
    run = mlflow.get_run(result.run_id)
    # the accuracy returned is the logged one, and the share of the logged predictions that are right
    assert run.data.metrics["test/accuracy"] == result.test_accuracy
    rows = list(csv.DictReader(io.StringIO(Path(mlflow.artifacts.download_artifacts(
        run_id=result.run_id, artifact_path="predictions.csv")).read_text())))
    assert len(rows) == 16
    assert result.test_accuracy == sum(r["label"] == r["prediction"] for r in rows) / 16
    assert run.data.params["method.name"] == "lora" and run.data.params["method.r"] == "2"
    assert run.data.params["train.lr"] == str(wb.get_method("lora").default_lr)


@requires_data("sst2")
def test_objects_are_accepted_where_names_and_paths_are(tiny_mlm_dir):
    folder, _ = tiny_mlm_dir
    task = wb.load_task("sst2")
    template = wb.parse_template('{"placeholder": "text_a"} It was {"mask"}.', "mine")
    verbalizer = wb.Verbalizer((("bad", "terrible"), ("great", "good")), "mine")
    result = wb.train(wb.RunConfig(task=task, method="prompt-tuning", model=str(folder), shots=4,
                                   prompt=wb.PromptConfig(template=template, verbalizer=verbalizer),
                                   train=wb.TrainConfig(max_steps=1, eval_every=1), eval={"limit": 8},
                                   tracking={"progress": False}))
    run = mlflow.get_run(result.run_id)
    assert run.data.params["runtime.template_text"] == '{"placeholder": "text_a"} It was {"mask"}.'
    assert run.data.tags["task"] == "sst2"
