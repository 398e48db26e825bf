"""The first hour, offline: commands that need no model import no heavy library, read-only commands change
nothing, a task without data is one line naming WORKBENCH_DATA_DIR (never half a minute of hub retries), and a
task YAML can name its own template and verbalizer files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from bad_inputs import Case, run_case

HEAVY = ("torch", "transformers", "mlflow", "optuna", "datasets")
TASK = ("name: tiny\nfiles: {train: train.tsv, test: test.tsv}\ntext_fields: [text]\nlabel_names: [neg, pos]\n"
        "templates: prompts/tpl.txt\nverbalizer: prompts/v.txt\n")
FILES = {
    "task.yaml": TASK,
    "train.tsv": "text\tlabel\n" + "".join(f"{w} movie\t{'pos' if i % 2 else 'neg'}\n"
                                           for i, w in enumerate(["bad", "great", "dull", "fun"] * 3)),
    "test.tsv": "text\tlabel\ngood film\tpos\nboring plot\tneg\n",
    "prompts/tpl.txt": '{"placeholder": "text_a"} It was {"mask"}.\n{"placeholder": "text_a"} All in all {"mask"}.\n',
    "prompts/v.txt": "bad, dull\ngreat, fun\n",
}

# Run in a fresh interpreter: which modules a command imported, and its exit code.
PROBE = f"""
import json, sys
from workbench.cli import main
try:
    code = main(sys.argv[1:])
except SystemExit as e:  # --help
    code = e.code
