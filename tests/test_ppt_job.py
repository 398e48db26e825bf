"""PPT as a job (workbench/recipes/ppt.py) on the tiny causal LM: pre-training lowers its loss and leaves a prompt
artifact (folder and MLflow run), a stopped job resumes to the same prompt, the prompt round-trips into prompt
tuning and P-tuning (by folder and by run id), a downstream task is cast into the prompt's format, and a prompt
that does not fit the model or the token count is refused before any weights load.

Budgets are tiny (tens of examples, a few steps): this checks plumbing and the loss going down, not accuracy.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

import mlflow
import pytest
import torch
from bad_inputs import Case, run_case

TOPICS = ["movie", "film", "story", "plot", "actors", "fun"]
ADJ = ["great", "terrible", "good", "bad", "dull", "funny", "boring", "very fun"]


def corpus_text(docs: int = 6, sentences: int = 7) -> str:
    """Documents under top-level headings, each of `sentences` distinct sentences of 6+ words."""
    out = []
    for d in range(docs):
        out.append(f" = Part {d} = \n")
        body = [f"The {TOPICS[(d + i) % len(TOPICS)]} in this one was {ADJ[(d * 3 + i) % len(ADJ)]} and "
                f"{ADJ[(d + 2 * i) % len(ADJ)]} for {'a ' * (i % 3)}while." for i in range(sentences)]
        out.append(" ".join(body) + "\n\n")
    return "".join(out)


@pytest.fixture()
def tiny_causal_dir(tmp_path, tiny_causal) -> Path:
    folder = tmp_path / "tiny-llama"
    tiny_causal.model.save_pretrained(folder)
    tiny_causal.tokenizer.save_pretrained(folder)
    return folder


def pretrain_cfg(tmp_path, model: Path, **over):
    from workbench.recipes.ppt import PretrainConfig

    corpus = tmp_path / "corpus.txt"
    if not corpus.exists():
        corpus.write_text(corpus_text())
    values = dict(corpus=str(corpus), out=str(tmp_path / "prompt"), model=str(model), format="nsp",
                  prompt_tokens=4, steps=12, batch_size=64, lr=0.1, warmup_ratio=0.0, examples=40, heldout=8,
                  eval_every=4, checkpoint_every=4, progress=False)
    return PretrainConfig(**{**values, **over})


def losses(run_id: str) -> list[float]:
    history = mlflow.MlflowClient().get_metric_history(run_id, "train/loss")
    return [m.value for m in sorted(history, key=lambda m: m.step)]


def test_pretrain_lowers_loss_and_leaves_artifact(tmp_path, tiny_causal_dir):
    from workbench.ppt.artifact import ARTIFACT_DIR, read_prompt
    from workbench.recipes.ppt import pretrain_prompt

    result = pretrain_prompt(pretrain_cfg(tmp_path, tiny_causal_dir))
    curve = losses(result.run_id)
    # Every step sees the same full batch (32 examples, batch 64), so the loss must fall at every step, not wander. A
    # tiny random model's answer barely depends on its input (near-uniform logits: the loss starts at about ln 3),
    # so the fall is small, but a prompt that did not reach the model would leave the loss exactly where it was.
    assert len(curve) == 12 and all(b <= a + 1e-6 for a, b in zip(curve, curve[1:])), curve
    assert curve[-1] < curve[0] - 2e-3, curve
    art = read_prompt(result.out, "test")
    assert art.format == "nsp" and art.tokens == 4 and art.meta["hidden_size"] == 32
    assert art.meta["identity"]["name"] == str(tiny_causal_dir)
    assert art.meta["words"] == ["yes", "maybe", "no"] and "Answer:" in art.meta["template"]
    assert art.tensor().shape == (4, 32)
    run = mlflow.get_run(result.run_id)
    assert run.data.tags["kind"] == "ppt-pretrain" and run.data.params["ppt.format"] == "nsp"
    logged = {Path(a.path).name for a in mlflow.MlflowClient().list_artifacts(result.run_id, ARTIFACT_DIR)}
    assert logged == {"prompt.safetensors", "ppt.json"}
    assert result.examples_per_s > 0 and not (result.out / "checkpoint.pt").exists()
    # the same command again finds the finished prompt and does nothing
    again = pretrain_prompt(pretrain_cfg(tmp_path, tiny_causal_dir))
    assert again.run_id == result.run_id and torch.equal(read_prompt(again.out, "t").tensor(), art.tensor())


def test_stopped_pretrain_resumes_to_the_same_prompt(tmp_path, tiny_causal_dir, monkeypatch):
    import workbench.training
    from workbench.ppt.artifact import read_prompt
    from workbench.recipes.ppt import pretrain_prompt

    whole = pretrain_prompt(pretrain_cfg(tmp_path, tiny_causal_dir, out=str(tmp_path / "whole"), batch_size=8))
    real_train = workbench.training.train

    def stop_at_step_6(*args, on_log=None, **kw):
        def log(step, metrics):
            on_log(step, metrics)
            if step == 6:
                raise KeyboardInterrupt
        return real_train(*args, on_log=log, **kw)

    monkeypatch.setattr(workbench.training, "train", stop_at_step_6)
    cfg = pretrain_cfg(tmp_path, tiny_causal_dir, out=str(tmp_path / "stopped"), batch_size=8)
    with pytest.raises(KeyboardInterrupt):
        pretrain_prompt(cfg)
    state = json.loads((tmp_path / "stopped" / "state.json").read_text())
    assert (tmp_path / "stopped" / "checkpoint.pt").exists() and not state.get("done")
    examples_before = (tmp_path / "stopped" / "examples.jsonl").read_text()
    monkeypatch.setattr(workbench.training, "train", real_train)
    resumed = pretrain_prompt(cfg)
    assert resumed.resumed_from == 4  # the last checkpoint before the stop
    assert resumed.run_id == state["run_id"]  # the same MLflow run goes on
    assert (tmp_path / "stopped" / "examples.jsonl").read_text() == examples_before
    assert torch.equal(read_prompt(resumed.out, "t").tensor(), read_prompt(whole.out, "t").tensor())
    # steps 5 and 6 ran twice (after the checkpoint at 4, before the stop): logged twice, with the same values
    assert sorted(set(losses(resumed.run_id))) == pytest.approx(sorted(losses(whole.run_id)))


def test_folder_started_with_other_settings_is_refused(tmp_path, tiny_causal_dir):
    from workbench.errors import ConfigError
    from workbench.recipes.ppt import pretrain_prompt

    pretrain_prompt(pretrain_cfg(tmp_path, tiny_causal_dir, steps=2))
    with pytest.raises(ConfigError, match="started with --prompt-tokens 4, not 5") as e:
        pretrain_prompt(pretrain_cfg(tmp_path, tiny_causal_dir, steps=2, prompt_tokens=5))
    assert e.value.field == "ppt.prompt_tokens"


# ---- downstream: init=ppt:... ------------------------------------------------------------------------------------

TASK = ("name: tinyppt\nfiles: {train: train.tsv, test: test.tsv}\ntext_fields: [text]\nlabel_names: [neg, pos]\n"
        "templates: tpl.txt\nverbalizer: v.txt\n")
PAIR_TASK = TASK.replace("tinyppt", "tinypair").replace("[text]", "[text, other]")


def write_task(folder: Path, pair: bool = False) -> Path:
    header = "text\tother\tlabel\n" if pair else "text\tlabel\n"
    for name, noun in (("train.tsv", "movie"), ("test.tsv", "film")):  # test rows of their own (no leakage)
        rows = [(f"the {noun} was {a}", f"it was {b}", ("neg", "pos")[i % 2]) for i, (a, b) in
                enumerate(zip(["bad", "great", "dull", "fun", "boring", "good"] * 3, ADJ * 3))]
        lines = "".join((f"{a}\t{b}\t{y}\n" if pair else f"{a}\t{y}\n") for a, b, y in rows)
        (folder / name).write_text(header + lines)
    (folder / "tpl.txt").write_text('{"placeholder": "text_a"} Overall {"mask"}\n')
    (folder / "v.txt").write_text("bad\ngreat\n")
    (folder / "task.yaml").write_text(PAIR_TASK if pair else TASK)
    return folder / "task.yaml"


def run_cfg(task: Path, model: Path, method: dict, **over):
    import workbench as wb

    # the tiny byte-level vocabulary spells " yes" and " A" in several tokens: score them by the first
    prompt = {"multi_token": "first", **over.pop("prompt", {})}
    tracking = {"save": "never", "progress": False, **over.pop("tracking", {})}
    return wb.RunConfig(task=str(task), model=str(model), shots=2, seed=1, method=method, prompt=prompt,
                        train={"max_steps": 2, "eval_every": 1}, eval={"limit": 4}, tracking=tracking, **over)


def test_pretrained_prompt_round_trips_into_prompt_tuning_and_p_tuning(tmp_path, tiny_causal_dir):
    from workbench.ppt.artifact import read_prompt
    from workbench.recipes.ppt import pretrain_prompt
    from workbench.runs import prepare

    result = pretrain_prompt(pretrain_cfg(tmp_path, tiny_causal_dir, format="unified", steps=2, examples=30))
    saved = read_prompt(result.out, "t").tensor()
    task = write_task(tmp_path)
    for init in (f"ppt:{result.out}", f"ppt:{result.run_id}"):
        p = prepare(run_cfg(task, tiny_causal_dir, {"name": "prompt-tuning", "init": init, "num_virtual_tokens": 4}))
        assert torch.equal(p.model.input_transform.prompt.detach().cpu(), saved)
        # the task is read in the unified multiple-choice format: options from its label words, letters as answers
        assert [s.value for s in p.template.segments if s.kind == "text"][1] == "A. bad\nB. great"
        assert p.verbalizer.words == (("A",), ("B",))
    # cast: false keeps the task's own template and words
    p = prepare(run_cfg(task, tiny_causal_dir, {"name": "prompt-tuning", "init": f"ppt:{result.out}",
                                                 "num_virtual_tokens": 4, "cast": False}))
    assert p.verbalizer.words == (("bad",), ("great",)) and "Overall" in p.template.text
    # P-tuning: one pre-trained vector per {"soft"} slot, in order, with no prompt encoder in between
    tpl = tmp_path / "soft.txt"
    tpl.write_text('{"placeholder": "text_a"} {"soft"} {"soft"} {"soft"} {"soft"} {"mask"}\n')
    p = prepare(run_cfg(task, tiny_causal_dir, {"name": "p-tuning", "init": f"ppt:{result.out}",
                                                 "prompt_encoder": "none"}, prompt={"template": str(tpl)}))
    assert torch.equal(p.model.input_transform.prompts().detach().cpu(), saved)


def test_prompt_tuning_from_ppt_trains_and_casts_pairs(tmp_path, tiny_causal_dir):
    import workbench as wb
    from workbench.recipes.ppt import pretrain_prompt

    result = pretrain_prompt(pretrain_cfg(tmp_path, tiny_causal_dir, steps=2))  # nsp: sentence pairs
    run = wb.train(run_cfg(write_task(tmp_path, pair=True), tiny_causal_dir,
                           {"name": "prompt-tuning", "init": f"ppt:{result.out}", "num_virtual_tokens": 4}))
    params = mlflow.get_run(run.run_id).data.params
    assert params["method.init"] == f"ppt:{result.out}"
    assert ast.literal_eval(params["runtime.label_words"]) == [["yes"], ["no"]]
    assert run.steps == 2
    with pytest.raises(wb.ConfigError, match="needs a sentence-pair task"):
        wb.train(run_cfg(write_task(tmp_path), tiny_causal_dir,
                         {"name": "prompt-tuning", "init": f"ppt:{result.out}", "num_virtual_tokens": 4}))


# ---- bad input: refused in one line, before any weights load ------------------------------------------------------

BERT_CONFIG = json.dumps({"architectures": ["BertForMaskedLM"], "model_type": "bert", "vocab_size": 100,
                          "hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
                          "intermediate_size": 64, "max_position_embeddings": 64})


def ppt_json(identity: dict, tokens: int = 100) -> str:
    return json.dumps({"model": identity.get("name", "m"), "identity": identity, "format": "cls",
                       "prompt_tokens": tokens, "hidden_size": 32})


PRETRAIN = ["ppt", "pretrain", "--out", "{tmp}/p", "--no-progress"]
TRAIN = ["train", "--task", "sst2", "--method", "prompt-tuning", "--model", "m", "--max-steps", "1"]
SHORT_DOCS = "".join(f" = D{d} = \nOne two three four five six. Seven eight nine ten eleven twelve.\n\n"
                     for d in range(4))
CASES = [
    Case("empty-corpus", [*PRETRAIN, "--corpus", "empty.txt"], ["empty.txt", "no text found"], {"empty.txt": "\n\n"}),
    Case("corpus-missing", [*PRETRAIN, "--corpus", "nope.txt"], ["--corpus", "nope.txt"]),
    Case("corpus-folder-without-text", [*PRETRAIN, "--corpus", "d"], ["no .txt"], {"d/x.csv": "a,b\n"}),
    Case("corpus-jsonl-no-field", [*PRETRAIN, "--corpus", "c.jsonl"], ["c.jsonl: line 2", "'text'"],
         {"c.jsonl": '{"text": "A b c d e."}\n{"body": "x"}\n'}),
    Case("docs-too-short-nsp", [*PRETRAIN, "--corpus", "short.txt", "--format", "nsp"],
         ["short.txt", "'nsp'", "--format cls"], {"short.txt": SHORT_DOCS}),
    Case("docs-too-short-unified", [*PRETRAIN, "--corpus", "short.txt", "--format", "unified"],
         ["short.txt", "'unified'"], {"short.txt": SHORT_DOCS}),
    Case("no-corpus", ["ppt", "pretrain", "--out", "p"], "ppt.corpus (--corpus): required"),
    Case("prompt-tokens-zero", [*PRETRAIN, "--corpus", "c.txt", "--prompt-tokens", "0"],
         "ppt.prompt_tokens (--prompt-tokens): 0 is not allowed", {"c.txt": "x"}),
    Case("format-unknown", [*PRETRAIN, "--corpus", "c.txt", "--format", "qa"], ["--format", "'qa'"], {"c.txt": "x"}),
    Case("labeler-not-run", [*PRETRAIN, "--corpus", "c.txt", "--labeler", "roberta"], ["--labeler", "'roberta'"],
         {"c.txt": "x"}),
    Case("heldout-too-large", [*PRETRAIN, "--corpus", "c.txt", "--examples", "10", "--heldout", "10"],
         ["--heldout", "--examples"], {"c.txt": "x"}),
    Case("out-is-file", ["ppt", "pretrain", "--corpus", "c.txt", "--out", "c.txt"], ["--out", "is a file"],
         {"c.txt": "x"}),
    Case("init-ppt-other-model", [*TRAIN, "--option", "init=ppt:art"],
         ["pre-trained on gemma3-270m (sha256 aaaaaaaaaaaa...)", "this run uses m", "--model m"],
         {"m/config.json": BERT_CONFIG, "art/prompt.safetensors": "x",
          "art/ppt.json": ppt_json({"name": "gemma3-270m", "sha256": "a" * 64})}),
    Case("init-ppt-token-count", [*TRAIN, "--option", "init=ppt:art"],
         ["num_virtual_tokens", "20 tokens", "has 100", "num_virtual_tokens=100"],
         {"m/config.json": BERT_CONFIG, "art/prompt.safetensors": "x", "art/ppt.json": ppt_json({"name": "m"})}),
    Case("init-ppt-not-artifact", [*TRAIN, "--option", "init=ppt:art"], ["art", "ppt.json"],
         {"m/config.json": BERT_CONFIG, "art/readme.txt": "x"}),
    Case("init-ppt-missing", [*TRAIN, "--option", "init=ppt:nowhere"], ["nowhere", "not an MLflow run id"],
         {"m/config.json": BERT_CONFIG}),
    Case("init-unknown", [*TRAIN, "--option", "init=glove"], ["method.init", "'glove'", "ppt:DIR_OR_RUN_ID"],
         {"m/config.json": BERT_CONFIG}),
    Case("init-ppt-linear-head", [*TRAIN, "--option", "init=ppt:art", "--head", "linear"], ["method.head", "verbalizer"],
         {"m/config.json": BERT_CONFIG}),
    Case("p-tuning-ppt-slot-count", [*TRAIN[:4], "p-tuning", *TRAIN[5:], "--option", "init=ppt:art", "--option",
                                      "prompt_encoder=none", "--template-file", "t.txt"],
         ["t.txt:1", '2 {{"soft"}} slots', "100 vectors"],
         {"m/config.json": BERT_CONFIG, "art/prompt.safetensors": "x", "art/ppt.json": ppt_json({"name": "m"}),
          "t.txt": '{"placeholder": "text_a"} {"soft"} {"soft"} {"mask"}\n'}),
    Case("p-tuning-ppt-with-encoder", [*TRAIN[:4], "p-tuning", *TRAIN[5:], "--option", "init=ppt:art"],
         ["prompt_encoder", "none"], {"m/config.json": BERT_CONFIG}),
]


@pytest.mark.parametrize("case", [c.param() for c in CASES])
def test_bad_input(case, tmp_path, monkeypatch, capsys):
    run_case(case, tmp_path, monkeypatch, capsys)


def test_cls_pseudo_labels_from_a_classifier_run(tmp_path, tiny_causal_dir):
    """--labeler RUN_ID: every sentence gets the classifier's own prediction (at min_confidence 0); a classifier of
    another shape is refused before the model loads."""
    import workbench as wb
    from workbench.data import Example
    from workbench.recipes.ppt import pretrain_prompt
    from workbench.runs.saved import fetch_run, rebuild
    from workbench.training import predict

    five = tmp_path / "five"
    five.mkdir()
    (five / "train.tsv").write_text("text\tlabel\n" + "".join(f"the {t} was {a}\t{c}\n" for c, a in enumerate(
        ["terrible", "bad", "dull", "good", "great"]) for t in TOPICS))
    (five / "test.tsv").write_text("text\tlabel\n" + "".join(f"a {t} that was {a}\t{c}\n" for c, a in enumerate(
        ["terrible", "bad", "dull", "good", "great"]) for t in TOPICS))
    (five / "task.yaml").write_text("name: five\nfiles: {train: train.tsv, test: test.tsv}\ntext_fields: [text]\n"
                                    "label_names: ['0', '1', '2', '3', '4']\n")
    (five / "tpl.txt").write_text('{"placeholder": "text_a"} It was {"mask"}.\n')
    (five / "v.txt").write_text("terrible\nbad\ndull\ngood\ngreat\n")
    run = wb.train(run_cfg(five / "task.yaml", tiny_causal_dir, {"name": "prompt-tuning", "num_virtual_tokens": 2},
                           prompt={"template": str(five / "tpl.txt"), "verbalizer": str(five / "v.txt")},
                           tracking={"save": "always", "progress": False}))
    result = pretrain_prompt(pretrain_cfg(tmp_path, tiny_causal_dir, format="cls", labeler=run.run_id,
                                          min_confidence=0.0, steps=1))
    assert run.run_id in result.labels["rule"]
    rows = [json.loads(line) for line in (result.out / "examples.jsonl").read_text().splitlines()]
    assert sum(result.labels["kept"].values()) == len(rows) == 40
    prepared = rebuild(fetch_run(run.run_id, None, tmp_path / "run"))
    enc = [prepared.encoder.encode(Example(r["guid"], {"text": r["fields"]["text_a"]}, 0)) for r in rows]
    scores = predict(prepared.model, enc, prepared.encoder.tokenizer.pad_token_id)
    assert [r["label"] for r in rows] == scores.argmax(-1).tolist()

    two = wb.train(run_cfg(write_task(tmp_path), tiny_causal_dir, {"name": "prompt-tuning", "num_virtual_tokens": 2},
                           tracking={"save": "always", "progress": False}))
    with pytest.raises(wb.ConfigError, match="needs a single-sentence classifier with 5 classes"):
        pretrain_prompt(pretrain_cfg(tmp_path, tiny_causal_dir, format="cls", labeler=two.run_id,
                                     out=str(tmp_path / "other")))


def test_stop_while_labelling_leaves_a_folder_that_resumes(tmp_path, tiny_causal_dir, monkeypatch):
    import workbench.recipes.ppt as job

    real = job.pseudo_label

    def stop(*args, **kw):
        raise KeyboardInterrupt

    monkeypatch.setattr(job, "pseudo_label", stop)
    cfg = pretrain_cfg(tmp_path, tiny_causal_dir, format="cls", min_confidence=0.0, steps=1)
    with pytest.raises(KeyboardInterrupt):
        job.pretrain_prompt(cfg)
    assert not (tmp_path / "prompt" / "examples.jsonl").exists()
    monkeypatch.setattr(job, "pseudo_label", real)
    result = job.pretrain_prompt(cfg)
    assert result.steps == 1 and result.labels["scored"] == 40


def test_predict_rebuilds_a_run_from_a_pretrained_prompt_that_is_gone(tmp_path, tiny_causal_dir):
    """`workbench predict` uses the run's own (already cast) template, words and trained prompt: the pre-trained
    prompt it started from is not read again, so deleting it changes nothing."""
    import csv
    import shutil

    import workbench as wb
    from workbench.recipes.ppt import pretrain_prompt
    from workbench.recipes.predict import predict_run

    result = pretrain_prompt(pretrain_cfg(tmp_path, tiny_causal_dir, format="unified", steps=1, examples=30))
    task = write_task(tmp_path)
    run = wb.train(run_cfg(task, tiny_causal_dir, {"name": "prompt-tuning", "init": f"ppt:{result.out}",
                                                     "num_virtual_tokens": 4}, tracking={"save": "always"}))
    assert "A. bad" in mlflow.get_run(run.run_id).data.params["runtime.template_text"]
    shutil.rmtree(result.out)
    logged = list(csv.DictReader(Path(mlflow.MlflowClient().download_artifacts(
        run.run_id, "predictions.csv", str(tmp_path))).read_text().splitlines()))
    rows = tmp_path / "rows.tsv"
    rows.write_text("text\n" + "".join(line.split("\t")[0] + "\n"
                                       for line in (tmp_path / "test.tsv").read_text().splitlines()[1:5]))
    predicted = predict_run(run.run_id, rows)
    assert [r["prediction"] for r in predicted] == [r["prediction"] for r in logged]
