"""`workbench train` end to end on a tiny local model: the CLI, the recipe, and the MLflow run layout."""

import mlflow
import pytest

from workbench.cli import main

from conftest import overflow_after_each_step, requires_data

FIXED_METRICS = {"train/loss", "eval/accuracy", "test/accuracy", "trainable_params", "trainable_fraction",
                 "train/seconds", "train/examples_per_s", "peak_mem_mb"}


@requires_data("sst2")
@pytest.mark.parametrize("method", ["prompt-finetune", "finetune"])
def test_train_logs_one_complete_run(tiny_mlm_dir, capsys, method):
    folder, verbalizer = tiny_mlm_dir
    code = main(["train", "--method", method, "--task", "sst2", "--model", str(folder), "--template-id", "1",
                 "--verbalizer-file", str(verbalizer), "--max-steps", "3", "--eval-every", "2", "--eval-limit", "24",
                 "--shots", "4", "--no-progress"])
    assert code == 0
    captured = capsys.readouterr()
    out = captured.out
    # a limited evaluation says so wherever its number appears: the output, a tag and the run name
    assert "accuracy on the first 24 of 1,821 test rows: " in out
    batch = 16 if method == "finetune" else 8  # the methods' default batch sizes
    assert f"this run: 3 training steps of {batch} examples, then scoring the first 24 of 1,821 test rows" in \
        captured.err
    # how long each part should take, said once it is measured: training after step 1, scoring after a dev evaluation
    assert "training: about " in captured.err and "(3 steps at " in captured.err
    assert "scoring the first 24 of 1,821 test rows after training: about " in captured.err
    run_id = out.strip().splitlines()[-1].split()[-1]
    run = mlflow.get_run(run_id)
    tags = run.data.tags
    assert tags["eval_scope"] == "the first 24 of 1,821 test rows" and tags["kind"] == "run"
    assert run.info.run_name.endswith("-test24of1821") and run.info.run_name.startswith(f"{method}-sst2-k4-s13-")
    # the summary names the kept step; the dev curve has one point per evaluated step, the kept score its own name
    best = int(run.data.metrics["best_step"])
    assert f"best at step {best} of 3 (its weights kept)" in out and tags["kept_step"] == f"{best} of 3"
    dev_curve = mlflow.MlflowClient().get_metric_history(run_id, "eval/accuracy")
    assert sorted(m.step for m in dev_curve) == [2, 3]
    assert run.data.metrics["eval/best_accuracy"] == max(m.value for m in dev_curve)
    assert FIXED_METRICS <= set(run.data.metrics)
    assert 0 < run.data.metrics["trainable_fraction"] <= 1
    assert run.data.tags["split_fingerprint"] and run.data.tags["git_commit"]
    assert run.data.tags["version/torch"]
    artifacts = {a.path for a in mlflow.MlflowClient().list_artifacts(run_id)}
    assert {"config.yaml", "split_ids.json", "predictions.csv", "confusion_matrix.png"} <= artifacts
    history = mlflow.MlflowClient().get_metric_history(run_id, "train/loss")
    assert [m.step for m in history] == [1, 2, 3]
    import csv
    import tempfile

    from workbench.data import get_task

    with tempfile.TemporaryDirectory() as tmp:
        logged = list(csv.DictReader(open(mlflow.MlflowClient().download_artifacts(run_id, "predictions.csv", tmp))))
    test_rows = get_task("sst2").load_split("test")[:24]
    assert [r["sentence"] for r in logged] == [r.fields["sentence"] for r in test_rows]  # the input beside its label


@requires_data("sst2")
def test_run_names_differ_for_configs_that_differ_only_in_a_method_option(tiny_mlm_dir, capsys):
    folder, verbalizer = tiny_mlm_dir
    names = []
    for encoder in ("lstm", "mlp", "lstm"):
        assert main(["train", "--method", "p-tuning", "--task", "sst2", "--model", str(folder), "--template-id", "1",
                     "--verbalizer-file", str(verbalizer), "--max-steps", "1", "--eval-limit", "8", "--shots", "4",
                     "--option", f"prompt_encoder={encoder}", "--no-progress"]) == 0
        names.append(mlflow.get_run(capsys.readouterr().out.strip().splitlines()[-1].split()[-1]).info.run_name)
    assert names[0] != names[1] and names[0] == names[2]  # one name per config, the same for the same config


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


@requires_data("sst2")
def test_a_run_whose_weights_diverged_is_failed_with_its_step_and_no_accuracy(tiny_mlm_dir, capsys, monkeypatch):
    """The first update pushes a weight to inf (a finite loss before it), found before step 2 is scored. The run
    ends FAILED naming the step, in one line with exit code 2, and no accuracy is reported anywhere."""
    overflow_after_each_step(monkeypatch)
    folder, verbalizer = tiny_mlm_dir
    code = main(["train", "--method", "prompt-finetune", "--task", "sst2", "--model", str(folder), "--template-id",
                 "1", "--verbalizer-file", str(verbalizer), "--max-steps", "3", "--eval-every", "2", "--eval-limit",
                 "8", "--shots", "4", "--no-progress"])
    captured = capsys.readouterr()
    assert code == 2 and "Traceback" not in captured.err
    last = captured.err.strip().splitlines()[-1]
    assert last.startswith("error: training diverged at step 2 ("), last
    assert "accuracy" not in captured.out
    runs = mlflow.search_runs(search_all_experiments=True)
    assert len(runs) == 1 and runs.iloc[0]["status"] == "FAILED"
    run = mlflow.get_run(runs.iloc[0]["run_id"])
    assert "diverged at step 2" in run.data.tags["error"]
    assert not {"test/accuracy", "eval/accuracy", "eval/best_accuracy"} & set(run.data.metrics)


