"""`workbench train` end to end on a tiny local model: the CLI, the recipe, and the MLflow run layout."""

import mlflow
import pytest

from workbench.cli import main

from conftest import requires_data

FIXED_METRICS = {"train/loss", "eval/accuracy", "test/accuracy", "trainable_params", "trainable_fraction",
                 "train/seconds", "train/examples_per_s", "peak_mem_mb"}


@pytest.fixture()
def tiny_mlm_dir(tmp_path, tiny_mlm):
    folder = tmp_path / "tiny-bert"
    tiny_mlm.model.save_pretrained(folder)
    tiny_mlm.tokenizer.save_pretrained(folder)
    verbalizer = tmp_path / "v.txt"
    verbalizer.write_text("bad, terrible\ngreat, good\n")
    return folder, verbalizer


@requires_data("sst2")
@pytest.mark.parametrize("method", ["prompt-finetune", "finetune"])
def test_train_logs_one_complete_run(tiny_mlm_dir, capsys, method):
    folder, verbalizer = tiny_mlm_dir
    code = main(["train", "--method", method, "--task", "sst2", "--model", str(folder), "--template-id", "1",
                 "--verbalizer-file", str(verbalizer), "--max-steps", "3", "--eval-every", "2", "--eval-limit", "24",
                 "--shots", "4", "--no-progress"])
    assert code == 0
    out = capsys.readouterr().out
    assert "test accuracy" in out
    run_id = out.strip().splitlines()[-1].split()[-1]
    run = mlflow.get_run(run_id)
    assert FIXED_METRICS <= set(run.data.metrics)
    assert 0 < run.data.metrics["trainable_fraction"] <= 1
    assert run.data.tags["split_fingerprint"] and run.data.tags["git_commit"]
    assert run.data.tags["version/torch"]
    artifacts = {a.path for a in mlflow.MlflowClient().list_artifacts(run_id)}
    assert {"config.yaml", "split_ids.json", "predictions.csv", "confusion_matrix.png"} <= artifacts
    history = mlflow.MlflowClient().get_metric_history(run_id, "train/loss")
    assert [m.step for m in history] == [1, 2, 3]


@requires_data("sst2")
def test_bad_verbalizer_fails_before_training(tiny_mlm_dir, tmp_path, capsys):
    folder, _ = tiny_mlm_dir
    bad = tmp_path / "three.txt"
    bad.write_text("bad\nokay\ngreat\n")
    code = main(["train", "--task", "sst2", "--model", str(folder), "--verbalizer-file", str(bad), "--no-progress"])
    assert code == 2
    err = capsys.readouterr().err
    assert f"{bad}: 3 lines of label words, but the task has 2 classes" in err
    assert mlflow.search_runs(search_all_experiments=True).empty  # nothing was started


def test_unknown_method_and_option(capsys):
    assert main(["train", "--method", "nope"]) == 2
    assert "unknown method 'nope'" in capsys.readouterr().err
    assert main(["train", "--method", "icl", "--option", "shots_per_demo=3"]) == 2
    assert "has no option(s) ['shots_per_demo']" in capsys.readouterr().err
