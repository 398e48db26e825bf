"""Mixtures: per-task counts follow the cap, a held-out task is absent, template files are validated."""

import json
import os
from pathlib import Path

import pytest

from workbench.errors import ConfigError, WorkbenchError
from workbench.instruct.mix import ALL_TASKS, MixConfig, build_mixture, resolve_tasks
from workbench.instruct.templates import default_templates_dir, load_template_set, render

DATA = Path(os.environ.get("WORKBENCH_DATA_DIR", Path(__file__).resolve().parents[2] / "shared" / "data"))
pytestmark = pytest.mark.skipif(not DATA.exists(), reason="needs WORKBENCH_DATA_DIR (../shared/data)")


@pytest.fixture(autouse=True)
def _data_dir(monkeypatch):
    monkeypatch.setenv("WORKBENCH_DATA_DIR", str(DATA))


def test_every_template_file_is_valid():
    for task in ALL_TASKS:
        tset = load_template_set(default_templates_dir() / f"{task}.yaml")
        assert len(tset.templates) == 10
        assert 1 <= sum(t.turned_around for t in tset.templates) <= 3


def test_mixture_on_all_tasks_follows_cap_and_holdout(tmp_path):
    cap = 200
    mix = build_mixture(MixConfig(holdout=("rte",), cap=cap, out=str(tmp_path / "mix"), log_mlflow=False))
    counts = {t: 0 for t in ALL_TASKS}
    lines = (tmp_path / "mix" / "mixture.jsonl").read_text().splitlines()
    for line in lines:
        rec = json.loads(line)
        counts[rec["task"]] += 1
        assert set(rec) >= {"inputs", "targets", "task", "template_id", "turned_around", "shots", "options"}
        if rec["options"]:
            assert "OPTIONS:\n- " in rec["inputs"]
    assert counts.pop("rte") == 0
    assert all(n == cap for n in counts.values()), counts  # every remaining task has more than `cap` rows
    assert mix.counts == {t: cap for t in ALL_TASKS if t != "rte"}
    import datasets

    ds = datasets.load_from_disk(str(tmp_path / "mix" / "hf"))
    assert len(ds) == len(lines) and "template_id" in ds.column_names
    # Round-robin assignment: every template of a task is used equally.
    assert set(mix.template_counts["sst2"].values()) == {cap // 10}


def test_cap_above_size_takes_everything_and_dataset_holdout_removes_variants(tmp_path):
    mix = build_mixture(MixConfig(tasks=("multiarith", "gsm8k", "gsm8k_cot"), holdout=("gsm8k",), cap=3000,
                                  out=str(tmp_path / "m"), log_mlflow=False, zero_shot_ratio=0.0))
    assert mix.counts == {"multiarith": 600}
    assert any(r["shots"] > 0 for r in mix.records)
    assert len({r["guid"] for r in mix.records}) == 600  # without replacement


def test_cluster_holdout_and_unknown_name():
    assert resolve_tasks(MixConfig(holdout=("math",))) == ["sst2", "sst5", "trec", "rte"]
    with pytest.raises(WorkbenchError, match="--holdout: .nope. is not allowed"):
        resolve_tasks(MixConfig(holdout=("nope",)))


def test_explicit_rates(tmp_path):
    mix = build_mixture(MixConfig(rates={"sst2": 1, "trec": 3}, total=100, out=str(tmp_path / "r"),
                                  log_mlflow=False))
    assert mix.counts == {"sst2": 25, "trec": 75}


def test_few_shot_respects_token_budget(tmp_path):
    mix = build_mixture(MixConfig(tasks=("rte",), cap=60, zero_shot_ratio=0.0, shots=(5,), token_budget=120,
                                  out=str(tmp_path / "b"), log_mlflow=False))
    for r in mix.records:
        if r["shots"]:
            assert len(r["inputs"].split()) <= 120
        assert r["shots"] < 5  # RTE items are long: 5 never fit in 120 words


def _write_templates(folder: Path, bad_field: str | None = None) -> Path:
    lines = ["task: sst2", "templates:"]
    for i in range(10):
        field = bad_field if (bad_field and i == 4) else "sentence"
        lines.append(f'  - input: "{{{field}}} How is it?\\n{{options_}}"')
        lines.append('    target: "{answer}"')
    path = folder / "sst2.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_template_with_unknown_field_names_file_and_line(tmp_path):
    path = _write_templates(tmp_path, bad_field="review")
    with pytest.raises(ConfigError) as err:
        build_mixture(MixConfig(tasks=("sst2",), templates_dir=str(tmp_path), out=str(tmp_path / "o"),
                                log_mlflow=False))
    msg = str(err.value)
    assert str(path) in msg and "line 11" in msg and "{review}" in msg
    assert not (tmp_path / "o").exists()  # nothing written


def test_render_options_and_no_options():
    tset = load_template_set(default_templates_dir() / "sst2.yaml", {"sentence", "answer"}, 2)
    with_opt = render(tset.templates[0], {"sentence": "great film", "answer": "positive"}, ("negative", "positive"), True)
    without = render(tset.templates[0], {"sentence": "great film", "answer": "positive"}, ("negative", "positive"), False)
    assert with_opt[0].endswith("OPTIONS:\n- negative\n- positive")
    assert "OPTIONS" not in without[0] and without[1] == "positive"


def test_cli_register_and_mix(tmp_path, capsys):
    import argparse

    from workbench.cli.instruct import register

    parser = argparse.ArgumentParser(prog="workbench")
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["instruct", "mix", "--tasks", "sst2,trec,rte", "--holdout", "rte", "--cap", "30",
                              "--out", str(tmp_path / "cli"), "--no-mlflow"])
    assert args.func(args) == 0
    assert "sst2" in capsys.readouterr().out
    tasks = {json.loads(line)["task"] for line in (tmp_path / "cli" / "mixture.jsonl").read_text().splitlines()}
    assert tasks == {"sst2", "trec"}
    bad = parser.parse_args(["instruct", "self-instruct", "--seeds", str(tmp_path / "missing.jsonl"),
                             "--out", str(tmp_path / "si.jsonl"), "--no-mlflow"])
    with pytest.raises(ConfigError, match="seed file not found"):
        bad.func(bad)  # fails before any model is loaded