print(json.dumps({{"code": code, "heavy": sorted(m for m in {HEAVY!r} if m in sys.modules)}}))
"""


def write(folder: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text, encoding="utf-8")


def offline_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "WORKBENCH_DATA_DIR"}
    return {**env, "HF_HUB_OFFLINE": "1", "WORKBENCH_CACHE": str(tmp_path / "cache"), **extra}


@pytest.mark.parametrize("argv", [
    ["--help"], ["models", "list"], ["models", "show", "gemma3-270m"], ["tasks", "list"], ["tasks", "show", "task.yaml"],
    ["methods"], ["methods", "lora"], ["prompts", "check", "prompts/tpl.txt", "prompts/v.txt", "--task", "task.yaml"],
    ["prompts", "check", "--task", "task.yaml"], ["prompts", "check", "--task", "sst2"],
], ids=" ".join)
def test_model_free_commands_import_no_heavy_library(argv, tmp_path):
    write(tmp_path, FILES)
    done = subprocess.run([sys.executable, "-c", PROBE, *argv], cwd=tmp_path, env=offline_env(tmp_path),
                          capture_output=True, text=True, timeout=120)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result == {"code": 0, "heavy": []}, done.stderr


# --- read-only commands change nothing -----------------------------------------------------------------------

def test_models_show_does_not_pull(tmp_path, monkeypatch, capsys):
    from workbench.cli import main
    from workbench.models import aliases

    cache = tmp_path / "cache"
    cache.mkdir()
    monkeypatch.setenv("WORKBENCH_CACHE", str(cache))
    monkeypatch.setattr(aliases, "_assemble", lambda *a: pytest.fail("models show downloaded the wheels"))
    assert main(["models", "show", "gemma3-270m"]) == 0
    out, err = capsys.readouterr()
    info = json.loads(out)
    assert info["pulled"] is False and info["kind"] == "causal" and len(info["wheels"]) == 4
    assert "not pulled; run workbench models pull gemma3-270m" in err
    assert list(cache.iterdir()) == []
    assert main(["models", "list"]) == 0
    assert "not pulled" in capsys.readouterr().out and list(cache.iterdir()) == []


def test_models_show_a_pulled_alias_reads_its_identity(tmp_path, monkeypatch, capsys):
    from workbench.cli import main
    from workbench.models import aliases

    monkeypatch.setenv("WORKBENCH_CACHE", str(tmp_path))
    hf = aliases.alias_dir("minilm-l6") / "hf"
    hf.mkdir(parents=True)
    identity = {"alias": "minilm-l6", "kind": "encoder"}  # no recorded files: `pull` would convert again
    (hf / aliases.IDENTITY).write_text(json.dumps(identity))
    monkeypatch.setattr(aliases, "_verify", lambda *a, **k: None)  # the source file is not what is tested here
    monkeypatch.setattr(aliases, "_convert", lambda *a: pytest.fail("models show converted the model"))
    assert main(["models", "show", "minilm-l6"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["pulled"] is True and info["path"] == str(hf) and info["identity"] == identity


def test_models_show_a_folder_and_a_hub_id_without_loading(tmp_path, monkeypatch, capsys):
    from workbench.cli import main
    from workbench.models import backbone

    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "config.json").write_text('{"architectures": ["BertForMaskedLM"], "model_type": "bert"}')
    (tmp_path / "empty").mkdir()
    assert main(["models", "show", str(tmp_path / "m"), str(tmp_path / "empty")]) == 0
    out = capsys.readouterr().out
    assert '"config": true' in out and '"kind": "masked"' in out and '"config": false' in out
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))  # an empty Hugging Face cache
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(backbone, "_reach", lambda *a: None)  # as if online; nothing is fetched anyway
    assert main(["models", "show", "org/some-model"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["source"] == "Hugging Face hub, downloaded on first use" and info["in_local_cache"] is False


# --- no data, offline: one line naming WORKBENCH_DATA_DIR, at once -----------------------------------------------

def test_tasks_show_without_data_offline_is_one_fast_line(tmp_path):
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "workbench", "tasks", "show", "sst2"], cwd=tmp_path,
                          env=offline_env(tmp_path), capture_output=True, text=True, timeout=60)
    assert time.perf_counter() - start < 5
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.strip().splitlines() == [
        "error: task 'sst2': no local data (WORKBENCH_DATA_DIR is not set) and the Hugging Face hub is not reachable "
        "(HF_HUB_OFFLINE is set); set WORKBENCH_DATA_DIR to a folder holding sst2/{train,dev,test}.tsv "
        "(e.g. ../shared/data)"]


@pytest.mark.parametrize("argv", [["tasks", "show", "sst2"], ["train", "--task", "sst2"],
                                  ["train", "--task", "rte", "--method", "finetune"]], ids=" ".join)
def test_no_data_and_no_hub_is_refused_before_the_model(argv, tmp_path, monkeypatch, capsys):
    from workbench.models import backbone

    monkeypatch.delenv("WORKBENCH_DATA_DIR", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    monkeypatch.setattr(backbone, "_reach", lambda *a: "unknown host 'huggingface.co'")  # the socket check fails
    name = argv[2]
    expect = ["WORKBENCH_DATA_DIR is not set", f"set WORKBENCH_DATA_DIR to a folder holding {name}/"]
    expect.append("unknown host 'huggingface.co'" if name == "sst2" else "no copy on the Hugging Face hub")
    start = time.perf_counter()
    run_case(Case("no-data", argv, expect), tmp_path, monkeypatch, capsys)
    assert time.perf_counter() - start < 5


def test_data_dir_without_the_task_names_the_path(tmp_path, monkeypatch, capsys):
    (tmp_path / "data" / "sst2").mkdir(parents=True)
    (tmp_path / "data" / "sst2" / "train.tsv").write_text("sentence\tlabel\ngood\t1\nbad\t0\nfun\t1\ndull\t0\n")
    run_case(Case("no-task-folder", ["tasks", "show", "sst5"], ["{tmp}/data/sst5 does not exist", "WORKBENCH_DATA_DIR"],
                  env={"WORKBENCH_DATA_DIR": "{tmp}/data", "HF_HUB_OFFLINE": "1"}), tmp_path, monkeypatch, capsys)
    run_case(Case("no-split-file", ["train", "--task", "sst2", "--shots", "1"], ["{tmp}/data/sst2/test.tsv does not exist",
                                                                 "WORKBENCH_DATA_DIR"],
                  env={"WORKBENCH_DATA_DIR": "{tmp}/data"}), tmp_path, monkeypatch, capsys)


def test_a_hub_failure_is_one_line(tmp_path, monkeypatch, capsys):
    import types

    from workbench.models import backbone

    def load_dataset(*args, **kwargs):
        raise ConnectionError("Couldn't reach 'SetFit/sst2' on the Hub (LocalEntryNotFoundError)\nmore detail")

    monkeypatch.delenv("WORKBENCH_DATA_DIR", raising=False)
    monkeypatch.setattr(backbone, "hub_unreachable", lambda *a: None)
    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=load_dataset))
    message = ["task 'sst2' split 'train': loading SetFit/sst2 from the Hugging Face hub failed (Couldn't reach",
               "set WORKBENCH_DATA_DIR"]
    run_case(Case("hub-fails", ["train", "--task", "sst2"], message), tmp_path, monkeypatch, capsys)
    # `tasks show` reads every split: each that fails says so in its place
    from workbench.cli import main

    assert main(["tasks", "show", "sst2"]) == 0
    rows = json.loads(capsys.readouterr().out)["rows"]
    assert all(message[0].replace("'train'", repr(split)) in rows[split] for split in ("train", "dev", "test"))


# --- a task YAML names its template and verbalizer files -----------------------------------------------------------

def test_task_yaml_templates_and_verbalizer_are_used(tiny_mlm_dir, tmp_path):
    from workbench.runs import RunConfig
    from workbench.data import load_task_yaml
    from workbench.runs import prepare

    folder, other_verbalizer = tiny_mlm_dir
    write(tmp_path, FILES)
    task = load_task_yaml(tmp_path / "task.yaml")
    assert task.template_file == str(tmp_path / "prompts" / "tpl.txt")
    assert task.verbalizer_file == str(tmp_path / "prompts" / "v.txt")
    p = prepare(RunConfig(task=str(tmp_path / "task.yaml"), model=str(folder), method="prompt-finetune", shots=2,
                          prompt={"template_id": 1}))
    assert p.template.source.startswith(str(tmp_path / "prompts" / "tpl.txt"))
    assert "All in all" in p.template.text and p.verbalizer.words == (("bad", "dull"), ("great", "fun"))
    # a file the run config names comes first
    p = prepare(RunConfig(task=str(tmp_path / "task.yaml"), model=str(folder), method="prompt-finetune", shots=2,
                          prompt={"verbalizer": str(other_verbalizer)}))
    assert "It was" in p.template.text and p.verbalizer.words == (("bad", "terrible"), ("great", "good"))