@requires_data("sst2")
@pytest.mark.parametrize("signum, code", [("SIGTERM", 143), ("SIGINT", 130)])
def test_a_stop_signal_ends_the_run_killed(tiny_mlm_dir, capsys, monkeypatch, signum, code):
    """SIGTERM's default would end the process on the spot with its MLflow run left RUNNING: the command line turns
    it into an exception, as Python does SIGINT, so the run ends KILLED before the process exits."""
    import os
    import signal

    import workbench.training

    real = workbench.training.train

    def stopped_at_step_1(*args, on_log=None, **kwargs):
        def log(step, record):
            on_log(step, record)
            os.kill(os.getpid(), getattr(signal, signum))
        return real(*args, on_log=log, **kwargs)

    monkeypatch.setattr(workbench.training, "train", stopped_at_step_1)
    before = signal.getsignal(signal.SIGTERM)
    folder, verbalizer = tiny_mlm_dir
    assert main(["train", "--method", "prompt-finetune", "--task", "sst2", "--model", str(folder), "--template-id",
                 "1", "--verbalizer-file", str(verbalizer), "--max-steps", "50", "--eval-limit", "8", "--shots", "4",
                 "--no-progress"]) == code
    assert capsys.readouterr().err.strip().splitlines()[-1] in ("terminated (SIGTERM)", "interrupted")
    runs = mlflow.search_runs(search_all_experiments=True)
    assert list(runs["status"]) == ["KILLED"]
    assert signal.getsignal(signal.SIGTERM) is before  # the handler is the command's, not the process's


def test_unknown_method_and_option(capsys):
    assert main(["train", "--method", "nope"]) == 2
    assert "unknown method 'nope'" in capsys.readouterr().err
    assert main(["train", "--method", "icl", "--option", "shots_per_demo=3"]) == 2
    err = capsys.readouterr().err
    assert "unknown field(s) ['shots_per_demo']" in err and "known: demos_per_class, calibrate, separator" in err


@requires_data("sst2")
@pytest.mark.parametrize("method, options", [("prompt-tuning", ["num_virtual_tokens=5"]),
                                             ("lora", ["r=2"]), ("p-tuning", ["prompt_encoder=lstm"])])
def test_saved_method_reloads_with_identical_predictions(tiny_mlm_dir, tmp_path, capsys, method, options):
    import csv

    folder, verbalizer = tiny_mlm_dir
    args = ["train", "--method", method, "--task", "sst2", "--model", str(folder), "--template-id", "1",
            "--verbalizer-file", str(verbalizer), "--max-steps", "3", "--eval-every", "3", "--eval-limit", "16",
            "--shots", "4", "--lr", "0.05", "--save", "always", "--no-progress"]
    for o in options:
        args += ["--option", o]
    assert main(args) == 0
    run_id = capsys.readouterr().out.strip().splitlines()[-1].split()[-1]
    client = mlflow.MlflowClient()
    assert {a.path for a in client.list_artifacts(run_id, "method")} == {"method/trained.safetensors",
                                                                       "method/run_config.json"}
    logged = list(csv.DictReader(open(client.download_artifacts(run_id, "predictions.csv", str(tmp_path)))))

    from workbench.data import get_task

    rows = get_task("sst2").load_split("test")[:16]
    inp = tmp_path / "in.tsv"
    inp.write_text("sentence\n" + "".join(r.fields["sentence"] + "\n" for r in rows))
    out = tmp_path / "out.tsv"
    assert main(["predict", "--run", run_id, "--input", str(inp), "--out", str(out)]) == 0
    again = list(csv.DictReader(open(out), delimiter="\t"))
    assert [r["prediction"] for r in again] == [r["prediction"] for r in logged]
    # the logged scores are raw class scores; compare their ordering margin through the probabilities
    for a, b in zip(again, logged):
        margin = float(b["score_positive"]) - float(b["score_negative"])
        p_pos = float(a["p_positive"])
        assert abs(p_pos - 1 / (1 + pow(2.718281828459045, -margin))) < 1e-3


@requires_data("sst2")
def test_prompt_longer_than_context(tiny_mlm_dir, capsys):
    folder, verbalizer = tiny_mlm_dir
    code = main(["train", "--method", "prompt-tuning", "--task", "sst2", "--model", str(folder),
                 "--verbalizer-file", str(verbalizer), "--option", "num_virtual_tokens=500", "--no-progress"])
    assert code == 2
    assert "adds 500 prompt tokens but" in capsys.readouterr().err