def _records_file(path: Path) -> Path:
    rows = [{"instruction": "Add 2 and 3.", "input": "", "output": "Let's think step by step. 2 + 3 = 5. The answer is 5."},
            {"instruction": "Classify the review.", "instances": [{"input": "a fine film", "output": "positive"},
                                                                 {"input": "dull", "output": "negative"}]},
            {"instruction": "Name a colour.", "input": "", "output": "blue"}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_instruction_records_join_the_mixture_as_a_task_of_their_own(tmp_path):
    recs = _records_file(tmp_path / "cot_demos.jsonl")
    mix = build_mixture(MixConfig(tasks=("sst2",), records=(str(recs),), cap=3, out=str(tmp_path / "m"),
                                  log_mlflow=False))
    assert mix.counts == {"sst2": 3, "cot_demos": 3}  # named after the file; capped like any task (4 records)
    mine = [r for r in mix.records if r["task"] == "cot_demos"]
    assert all(r["shots"] == 0 and r["format"] == "zs-noopt" for r in mine)  # used as written
    by_input = {r["inputs"]: r["targets"] for r in mine}
    assert set(by_input) <= {"Add 2 and 3.", "Classify the review.\n\na fine film", "Classify the review.\n\ndull",
                             "Name a colour."}
    assert "Classify the review.\n\ndull" not in by_input or by_input["Classify the review.\n\ndull"] == "negative"
    # NAME=PATH names the task; holding it out removes it
    named = MixConfig(tasks=("sst2",), records=(f"arith={recs}",), holdout=("arith",), out=str(tmp_path / "n"),
                      log_mlflow=False)
    assert resolve_tasks(named) == ["sst2"]


@pytest.mark.parametrize("line, message", [
    ('{"instruction": "x"}', "line 2: field 'output' is missing or empty"),
    ('{"instruction": "", "output": "y"}', "line 2: field 'instruction' is missing or empty"),
    ('{"instruction": "x", "instances": []}', "line 2: field 'instances' must be a non-empty list"),
    ("not json", "line 2: not valid JSON"),
])
def test_a_bad_instruction_record_is_named_by_file_and_line(tmp_path, line, message):
    path = tmp_path / "recs.jsonl"
    path.write_text('{"instruction": "ok", "output": "fine"}\n' + line + "\n")
    with pytest.raises(ConfigError, match=message) as e:
        build_mixture(MixConfig(tasks=("sst2",), records=(str(path),), out=str(tmp_path / "m"), log_mlflow=False))
    assert str(path) in str(e.value)
    assert not (tmp_path / "m" / "mixture.jsonl").exists()


def test_records_named_like_a_builtin_task_are_refused(tmp_path):
    recs = _records_file(tmp_path / "sst2.jsonl")
    with pytest.raises(ConfigError, match="'sst2' is also a built-in task's name"):
        build_mixture(MixConfig(tasks=("trec",), records=(str(recs),), out=str(tmp_path / "m"), log_mlflow=False))
