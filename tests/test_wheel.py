"""The wheel works on its own: built with `pip wheel`, installed where the editable checkout cannot shadow
it, and run from an unrelated directory, it finds its templates, verbalizers and instruction templates: the
copies of the top-level prompt library (templates/, verbalizers/) that pyproject.toml maps into the package."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import tomllib
import zipfile
from pathlib import Path

import pytest

from conftest import requires_data

REPO = Path(__file__).resolve().parents[1]
LIBRARY = ("templates", "verbalizers")  # the top-level prompt library, shipped as workbench/<folder>


def _folders(root: Path) -> list[Path]:
    """The folders under `root` that hold a file (one left with only __pycache__ after a move is not a package)."""
    return [p for p in [root, *root.rglob("*")]
            if p.is_dir() and p.name != "__pycache__" and any(f.is_file() for f in p.iterdir())]


def test_pyproject_lists_every_package_folder():
    """pyproject.toml lists its packages (a mapped folder needs that): one added to workbench/ without an entry
    would be missing from the wheel, and a listed one that is gone fails the build."""
    tool = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]
    assert tool["package-dir"] == {f"workbench.{name}": name for name in LIBRARY}
    folders = [".".join(p.relative_to(REPO).parts) for p in _folders(REPO / "workbench")]
    folders += [".".join(("workbench", *p.relative_to(REPO).parts)) for name in LIBRARY for p in _folders(REPO / name)]
    assert sorted(tool["packages"]) == sorted(folders), "pyproject.toml's [tool.setuptools] packages: one per folder"


@pytest.mark.slow
@requires_data("sst2")
def test_installed_wheel_trains_from_another_directory(tmp_path):
    # Built from a copy of what the wheel is made of: pip builds in the source tree, and a checkout's stale build/
    # folder would put files that are gone (an old workbench/resources package) into the wheel.
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, source / name)
    for name in ("workbench", *LIBRARY):
        shutil.copytree(REPO / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(wheels), str(source)],
                   check=True, timeout=600, capture_output=True)
    wheel = next(wheels.glob("prompt_workbench-*.whl"))
    # Every prompt file of the top-level folders is in the wheel, inside the package, byte for byte.
    with zipfile.ZipFile(wheel) as z:
        shipped = {n: z.read(n) for n in z.namelist() if n.startswith(tuple(f"workbench/{f}/" for f in LIBRARY))}
    library = {f"workbench/{p.relative_to(REPO).as_posix()}": p.read_bytes()
               for name in LIBRARY for p in (REPO / name).rglob("*") if p.is_file()}
    assert library and shipped == library
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
                                     "print(workbench.__file__); print(r.template_file('sst2')); "
                                     "print(r.verbalizer_file('sst2')); print(r.instruct_templates_dir()); "
                                     "print(r.cot_exemplars_file())"],
                                    cwd=elsewhere, env=env, text=True).split()
    package = site / "workbench"
    assert [Path(p) for p in where] == [package / "__init__.py", package / "templates" / "sst2.txt",
                                        package / "verbalizers" / "sst2.txt", package / "templates" / "instruct",
                                        package / "templates" / "cot" / "manual.yaml"], where  # the wheel's copies
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
