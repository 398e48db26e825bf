"""A method defined outside the package registers like a built-in one, through WORKBENCH_PLUGINS or the
`workbench.methods` entry-point group, and works with train, sweep, compare and predict."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from conftest import requires_data

PLUGIN = textwrap.dedent('''
    """A linear probe: frozen backbone, a new linear head (a method written outside the workbench)."""
    from dataclasses import dataclass

    import workbench as wb


    @dataclass
    class LinearProbeOptions(wb.MethodOptions):
        dropout: float = wb.option(0.0, min=0, max=0.9, help="dropout before the head")


    def build(ctx, opts):
        from workbench.training import LinearHead, PromptClassifier

        for p in ctx.backbone.model.parameters():
            p.requires_grad_(False)
        return PromptClassifier(ctx.backbone.model, LinearHead(ctx.backbone.hidden_size, ctx.task.num_classes,
                                                               opts.dropout))


    def register():
        wb.register_method(wb.Method(
            name="linear-probe", summary="frozen backbone, linear head", options=LinearProbeOptions, build=build,
            default_lr=1e-2, uses_verbalizer=False,
            space=wb.SearchSpace({"train.lr": wb.Float(1e-3, 1e-1, log=True)})))
''')


def _env(tmp_path, **extra) -> dict:
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'p.db'}",
           **extra}
    return env


def _run(args, tmp_path, env) -> subprocess.CompletedProcess:
    proc = subprocess.run(args, capture_output=True, text=True, cwd=tmp_path, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


@requires_data("sst2")
def test_plugin_module_named_in_env_trains_from_the_cli(tmp_path, tiny_mlm_dir):
    folder, _ = tiny_mlm_dir
    (tmp_path / "probe_plugin.py").write_text(PLUGIN + "\nregister()\n")
    env = _env(tmp_path, WORKBENCH_PLUGINS="probe_plugin")
    out = _run([sys.executable, "-m", "workbench", "methods", "linear-probe"], tmp_path, env).stdout
    assert "frozen backbone, linear head" in out and "dropout = 0.0" in out and "train.lr" in out
    out = _run([sys.executable, "-m", "workbench", "train", "--method", "linear-probe", "--task", "sst2", "--model",
                str(folder), "--shots", "4", "--max-steps", "2", "--eval-every", "2", "--eval-limit", "8",
                "--no-progress"], tmp_path, env).stdout
    assert "MLflow run id:" in out and "trainable params: 66 " in out  # 32 x 2 weights + 2 biases
    bad = subprocess.run([sys.executable, "-m", "workbench", "train", "--method", "linear-probe", "--option",
                          "dropout=2"], capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120)
    assert bad.returncode == 2 and "method.dropout (--option dropout=...): 2 is not allowed" in bad.stderr


@pytest.mark.slow
@requires_data("sst2")
def test_entry_point_plugin_sweeps_compares_and_predicts(tmp_path, tiny_mlm_dir):
    folder, _ = tiny_mlm_dir
    (tmp_path / "probe_ep.py").write_text(PLUGIN)
    dist = tmp_path / "probe_ep-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: probe-ep\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[workbench.methods]\nlinear-probe = probe_ep:register\n")
    script = textwrap.dedent(f'''
        import workbench as wb
        from workbench.recipes.predict import predict_run

        assert "linear-probe" in wb.methods()
        run = wb.RunConfig(task="sst2", model={str(folder)!r}, shots=4, method="linear-probe",
                           train={{"max_steps": 2, "eval_every": 1}}, eval={{"limit": 8}},
                           tracking={{"progress": False, "save": "always"}})
        result = wb.sweep(wb.SweepConfig(run=run, trials=2, final_seeds=[13], baseline=None,
                                         storage="sqlite:///{tmp_path / 'optuna.db'}"), log=lambda s: None)
        assert result.study.n_complete == 2, result.study
        row = result.comparison.rows[0]
        assert row.method == "linear-probe" and len(row.test) == 1
        tsv = {str(tmp_path / 'in.tsv')!r}
        open(tsv, "w").write("sentence\\na great movie\\na dull film\\n")
        rows = predict_run(row.run_ids[0], tsv)
        assert len(rows) == 2 and rows[0]["prediction"] in ("negative", "positive")
        print("plugin ok")
    ''')
    out = _run([sys.executable, "-c", script], tmp_path, _env(tmp_path)).stdout
    assert "plugin ok" in out
