"""Instruction tuning end to end on tiny models: the data read in every layout, bad data refused before training
(naming the file and record), held-out templates kept out of training and used by evaluation, tune -> eval with
its MLflow runs, the flan loop's nested runs, and the CLI's refusals."""

from __future__ import annotations

import copy
import json
import math
import os
from pathlib import Path

import pytest
import torch
from bad_inputs import Case, run_case
from conftest import _byte_bpe_tokenizer, no_runs_in_store

from workbench.config import TrackingConfig, TrainConfig
from workbench.errors import ConfigError
from workbench.instruct.mix import MixConfig, build_mixture
from workbench.instruct.templates import default_templates_dir, load_template_set
from workbench.instruct.tuning_data import read_tuning_data
from workbench.recipes.instruct import (
    EVAL_KIND,
    FLAN_KIND,
    RUN_KIND,
    FlanConfig,
    TuneConfig,
    ZeroShotConfig,
    evaluate_zero_shot,
    flan,
    tune,
)

DATA = Path(os.environ.get("WORKBENCH_DATA_DIR", Path(__file__).resolve().parents[2] / "shared" / "data"))
needs_data = pytest.mark.skipif(not DATA.exists(), reason="needs WORKBENCH_DATA_DIR (../shared/data)")

QUICK = {"max_steps": 2, "batch_size": 4, "eval_every": 2}  # a few optimizer steps: plumbing, not accuracy


