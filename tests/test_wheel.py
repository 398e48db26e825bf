"""The wheel works on its own: built with `pip wheel`, installed where the editable checkout cannot shadow
it, and run from an unrelated directory, it finds its templates, verbalizers and instruction templates."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from conftest import requires_data

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
@requires_data("sst2")
def test_installed_wheel_trains_from_another_directory(tmp_path):
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(wheels), str(REPO)],
                   check=True, timeout=600, capture_output=True)
    wheel = next(wheels.glob("prompt_workbench-*.whl"))
    # A scratch environment: the wheel installed into its own site-packages; the dependencies come from this
    # environment's site-packages through a path entry (not a site dir, so its editable-install hook does not run).
    scratch = tmp_path / "scratch"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(scratch)], check=True, timeout=120)
    py = scratch / "bin" / "python"
    site = Path(subprocess.check_output([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                        text=True).strip())
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), str(wheel)],
                   check=True, timeout=300, capture_output=True)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["MLFLOW_TRACKING_URI"] = f"sqlite:///{elsewhere / 'mlflow.db'}"
    where = subprocess.check_output([str(py), "-c", "import workbench, workbench.resources as r; "
                                     "print(workbench.__file__); print(r.template_file('sst2'))"],
                                    cwd=elsewhere, env=env, text=True).split()
    assert all(p.startswith(str(site)) for p in where), where  # the wheel, not the checkout
    proc = subprocess.run([str(py), "-m", "workbench", "train", "--method", "icl", "--task", "sst2", "--option",
                           "demos_per_class=0", "--eval-limit", "50", "--no-progress"],
                          cwd=elsewhere, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "accuracy on the first 50 of 1,821 test rows:" in proc.stdout
    # the instruction templates ship too
    out = subprocess.check_output([str(py), "-c", "from workbench.instruct.templates import default_templates_dir as "
                                   "d; print(sorted(p.name for p in d().glob('*.yaml')))"], cwd=elsewhere, env=env,
                                  text=True)
    assert "sst2.yaml" in out