def _tiny_llama(max_positions: int = 4096):
    """A tiny random Llama with a long context (mixture records run to ~1,000 byte-BPE tokens)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from workbench.models import Backbone

    tok = _byte_bpe_tokenizer()
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                      num_key_value_heads=2, intermediate_size=64, max_position_embeddings=max_positions,
                      tie_word_embeddings=True, pad_token_id=tok.pad_token_id)
    return Backbone.from_model(LlamaForCausalLM(cfg).eval(), tok, name="tiny-llama-long")


@pytest.fixture(scope="module")
def tiny_long():
    return _tiny_llama()


@pytest.fixture()
def tiny(tiny_long):
    """A copy of the tiny model for one test: tuning changes the weights it is given."""
    return copy.deepcopy(tiny_long)


@pytest.fixture(scope="module")
def mix0(tmp_path_factory):
    """sst2 + trec, every template used (holdout_templates=0)."""
    out = tmp_path_factory.mktemp("mix0") / "mix"
    build_mixture(MixConfig(tasks=("sst2", "trec"), cap=20, out=str(out), log_mlflow=False))
    return out


@pytest.fixture(scope="module")
def mix2(tmp_path_factory):
    """sst2 + trec with rte held out and the last 2 plain templates of each task kept back."""
    out = tmp_path_factory.mktemp("mix2") / "mix"
    build_mixture(MixConfig(tasks=("sst2", "trec", "rte"), holdout=("rte",), cap=20, holdout_templates=2,
                            out=str(out), log_mlflow=False))
    return out


def _jsonl(path: Path, rows) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _content(data):
    return [(r.prompt, r.response, r.task, r.template_id) for r in data.records]


def _runs():
    import mlflow

    return mlflow.search_runs(search_all_experiments=True, output_format="list")


def _artifacts(run_id: str, path: str | None = None) -> list[str]:
    import mlflow

    return [a.path for a in mlflow.MlflowClient().list_artifacts(run_id, path)]


def _plain_templates(task: str) -> list[str]:
    tset = load_template_set(default_templates_dir() / f"{task}.yaml")
    return [f"{task}:{t.template_id}" for t in tset.templates if not t.turned_around]


# ---- 1. reading every layout -----------------------------------------------------------------------------------

@needs_data
def test_mixture_reads_the_same_through_folder_jsonl_and_hf(mix0):
    lines = [json.loads(x) for x in (mix0 / "mixture.jsonl").read_text(encoding="utf-8").splitlines()]
    folder, jsonl, hf = (read_tuning_data(p) for p in (mix0, mix0 / "mixture.jsonl", mix0 / "hf"))
    assert (folder.layout, jsonl.layout, hf.layout) == ("mixture", "mixture", "hf")
    expected = [(r["inputs"], r["targets"], r["task"], r["template_id"]) for r in lines]
    assert len(expected) == 40
    assert _content(folder) == _content(jsonl) == _content(hf) == expected
    assert folder.records[4].where == f"{mix0 / 'mixture.jsonl'}: line 5"
    assert hf.records[4].where == f"{mix0 / 'hf'}: record 4"
    # the summary beside the data is read whichever way in (hf/ looks one folder up)
    assert folder.summary["tasks"] == jsonl.summary["tasks"] == hf.summary["tasks"] == {"sst2": 20, "trec": 20}
    assert folder.task_counts() == {"sst2": 20, "trec": 20}
    assert set(folder.trained_templates()) == {"sst2", "trec"}


def test_alpaca_and_self_instruct_json_lines(tmp_path):
    alpaca = _jsonl(tmp_path / "alpaca.jsonl", [
        {"instruction": "Add the numbers.", "input": "2 and 3", "output": "5"},
        {"instruction": "Name a colour.", "input": "", "output": "Blue"},
        {"instruction": "  Say hi.  ", "output": "  Hi!  "},  # no input field; whitespace stripped
    ])
    data = read_tuning_data(alpaca)
    assert data.layout == "records"
    assert [(r.prompt, r.response) for r in data.records] == [
        ("Add the numbers.\n\n2 and 3", "5"), ("Name a colour.", "Blue"), ("Say hi.", "Hi!")]
    assert data.records[1].where == f"{alpaca}: line 2"
    assert data.trained_templates() == {} and data.task_counts() == {"records": 3}

    si = _jsonl(tmp_path / "si.jsonl", [
        {"id": "machine_0", "instruction": "Classify the sentiment.", "is_classification": True,
         "instances": [{"input": "I love it", "output": "positive"}, {"input": "Awful", "output": "negative"},
                       {"input": "Meh", "output": "neutral"}]},
        {"id": "machine_1", "instruction": "Write a haiku.", "instances": [{"input": "", "output": "An old pond."}]},
    ])
    data = read_tuning_data(si)
    assert [(r.prompt, r.response) for r in data.records] == [
        ("Classify the sentiment.\n\nI love it", "positive"), ("Classify the sentiment.\n\nAwful", "negative"),
        ("Classify the sentiment.\n\nMeh", "neutral"), ("Write a haiku.", "An old pond.")]
    assert data.records[2].where == f"{si}: line 1, instance 2"
    assert data.records[3].where == f"{si}: line 2, instance 0"


def test_alpaca_json_array_and_hf_datasets(tmp_path):
    import datasets

    rows = [{"instruction": "Translate to French.", "input": "cat", "output": "chat"},
            {"instruction": "Give a synonym of big.", "input": "", "output": "large"}]
    arr = tmp_path / "alpaca_data.json"
    arr.write_text(json.dumps(rows, indent=2), encoding="utf-8")
    data = read_tuning_data(arr)
    want = [("Translate to French.\n\ncat", "chat"), ("Give a synonym of big.", "large")]
    assert data.layout == "records" and [(r.prompt, r.response) for r in data.records] == want
    assert data.records[1].where == f"{arr}: record 1"

    ds = datasets.Dataset.from_list(rows)
    ds.save_to_disk(str(tmp_path / "hf_ds"))
    data = read_tuning_data(tmp_path / "hf_ds")
    assert data.layout == "hf" and [(r.prompt, r.response) for r in data.records] == want
    assert data.records[0].where == f"{tmp_path / 'hf_ds'}: record 0"
    # a DatasetDict: its train split
    datasets.DatasetDict({"train": ds, "test": ds.select([0])}).save_to_disk(str(tmp_path / "hf_dict"))
    assert [(r.prompt, r.response) for r in read_tuning_data(tmp_path / "hf_dict").records] == want


# ---- 2. self-instruct output tunes as it is -------------------------------------------------------------------

def _self_instruct_file(path: Path, n: int = 200) -> Path:
    """Records laid out as `workbench instruct self-instruct` writes them (SelfInstruct._finish)."""
    rows = []
    for i in range(n):
        classify = i % 3 == 0
        instances = ([{"input": f"the movie was {'great' if i % 2 else 'dull'}", "output": "good" if i % 2 else "bad"}]
                     if classify else
                     [{"input": "", "output": f"it was a fun story {i}"},
                      {"input": f"about {i}", "output": f"the plot of {i} is good"}][: 1 + i % 2])
        rows.append({"id": f"machine_{i}", "instruction": f"Task {i}: say something about a film.",
                     "instances": instances, "is_classification": classify, "most_similar": {"seed_1": 0.3},
                     "max_similarity": 0.3, "request_idx": i // 8, "style": "self-instruct", "generator": "fake"})
    return _jsonl(path, rows)


def test_self_instruct_output_tunes_with_no_conversion(tmp_path, tiny):
    from workbench.instruct.self_instruct import read_records

    path = _self_instruct_file(tmp_path / "machine_generated.jsonl")
    assert len(read_records(path, repair=False)) == 200  # the layout is the generator's own (its reader accepts it)
    n_instances = sum(len(json.loads(x)["instances"]) for x in path.read_text().splitlines())
    before = {k: v.clone() for k, v in tiny.model.state_dict().items()}

    result = tune(TuneConfig(data=str(path), method="lora", max_length=128, dev_size=8,
                             train=TrainConfig(**QUICK), tracking=TrackingConfig(progress=False)), backbone=tiny)

    assert result.train_records + result.dev_records == n_instances and result.dev_records == 8
    assert result.too_long == 0 and result.steps == 2
    assert math.isfinite(result.dev_loss) and result.dev_loss > 0
    assert result.trained_templates == {}
    assert 0 < result.trainable_fraction < 1
    [run] = _runs()
    assert run.info.run_id == result.run_id and run.info.status == "FINISHED"
    assert run.data.tags["kind"] == RUN_KIND and run.data.tags["method"] == "lora"
    assert math.isclose(run.data.metrics["eval/best_loss"], result.dev_loss, rel_tol=1e-6)
    assert run.data.metrics["data/records"] == n_instances
    assert "method" in _artifacts(result.run_id) and _artifacts(result.run_id, "method")
    assert "trained_templates.json" in _artifacts(result.run_id)
    # LoRA trained adapters beside the frozen weights: the backbone's own weights are as they were
    assert all(torch.equal(before[k], v) for k, v in tiny.model.state_dict().items() if k in before)


# ---- 3. bad data refused before training -----------------------------------------------------------------------

GOOD = {"instruction": "Name a colour.", "input": "", "output": "Blue"}


def _bad_missing_output(tmp):
    p = _jsonl(tmp / "no_output.jsonl", [GOOD, GOOD, {"instruction": "Name a fruit.", "input": ""}])
    return TuneConfig(data=str(p)), [f"{p}: line 3", "'output'"]


def _bad_missing_instruction(tmp):
    p = _jsonl(tmp / "no_instruction.jsonl", [GOOD, {"input": "x", "output": "y"}])
    return TuneConfig(data=str(p)), [f"{p}: line 2", "'instruction'"]


def _bad_missing_output_in_json_array(tmp):
    p = tmp / "arr.json"
    p.write_text(json.dumps([GOOD, {"instruction": "Name a fruit.", "output": "  "}]), encoding="utf-8")
    return TuneConfig(data=str(p)), [f"{p}: record 1", "'output'"]


def _bad_empty_file(tmp):
    p = tmp / "empty.jsonl"
    p.write_bytes(b"")
    return TuneConfig(data=str(p)), [str(p), "no records"]


def _bad_blank_lines_only(tmp):
    p = tmp / "blank.jsonl"
    p.write_text("\n  \n\n", encoding="utf-8")
    return TuneConfig(data=str(p)), [str(p), "no records"]


def _bad_empty_hf(tmp):
    import datasets

    datasets.Dataset.from_dict({"instruction": [], "input": [], "output": []}).save_to_disk(str(tmp / "empty_hf"))
    return TuneConfig(data=str(tmp / "empty_hf")), [str(tmp / "empty_hf"), "no records"]


def _bad_empty_hf_train_split(tmp):
    import datasets

    empty = datasets.Dataset.from_dict({"instruction": [], "input": [], "output": []})
    datasets.DatasetDict({"train": empty}).save_to_disk(str(tmp / "empty_dict"))
    return TuneConfig(data=str(tmp / "empty_dict")), [str(tmp / "empty_dict"), "no records"]


def _bad_hf_record(tmp):
    import datasets

    datasets.Dataset.from_list([GOOD, {**GOOD, "output": ""}]).save_to_disk(str(tmp / "bad_hf"))
    return TuneConfig(data=str(tmp / "bad_hf")), [f"{tmp / 'bad_hf'}: record 1", "'output'"]


def _bad_response_too_long(tmp):
    long = " ".join(["the movie was great and the story fun"] * 12)
    p = _jsonl(tmp / "long.jsonl", [GOOD, GOOD, {"instruction": "Review it.", "input": "", "output": long}])
    return TuneConfig(data=str(p), max_length=16), [f"{p}: line 3", "longer than the context of 16", "--max-length"]


BAD = [_bad_missing_output, _bad_missing_instruction, _bad_missing_output_in_json_array, _bad_empty_file, _bad_blank_lines_only,
       _bad_empty_hf, _bad_empty_hf_train_split, _bad_hf_record, _bad_response_too_long]


class Started(AssertionError):
    pass


@pytest.fixture()
def no_training(monkeypatch):
    """Starting an MLflow run, building the method or training fails the test: bad data must be refused first."""
    import workbench.adaptation
    import workbench.tracking
    import workbench.training.trainer

    def refuse(what):
        def fail(*args, **kwargs):
            raise Started(f"{what} before the bad data was refused")
        return fail

    monkeypatch.setattr(workbench.tracking, "RunTracker", refuse("an MLflow run started"))
    monkeypatch.setattr(workbench.adaptation, "BuildContext", refuse("the method was built"))
    monkeypatch.setattr(workbench.training.trainer, "train", refuse("training started"))


def _assert_refused_before_training(cfg, backbone, expect, tmp_path):
    before = {k: v.clone() for k, v in backbone.model.state_dict().items()}
    cfg.tracking = TrackingConfig(progress=False)
    with pytest.raises(ConfigError) as e:
        tune(cfg, backbone=backbone)
    message = str(e.value)
    assert "\n" not in message
    for piece in expect:
        assert piece in message, f"{piece!r} not in {message!r}"
    assert no_runs_in_store(tmp_path)  # no run was started
    after = backbone.model.state_dict()
    assert set(after) == set(before) and all(torch.equal(before[k], after[k]) for k in before)
    return message


@pytest.mark.parametrize("make", BAD, ids=[f.__name__.removeprefix("_bad_") for f in BAD])
def test_bad_data_is_refused_before_training(make, tmp_path, tiny_long, no_training):
    cfg, expect = make(tmp_path)
    _assert_refused_before_training(cfg, tiny_long, expect, tmp_path)


@needs_data
def test_held_out_task_in_the_data_is_refused(mix0, tiny_long, tmp_path, no_training):
    lines = (mix0 / "mixture.jsonl").read_text(encoding="utf-8").splitlines()
    first_trec = next(no for no, x in enumerate(lines, 1) if json.loads(x)["task"] == "trec")
    cfg = TuneConfig(data=str(mix0), holdout="trec")
    message = _assert_refused_before_training(cfg, tiny_long, [f"{mix0 / 'mixture.jsonl'}: line {first_trec}:",
                                                               "'trec'", "--holdout"], tmp_path)
    assert "held out" in message
    # a cluster naming the task is refused the same way; an unrelated hold-out is not
    with pytest.raises(ConfigError, match=f"line {first_trec}: task 'trec'"):
        tune(TuneConfig(data=str(mix0), holdout="question_classification"), backbone=tiny_long)
    from workbench.recipes.instruct import check_holdout

    check_holdout(read_tuning_data(mix0), ("rte",))  # rte is not in it: no error
    with pytest.raises(ConfigError, match="'rtee' is neither a task nor a cluster"):  # a typo checks nothing
        check_holdout(read_tuning_data(mix0), ("rtee",))


# ---- 4. held-out templates -------------------------------------------------------------------------------------

@needs_data
def test_held_out_templates_are_never_trained_on_and_evaluation_uses_only_them(mix2):
    from workbench.instruct.zero_shot import eval_items

    records = [json.loads(x) for x in (mix2 / "mixture.jsonl").read_text(encoding="utf-8").splitlines()]
    data = read_tuning_data(mix2)
    trained = data.trained_templates()
    assert set(trained) == {"sst2", "trec"} and not any(r["task"] == "rte" for r in records)
    for task in ("sst2", "trec"):
        kept_back = set(_plain_templates(task)[-2:])
        used = {r["template_id"] for r in records if r["task"] == task}
        assert len(kept_back) == 2 and not used & kept_back, (task, used & kept_back)
        assert set(trained[task]) == used
        items = eval_items(task, 3, trained)
        assert {it.template_id for it in items} == kept_back  # only the unseen ones, every one of them
        assert len(items) == 3 * 2 and all(it.options for it in items)
    # rte was held out: every plain template is evaluated
    assert {it.template_id for it in eval_items("rte", 2, trained)} == set(_plain_templates("rte"))
    assert data.summary["holdout_templates"] == 2


@needs_data
def test_every_template_trained_refuses_evaluation(mix0):
    from workbench.instruct.zero_shot import eval_items

    trained = read_tuning_data(mix0).trained_templates()
    assert set(_plain_templates("sst2")) <= set(trained["sst2"])
    with pytest.raises(ConfigError, match="every template of sst2 was trained on.*--holdout-templates"):
        eval_items("sst2", 3, trained)
    assert eval_items("rte", 1, trained)  # a task not in the data is still evaluated


def test_holdout_templates_must_leave_a_template_to_train_on(tmp_path):
    with pytest.raises(ConfigError, match="--holdout-templates: 7 is not allowed"):
        build_mixture(MixConfig(tasks=("sst2",), holdout_templates=7, out=str(tmp_path / "m"), log_mlflow=False))


# ---- 5. tune -> eval -------------------------------------------------------------------------------------------

@needs_data
def test_tune_then_evaluate_zero_shot(mix2, tiny, tiny_long):
    import mlflow

    tuned = tune(TuneConfig(data=str(mix2), method="prompt-tuning", options={"num_virtual_tokens": 4},
                            max_length=256, dev_size=4, holdout="rte", train=TrainConfig(**QUICK),
                            tracking=TrackingConfig(progress=False)), backbone=tiny)
    assert math.isfinite(tuned.dev_loss) and tuned.steps == 2
    assert tuned.too_long > 0  # the long few-shot records do not fit in 256 - 4 tokens and are left out
    assert tuned.train_records + tuned.dev_records + tuned.too_long == 40
    assert set(tuned.trained_templates) == {"sst2", "trec"}

    fresh = copy.deepcopy(tiny_long)
    result = evaluate_zero_shot(ZeroShotConfig(run=tuned.run_id, tasks="rte,sst2", limit=3, progress=False),
                                backbone=fresh)
    assert [m.label for m in result.evaluated] == ["base", "tuned"]
    for m in result.evaluated:
        assert set(m.tasks) == {"rte", "sst2"}
        rte, sst2 = m.tasks["rte"], m.tasks["sst2"]
        assert set(rte.per_template) == set(_plain_templates("rte")) and rte.rows == 3
        assert set(sst2.per_template) == set(_plain_templates("sst2")[-2:])  # the templates tuning never saw
        assert 0 <= rte.accuracy <= 1 and len(rte.predictions) == 3 * len(rte.per_template)
    assert result.table().splitlines()[0].split() == ["task", "base", "tuned"]

    runs = {r.info.run_id: r for r in _runs()}
    evals = [r for r in runs.values() if r.data.tags.get("kind") == EVAL_KIND]
    assert len(evals) == 2 and len(runs) == 3  # the tuning run and the two evaluations
    by_label = {r.data.tags["evaluated"]: r for r in evals}
    assert by_label["tuned"].info.run_id == result.evaluated[1].run_id
    assert by_label["tuned"].data.tags["tune_run_id"] == tuned.run_id
    assert by_label["tuned"].data.tags["method"] == "prompt-tuning"
    for label, run in by_label.items():
        assert run.data.metrics["zeroshot/rte/accuracy"] == pytest.approx(
            {m.label: m for m in result.evaluated}[label].tasks["rte"].accuracy)
        assert {"predictions/rte.json", "predictions/sst2.json"} <= set(_artifacts(run.info.run_id, "predictions"))
    local = mlflow.artifacts.download_artifacts(run_id=by_label["tuned"].info.run_id,
                                                artifact_path="predictions/rte.json")
    predictions = json.loads(Path(local).read_text())
    assert predictions == result.evaluated[1].tasks["rte"].predictions


def test_evaluating_a_run_that_is_not_a_tuning_run_is_refused(tiny_long):
    from workbench.errors import WorkbenchError
    from workbench.tracking import RunTracker

    with RunTracker("instruct", "something else") as other:
        pass
    with pytest.raises(WorkbenchError, match=f"--run {other.run_id}: not an `instruct tune` run"):
        evaluate_zero_shot(ZeroShotConfig(run=other.run_id, tasks="rte", limit=1, progress=False), backbone=tiny_long)


# ---- 6. the flan loop ------------------------------------------------------------------------------------------

@needs_data
def test_flan_nests_mix_tune_and_evaluations_under_one_parent(tmp_path, tiny):
    result = flan(FlanConfig(holdout="rte", tasks="sst2,rte", cap=20, limit=2, max_length=256,
                             out=str(tmp_path / "flan_mix"), options={"r": 2},
                             train=TrainConfig(**QUICK), tracking=TrackingConfig(progress=False)), backbone=tiny)

    runs = {r.info.run_id: r for r in _runs()}
    parent = runs[result.run_id]
    assert parent.data.tags["kind"] == FLAN_KIND and "mlflow.parentRunId" not in parent.data.tags
    assert parent.data.tags["tune_run_id"] == result.tune.run_id
    children = [r for r in runs.values() if r.data.tags.get("mlflow.parentRunId") == result.run_id]
    assert len(children) == len(runs) - 1 == 4  # every other run is a child: mix, tune, base and tuned evaluations
    kinds = sorted(r.data.tags.get("kind", r.info.run_name) for r in children)
    assert kinds == sorted([EVAL_KIND, EVAL_KIND, RUN_KIND, "mix"])
    assert {r.info.run_id for r in children} >= {result.tune.run_id, *(m.run_id for m in result.evaluation.evaluated)}
    # the mixture left rte out; the evaluation asked rte (held out) and sst2 (on its unseen templates)
    mixed = read_tuning_data(tmp_path / "flan_mix")
    assert mixed.task_counts() == {"sst2": 20}
    for m in result.evaluation.evaluated:
        assert set(m.tasks) == {"rte", "sst2"}
        assert set(m.tasks["sst2"].per_template) == set(_plain_templates("sst2")[-2:])
    assert {"base/rte/accuracy", "tuned/rte/accuracy", "tuned/sst2/accuracy"} <= set(parent.data.metrics)
    assert "zeroshot_table.json" in _artifacts(result.run_id)


# ---- 7. the command line ---------------------------------------------------------------------------------------

CLI = [
    Case("tune-data-missing", ["instruct", "tune", "--data", "missing.jsonl"], "--data missing.jsonl: no such file"),
    Case("tune-method-cannot-generate", ["instruct", "tune", "--method", "p-tuning", "--data", "d.jsonl"],
         ["--method", "'p-tuning' cannot instruction-tune", "lora", "prompt-tuning", "full"],
         files={"d.jsonl": json.dumps(GOOD) + "\n"}),
    Case("tune-bad-record", ["instruct", "tune", "--data", "d.jsonl"], ["d.jsonl: line 2", "'output'"],
         files={"d.jsonl": json.dumps(GOOD) + "\n" + json.dumps({"instruction": "x"}) + "\n"}),
    Case("tune-bad-option", ["instruct", "tune", "--data", "d.jsonl", "--option", "r"], ["--option", "NAME=VALUE"],
         files={"d.jsonl": json.dumps(GOOD) + "\n"}),
    Case("eval-neither-run-nor-model", ["instruct", "eval"], ["--run", "--model"]),
    Case("eval-both-run-and-model", ["instruct", "eval", "--run", "abc", "--model", "x"], ["--run", "--model"]),
    Case("flan-holdout-missing", ["instruct", "flan"], ["--holdout", "required"]),
]


@pytest.mark.parametrize("case", [c.param() for c in CLI])
def test_cli_refuses_in_one_line(case, tmp_path, monkeypatch, capsys):
    run_case(case, tmp_path, monkeypatch, capsys)
