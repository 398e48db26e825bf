"""Auto-CoT demonstrations and CoT evaluation with a scripted generator (no model downloads):

- the selection rules (`rule_failure`);
- `build_demos` end to end, and the demo file it writes checked independently: its layout, the rules, and one
  demonstration per k-means cluster, the passing question closest to the centre (clusters recomputed here);
- resuming a stopped pool, a pool of another generator, `format=instruct`;
- `read_demo_file`'s refusals;
- `evaluate_cot`: each mode's prompt layout, exact-match accuracy, the MLflow run, self-consistency, resuming;
- the command line's refusals, one line each with exit code 2.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import requires_data

from workbench.cot.demos import encode, read_demo_file, rule_failure
from workbench.errors import ConfigError, WorkbenchError
from workbench.instruct.backends import Completion
from workbench.recipes import cot as R
from workbench.recipes.cot import (
    CotDemosConfig,
    CotEvalConfig,
    build_demos,
    evaluate_cot,
    majority,
)

STEP = "Let's think step by step."
TRIGGER = "\nTherefore, the answer (arabic numerals) is"
MANUAL_YAML = Path(__file__).resolve().parents[1] / "templates" / "cot" / "manual.yaml"


# ---- the selection rules ----------------------------------------------------------------------------------------

SHORT_Q = "Tom has 3 apples and buys 4 more. How many apples does he have?"


def _words(n: int) -> str:
    return " ".join(["word"] * (n - 1) + ["end?"])


RULE_IDS = ["passes", "58-words-passes", "59-words-fails", "80-words-fails", "5-steps-blank-lines-passes",
            "6-steps-fails", "6-steps-blank-lines-fails", "no-period-fails", "exclamation-fails",
            "trailing-space-passes", "empty-answer-fails", "empty-answer-fails-letter", "answer-not-in-conclusion",
            "answer-in-last-10-words", "answer-in-last-sentence", "conclusion-rule-arithmetic-only"]


@pytest.mark.parametrize("question,rationale,pred,arithmetic,expect", [
    (SHORT_Q, f"{STEP} Tom has 3 apples.\nHe buys 4 more, so 3 + 4 = 7.", "7", True, None),
    # the question is counted as Auto-CoT counts it: "Q: <question>\nA:" in whitespace tokens, at most 60
    (_words(58), f"{STEP} So 7.", "7", True, None),
    (_words(59), f"{STEP} So 7.", "7", True, "question over 60 words"),
    (_words(80), f"{STEP} So 7.", "7", False, "question over 60 words"),
    # at most 5 lines after collapsing blank lines
    (SHORT_Q, f"{STEP} A.\n\nB.\n\nC.\n\nD.\n\nSo 7.", "7", True, None),
    (SHORT_Q, f"{STEP} A.\nB.\nC.\nD.\nE.\nSo 7.", "7", True, "rationale over 5 steps"),
    (SHORT_Q, f"{STEP} A.\n\nB.\n\nC.\n\nD.\n\nE.\n\nSo 7.", "7", False, "rationale over 5 steps"),
    # ends with "."
    (SHORT_Q, f"{STEP} So the answer is 7", "7", True, "does not end with '.'"),
    (SHORT_Q, f"{STEP} So the answer is 7!", "7", False, "does not end with '.'"),
    (SHORT_Q, f"{STEP} So the answer is 7.  \n", "7", True, None),
    # an answer
    (SHORT_Q, f"{STEP} So the answer is 7.", "", True, "no answer"),
    (SHORT_Q, f"{STEP} So the answer is 7.", "", False, "no answer"),
    # arithmetic: the answer in the last sentence or in the last 10 words
    (SHORT_Q, f"{STEP} Tom ends with 7 apples. Then we check every part of the work again and find that "
              f"nothing else needs to change.", "7", True, "answer not in the rationale's conclusion"),
    (SHORT_Q, f"{STEP} The total is 7 apples. Then we are done.", "7", True, None),  # in the last 10 words
    (SHORT_Q, f"{STEP} We add them.\nHe has 3 + 4 = 7 apples in the end.", "7", True, None),  # last sentence
    # the conclusion rule is for arithmetic sets only
    (SHORT_Q, f"{STEP} Choice C is right. Then we check every part of the work again and find that nothing "
              f"else needs to change.", "C", False, None),
], ids=RULE_IDS)
def test_rule_failure(question, rationale, pred, arithmetic, expect):
    got = rule_failure(question, rationale, pred, arithmetic)
    if expect is None:
        assert got is None
    else:
        assert got is not None and expect in got


# ---- a task of our own and a scripted generator -------------------------------------------------------------------

NAMES = ("Alice Bruno Carla Dmitri Elena Farid Gina Hugo Ines Jonas Kira Liam Maya Nico Olga Pavel Quinn Rosa Sven "
         "Tara Umar Vera Wes Xena Yusuf Zoe Arlo Bea Cyrus Dora Emil Fay Gus Hana Ivo Jade Kurt Lena Milo Nora").split()
OBJECTS = ("apples", "pencils", "stickers", "marbles", "books", "coins", "shells", "cookies")
CATS = ("good", "good", "wrong", "steps", "good", "noperiod", "good", "conclusion", "good", "empty")
LONG = {10, 24}  # questions over 60 words (their rationales are fine)
PADDING = "the movie was very fun and the story was good but the plot was dull . " * 5


@dataclass(frozen=True)
class Item:
    question: str
    gold: str
    z: str  # what the generator continues "Let's think step by step." with
    answer: str  # what it answers after the trigger
    passes: bool  # designed to pass Auto-CoT's rules
    pred: str  # the answer cleansing must read


def _items(n: int = 40) -> list[Item]:
    items = []
    for i in range(n):
        who, obj = NAMES[i], OBJECTS[i % len(OBJECTS)]
        a, b = 6 + (i * 7) % 23, 2 + i % 5
        kind = i % 4
        if kind == 0:
            q, gold, expr = f"{who} has {a} {obj}. A friend gives {who} {b} more {obj}. How many {obj} does {who} " \
                            f"have now?", a + b, f"{a} + {b}"
        elif kind == 1:
            q, gold, expr = f"{who} had {a} {obj} and gave away {b} of them. How many {obj} are left?", a - b, \
                            f"{a} - {b}"
        elif kind == 2:
            q, gold, expr = f"{who} buys {a} bags with {b} {obj} in each bag. How many {obj} does {who} buy in " \
                            f"total?", a * b, f"{a} * {b}"
        else:
            q, gold, expr = f"{who} shares {a * b} {obj} equally among {b} friends. How many {obj} does each " \
                            f"friend get?", a, f"{a * b} / {b}"
        if i in LONG:
            q = f"{who} has {a} {obj} . {PADDING}A friend gives {who} {b} more {obj}. How many {obj} now?"
            gold, expr = a + b, f"{a} + {b}"
        cat = CATS[i % len(CATS)]
        z, answer, pred = f" {who} starts from {a} and {b}.\nSo {who} gets {expr} = {gold}.", f" {gold}.", str(gold)
        if cat == "wrong":
            z, answer, pred = f" {who} starts from {a} and {b}.\nSo {who} gets {gold + 1}.", f" {gold + 1}.", \
                str(gold + 1)
        elif cat == "steps":
            z = "".join(f" Step {k}: look at the {obj} again.\n" for k in range(1, 6)) + f"So {who} gets {gold}."
        elif cat == "noperiod":
            z = f" So {who} gets {expr} = {gold}"
        elif cat == "conclusion":
            z = f" The numbers give {gold} here.\nThen we check every part of the work again and find that nothing " \
                f"else needs to change at all."
        elif cat == "empty":
            answer, pred = " I am not sure.", ""
        items.append(Item(q, str(gold), z, answer, cat in ("good", "wrong") and i not in LONG, pred))
    return items


ITEMS = _items()
BY_QUESTION = {it.question: it for it in ITEMS}


def _write_task(folder: Path, n: int = 40, demos: int = 4) -> str:
    rows = [{"problem": it.question, "solution": it.gold} for it in ITEMS[:n]]
    (folder / "toy.json").write_text(json.dumps(rows), encoding="utf-8")
    (folder / "toy.yaml").write_text(f"name: toyarith\ndata: toy.json\nquestion_field: problem\n"
                                     f"answer_field: solution\nanswer_type: number\ndemos: {demos}\n", encoding="utf-8")
    return str(folder / "toy.yaml")


def _last_question(prompt: str) -> str:
    """The question a prompt asks: the last "Q: ...\\nA:" block (demonstrations come before it)."""
    start = prompt.rindex("Q: ") + 3
    return prompt[start:prompt.index("\nA:", start)]


def _first_question(prompt: str) -> str:
    """Zero-shot-CoT's answer stage repeats the question, then the rationale (which may contain anything)."""
    return prompt[3:prompt.index("\nA:")]


class ScriptedBackend:
    """Zero-shot-CoT as scripted in ITEMS: the rationale stage ends with "Let's think step by step.", the answer
    stage contains "Therefore, the answer". Records every call; `fail_on` raises on that call (1-based)."""

    def __init__(self, name: str = "scripted", fail_on: int | None = None):
        self.name = name
        self.fail_on = fail_on
        self.calls: list[tuple[list[str], object]] = []

    def complete(self, prompts, decoding):
        self.calls.append((list(prompts), decoding))
        if self.fail_on is not None and len(self.calls) >= self.fail_on:
            raise WorkbenchError("cannot reach http://127.0.0.1:9/v1/completions: [Errno 111] Connection refused")
        out = []
        for p in prompts:
            if "Therefore, the answer" in p:
                assert p.endswith(TRIGGER)
                out.append(Completion(BY_QUESTION[_first_question(p)].answer, "stop"))
            else:
                assert p.endswith(f"\nA: {STEP}")
                out.append(Completion(BY_QUESTION[_last_question(p)].z, "stop"))
        return out

    def questions_asked(self) -> list[str]:
        return [_last_question(p) for prompts, _ in self.calls for p in prompts if p.endswith(STEP)]


@pytest.fixture(scope="module")
def encoder():
    """A tiny random BERT as the sentence encoder (the tiny masked LM's vocabulary and sizes, 512 positions so
    the long questions fit)."""
    import torch
    from conftest import _wordpiece_tokenizer
    from transformers import BertConfig, BertModel

    tok = _wordpiece_tokenizer()
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=512)
    return BertModel(cfg, add_pooling_layer=False).eval(), tok


def _demos_cfg(task: str, out: Path, **kw) -> CotDemosConfig:
    return CotDemosConfig(task=task, out=str(out), progress=False, **kw)


def _flat(rationale: str) -> str:
    return " ".join(rationale.split())


# ---- build_demos end to end, checked independently ---------------------------------------------------------------

def test_build_demos_end_to_end(tmp_path, encoder):
    from sklearn.cluster import KMeans

    task = _write_task(tmp_path, n=40, demos=4)
    out = tmp_path / "demos.json"
    backend = ScriptedBackend()
    result = build_demos(_demos_cfg(task, out), backend, encoder=encoder)

    # generation: two stages, greedy; the answer stage short and stopped at a newline
    assert result.generated == 40 and result.pool == 40
    assert len(backend.calls) == 4  # 40 questions = 2 chunks of at most 32, two stages each
    assert [len(p) for p, _ in backend.calls] == [32, 32, 8, 8]
    for k, (prompts, decoding) in enumerate(backend.calls):
        assert decoding.temperature == 0.0
        if k % 2 == 0:
            assert all(p.startswith("Q: ") and p.endswith(f"\nA: {STEP}") for p in prompts)
            assert decoding.max_tokens == 256
        else:
            assert all(TRIGGER in p for p in prompts)
            assert decoding.max_tokens == 32 and "\n" in decoding.stop

    # the file, read with json alone
    data = json.loads(out.read_text(encoding="utf-8"))
    assert set(data) >= {"demo"}
    demos = data["demo"]
    assert 1 <= len(demos) <= 4
    for d in demos:
        assert set(d) >= {"question", "rationale", "pred_ans", "gold_ans"}
        assert d["question"].startswith("Q: ") and d["question"].endswith("\nA:")
        item = BY_QUESTION[d["question"][3:-3]]
        assert "\n" not in d["rationale"] and d["rationale"].startswith(STEP)
        assert d["rationale"] == _flat(f"{STEP} {item.z}")
        assert d["pred_ans"] == item.pred and d["gold_ans"] == item.gold
        assert len(d["question"].split()) <= 60
        raw = f"{STEP} {item.z.strip()}"
        assert len([s for s in raw.replace("\n\n", "\n").split("\n")]) <= 5
        assert item.passes

    # one demonstration per cluster: the clusters recomputed here, from the same encoder and k-means settings
    questions = [it.question for it in ITEMS[:40]]
    emb = encode([f"Q: {q}\nA:" for q in questions], *encoder)
    km = KMeans(n_clusters=4, random_state=192, n_init=10).fit(emb)
    dist = np.linalg.norm(emb - km.cluster_centers_[km.labels_], axis=1)
    expected = {}
    for c in range(4):
        passing = [i for i in np.flatnonzero(km.labels_ == c) if ITEMS[i].passes]
        if passing:
            expected[c] = min(passing, key=lambda i: (dist[i], i))
    chosen = [questions.index(d["question"][3:-3]) for d in demos]
    clusters = [int(km.labels_[i]) for i in chosen]
    assert len(set(clusters)) == len(clusters), "two demonstrations from one cluster"
    assert clusters == sorted(clusters)  # in cluster order
    for i, c in zip(chosen, clusters):
        best = expected[c]
        assert i == best or np.isclose(dist[i], dist[best]), f"cluster {c}: {questions[i]!r} is not the closest"
    assert set(clusters) == set(expected), "a cluster with a passing question has no demonstration"
    assert data["meta"]["task"] == "toyarith" and data["meta"]["k"] == 4 and data["meta"]["seed"] == 192
    assert data["meta"]["clusters"] == clusters
    assert data["meta"]["empty_clusters"] == sorted(set(range(4)) - set(expected))
    assert data["meta"]["generator"] == "scripted"

    # the scatter plot
    assert result.plot.is_file() and result.plot.parent == out.parent
    assert result.plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # and the file reads back as demonstrations for this task
    back = read_demo_file(out, "toyarith")
    assert [d.question for d in back] == [d["question"][3:-3] for d in demos]


def _pool_rows(path: Path) -> list[dict]:
    rows, broken = [], []
    for no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            broken.append(f"line {no}: {line[:80]!r}")
    assert not broken, f"{path} has lines that are not JSON: {broken}"
    return rows


def test_build_demos_resumes_a_stopped_pool(tmp_path, encoder):
    task = _write_task(tmp_path, n=40, demos=4)
    assert R.CHUNK == 32
    out = tmp_path / "stopped.json"
    failing = ScriptedBackend(fail_on=3)  # chunk 1: rationales + answers; chunk 2's first call fails
    with pytest.raises(WorkbenchError, match="cannot reach"):
        build_demos(_demos_cfg(task, out), failing, encoder=encoder)
    assert not out.exists()
    pool = tmp_path / "stopped.json.pool.jsonl"
    rows = _pool_rows(pool)
    assert rows[0]["header"]["generator"] == "scripted" and rows[0]["header"]["task"] == "toyarith"
    assert len(rows) == 1 + 32
    for row, item in zip(rows[1:], ITEMS):
        assert row["question"] == item.question and row["gold"] == item.gold
        assert row["rationale"] == f"{STEP} {item.z.strip()}" and row["pred"] == item.pred

    # a pool started by another generator is refused, naming the file, and left as it was
    before = pool.read_text(encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        build_demos(_demos_cfg(task, out), ScriptedBackend(name="another-model"), encoder=encoder)
    assert str(pool) in str(info.value) and "another-model" in str(info.value)
    assert pool.read_text(encoding="utf-8") == before

    working = ScriptedBackend()
    resumed = build_demos(_demos_cfg(task, out), working, encoder=encoder)
    assert resumed.generated == 8
    assert sorted(working.questions_asked()) == sorted(it.question for it in ITEMS[32:40])
    assert len(_pool_rows(pool)) == 1 + 40

    whole = build_demos(_demos_cfg(task, tmp_path / "whole.json"), ScriptedBackend(), encoder=encoder)
    assert whole.generated == 40
    assert json.loads(out.read_text()) == json.loads((tmp_path / "whole.json").read_text())


def test_build_demos_resumes_after_a_line_cut_mid_write(tmp_path, encoder):
    """A stop in the middle of writing a line leaves half a line at the end of the pool file: the rerun generates
    that question again, and the file must stay readable for the next rerun."""
    task = _write_task(tmp_path, n=10, demos=2)
    out = tmp_path / "d.json"
    build_demos(_demos_cfg(task, out), ScriptedBackend(), encoder=encoder)
    pool = tmp_path / "d.json.pool.jsonl"
    lines = pool.read_text(encoding="utf-8").splitlines()
    pool.write_text("\n".join(lines[:6]) + "\n" + lines[6][:25], encoding="utf-8")  # header, 5 rows, half a row

    again = build_demos(_demos_cfg(task, out), ScriptedBackend(), encoder=encoder)
    assert again.generated == 5
    rows = _pool_rows(pool)  # every line is JSON again
    assert sorted(r["qid"] for r in rows[1:]) == [str(i) for i in range(10)]
    third = build_demos(_demos_cfg(task, out), ScriptedBackend(), encoder=encoder)
    assert third.generated == 0


def test_build_demos_instruct_format(tmp_path, encoder):
    task = _write_task(tmp_path, n=40, demos=4)
    demo_run = build_demos(_demos_cfg(task, tmp_path / "demos.json"), ScriptedBackend(), encoder=encoder)
    out = tmp_path / "records.jsonl"
    result = build_demos(_demos_cfg(task, out, format="instruct"), ScriptedBackend(), encoder=encoder)
    records = [json.loads(x) for x in out.read_text(encoding="utf-8").splitlines()]
    expected = [it for it in ITEMS[:40] if it.passes and it.pred == it.gold]
    assert [r["instruction"] for r in records] == [it.question for it in expected]
    assert any(it.passes and it.pred != it.gold for it in ITEMS[:40])  # a passing rationale with a wrong answer
    for r, it in zip(records, expected):
        assert r["input"] == ""
        assert r["output"] == f"{_flat(f'{STEP} {it.z}')} The answer is {it.gold}."
        assert r["source"] == "auto-cot:toyarith"
    chosen = {d["question"][3:-3] for d in demo_run.demos}
    assert {r["instruction"] for r in records if r["demonstration"]} == chosen & {it.question for it in expected}
    assert result.plot.is_file()


def test_build_demos_refuses_before_generating(tmp_path, encoder):
    task = _write_task(tmp_path, n=3, demos=4)
    backend = ScriptedBackend()
    with pytest.raises(ConfigError, match="cannot form 4 clusters"):
        build_demos(_demos_cfg(task, tmp_path / "d.json"), backend, encoder=encoder)
    with pytest.raises(ConfigError, match="does not exist"):
        build_demos(_demos_cfg(task, tmp_path / "nowhere" / "d.json", k=2), backend, encoder=encoder)
    assert backend.calls == []


# ---- read_demo_file -----------------------------------------------------------------------------------------------

PUBLISHED = {"demo": [
    {"question": "Q: Ann has 4 pens and buys 3 more. How many pens does she have?\nA:",
     "rationale": "Let's think step by step. Ann has 4 pens. She buys 3 more, so 4 + 3 = 7.",
     "pred_ans": "7", "gold_ans": "7"},
    {"question": "Q: A box has 12 eggs. 5 break. How many are left?\nA:",
     "rationale": "Let's think step by step. 12 - 5 = 7 eggs are left.", "pred_ans": "7", "gold_ans": "7"},
]}


def test_read_demo_file_published_layout_without_meta(tmp_path):
    path = tmp_path / "multiarith_auto"
    path.write_text(json.dumps(PUBLISHED, indent=4), encoding="utf-8")
    demos = read_demo_file(path, "multiarith")
    assert [d.question for d in demos] == ["Ann has 4 pens and buys 3 more. How many pens does she have?",
                                           "A box has 12 eggs. 5 break. How many are left?"]
    assert demos[0].rationale == PUBLISHED["demo"][0]["rationale"] and demos[1].answer == "7"


def test_read_demo_file_of_another_task(tmp_path):
    path = tmp_path / "d.json"
    path.write_text(json.dumps({**PUBLISHED, "meta": {"task": "gsm8k"}}), encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        read_demo_file(path, "multiarith")
    assert str(path) in str(info.value) and "'gsm8k'" in str(info.value) and "'multiarith'" in str(info.value)
    assert len(read_demo_file(path, "gsm8k")) == 2


def test_read_demo_file_malformed_json_names_the_line(tmp_path):
    path = tmp_path / "d.json"
    path.write_text('{\n "demo": [\n  {"question": "Q: x\\nA:",,}\n ]\n}\n', encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        read_demo_file(path, "multiarith")
    assert str(path) in str(info.value) and "line 3" in str(info.value)


@pytest.mark.parametrize("broken,expect", [
    ({"question": "Q: y\nA:", "pred_ans": "3"}, "demo 1: field 'rationale'"),
    ({"question": "Q: y\nA:", "rationale": "r.", "pred_ans": ""}, "demo 1: field 'pred_ans'"),
    ({"rationale": "r.", "pred_ans": "3"}, "demo 1: field 'question'"),
    ("not an object", "demo 1: expected an object"),
])
def test_read_demo_file_missing_fields_name_the_demo(tmp_path, broken, expect):
    path = tmp_path / "d.json"
    path.write_text(json.dumps({"demo": [PUBLISHED["demo"][0], broken]}), encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        read_demo_file(path, "multiarith")
    assert expect in str(info.value) and str(path) in str(info.value)


@pytest.mark.parametrize("content", ['{"demo": []}', '{"demos": [1]}', '[1, 2]'])
def test_read_demo_file_without_demonstrations(tmp_path, content):
    path = tmp_path / "d.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ConfigError, match="at least one demonstration"):
        read_demo_file(path)


def test_read_demo_file_missing(tmp_path):
    with pytest.raises(ConfigError, match="no such file"):
        read_demo_file(tmp_path / "absent.json")


# ---- evaluate_cot ---------------------------------------------------------------------------------------------

class EvalBackend:
    """Answers every question of ITEMS; right for an even index, off by one for an odd one. A prompt that ends
    with a trigger ("... is") gets the bare answer, any other a rationale ending in "The answer is X."."""

    def __init__(self, name: str = "scripted-eval", fail_on: int | None = None):
        self.name = name
        self.fail_on = fail_on
        self.calls: list[tuple[list[str], object]] = []

    @staticmethod
    def answer(question: str) -> str:
        i = next(k for k, it in enumerate(ITEMS) if it.question == question)
        return ITEMS[i].gold if i % 2 == 0 else str(int(ITEMS[i].gold) + 1)

    def complete(self, prompts, decoding):
        self.calls.append((list(prompts), decoding))
        if self.fail_on is not None and len(self.calls) >= self.fail_on:
            raise WorkbenchError("cannot reach http://127.0.0.1:9/v1/completions: [Errno 111] Connection refused")
        out = []
        for p in prompts:
            q = _first_question(p) if TRIGGER in p else _last_question(p)
            a = self.answer(q)
            out.append(Completion(f" {a}." if p.endswith(" is") else f" We work it out.\nSo we get {a}. "
                                                                       f"The answer is {a}.", "stop"))
        return out


@pytest.fixture(scope="module")
def tracking_uri(tmp_path_factory):
    """One MLflow store for the evaluations of this module: creating a store's tables costs seconds."""
    return f"sqlite:///{tmp_path_factory.mktemp('cot-mlflow')}/mlflow.db"


def _eval_cfg(task: str, tmp_path: Path, uri: str, **kw) -> CotEvalConfig:
    kw.setdefault("out", str(tmp_path / "pred.jsonl"))
    return CotEvalConfig(task=task, tracking_uri=uri, progress=False, **kw)


def _manual_prefix(with_rationale: bool) -> str:
    exemplars = yaml.safe_load(MANUAL_YAML.read_text(encoding="utf-8"))["arithmetic"]
    assert len(exemplars) == 8
    return "".join(f"Q: {e['question']}\nA:" + (f" {e['rationale']}" if with_rationale else "") +
                   f" The answer is {e['answer']}.\n\n" for e in exemplars)


AUTO_DEMOS = {"demo": PUBLISHED["demo"], "meta": {"task": "toyarith"}}


@pytest.mark.parametrize("mode", ["zero-shot", "zero-shot-cot", "few-shot", "manual-cot", "auto-cot"])
def test_evaluate_cot_modes(tmp_path, tracking_uri, mode):
    import mlflow

    task = _write_task(tmp_path, n=40)
    demos = ""
    if mode == "auto-cot":
        demos = str(tmp_path / "demos.json")
        Path(demos).write_text(json.dumps(AUTO_DEMOS), encoding="utf-8")
    backend = EvalBackend()
    result = evaluate_cot(_eval_cfg(task, tmp_path, tracking_uri, mode=mode, demos=demos, limit=5), backend)
    questions = [it.question for it in ITEMS[:5]]

    first, decoding = backend.calls[0]
    assert decoding.temperature == 0.0
    if mode == "zero-shot":
        assert first == [f"Q: {q}\nA: The answer (arabic numerals) is" for q in questions]
        assert len(backend.calls) == 1 and decoding.max_tokens <= 32
    elif mode == "zero-shot-cot":
        assert first == [f"Q: {q}\nA: {STEP}" for q in questions]
        assert len(backend.calls) == 2
        second, answer_decoding = backend.calls[1]
        rationale = " We work it out.\nSo we get {}. The answer is {}."
        assert second == [f"Q: {q}\nA: {STEP}{rationale.format(*[EvalBackend.answer(q)] * 2)}" + " " + TRIGGER
                          for q in questions]
        assert answer_decoding.max_tokens == 32 and answer_decoding.temperature == 0.0
    elif mode in ("few-shot", "manual-cot"):
        prefix = _manual_prefix(with_rationale=mode == "manual-cot")
        assert first == [f"{prefix}Q: {q}\nA:" for q in questions]
        assert len(backend.calls) == 1 and "\n\n" in decoding.stop
    else:
        prefix = "".join(f"{d['question']} {d['rationale']} The answer is {d['pred_ans']}.\n\n"
                         for d in AUTO_DEMOS["demo"])
        assert first == [f"{prefix}Q: {q}\nA: {STEP}" for q in questions]
        assert len(backend.calls) == 1

    # exact match: right on questions 0, 2, 4
    rows = [json.loads(x) for x in Path(result.out).read_text(encoding="utf-8").splitlines()]
    assert rows[0]["header"]["mode"] == mode
    assert [r["prediction"] for r in rows[1:]] == [EvalBackend.answer(q) for q in questions]
    assert [r["correct"] for r in rows[1:]] == [True, False, True, False, True]
    assert (result.correct, result.total, result.accuracy) == (3, 5, pytest.approx(0.6))

    client = mlflow.tracking.MlflowClient(tracking_uri)
    run = client.get_run(result.run_id)
    assert run.data.metrics["eval/accuracy"] == pytest.approx(0.6)
    assert run.data.tags["mode"] == mode and run.data.tags["task"] == "toyarith"
    names = {a.path for a in client.list_artifacts(result.run_id)}
    assert "predictions.jsonl" in names
    local = client.download_artifacts(result.run_id, "predictions.jsonl", str(tmp_path))
    logged = [json.loads(x) for x in Path(local).read_text(encoding="utf-8").splitlines()]
    assert [r["prediction"] for r in logged] == [r["prediction"] for r in rows[1:]]
    if mode in ("few-shot", "manual-cot", "auto-cot"):
        assert "demos.json" in names


def test_majority():
    assert majority(["3", "4", "3"]) == "3"
    assert majority(["4", "3", "3", "4"]) == "4"  # a tie goes to the answer sampled first
    assert majority(["", "", "5"]) == "5"  # no answer is no vote
    assert majority(["", ""]) == ""
    assert majority([]) == ""


class VotingBackend:
    """Self-consistency: the rationale stage gets each question n times in a row and gives the answers of VOTES
    in turn; the answer stage reads the answer back from the rationale."""

    VOTES = [["7", "8", "7"], ["9", "10", "10"], ["", "", "4"], ["5", "6", ""]]

    def __init__(self):
        self.name = "voting"
        self.calls = []

    def complete(self, prompts, decoding):
        self.calls.append((list(prompts), decoding))
        if prompts[0].endswith(TRIGGER):
            return [Completion(f" {p.split('ANSWER=')[1].split(';')[0] or 'unsure'}.", "stop") for p in prompts]
        assert len(prompts) % 3 == 0
        return [Completion(f" ANSWER={self.VOTES[k // 3][k % 3]}; done.", "stop") for k in range(len(prompts))]


def test_self_consistency_majority_vote(tmp_path, tracking_uri):
    task = _write_task(tmp_path, n=40)
    backend = VotingBackend()
    result = evaluate_cot(_eval_cfg(task, tmp_path, tracking_uri, mode="zero-shot-cot", self_consistency=3, limit=4,
                                    temperature=0.7, seed=5), backend)
    rationale_prompts, decoding = backend.calls[0]
    assert len(rationale_prompts) == 12  # 4 questions x 3 samples
    assert decoding.temperature == 0.7 and decoding.seed == 5
    assert backend.calls[1][1].temperature == 0.0  # the answer stage stays greedy
    rows = [json.loads(x) for x in Path(result.out).read_text(encoding="utf-8").splitlines()][1:]
    assert [r["prediction"] for r in rows] == ["7", "10", "4", "5"]
    assert all(len(r["samples"]) == 3 for r in rows)
    assert [s["answer"] for s in rows[2]["samples"]] == ["", "", "4"]
    golds = [it.gold for it in ITEMS[:4]]
    assert result.correct == sum(p == g for p, g in zip(["7", "10", "4", "5"], golds))


def test_evaluate_cot_resumes_and_refuses_other_settings(tmp_path, tracking_uri):
    task = _write_task(tmp_path, n=40)
    out = tmp_path / "pred.jsonl"
    chunk = R.PREDICT_CHUNK
    assert chunk <= 8  # a stop loses at most a few answers
    failing = EvalBackend(fail_on=3)  # zero-shot: one call per chunk; the third fails
    with pytest.raises(WorkbenchError, match="cannot reach"):
        evaluate_cot(_eval_cfg(task, tmp_path, tracking_uri, mode="zero-shot"), failing)
    rows = [json.loads(x) for x in out.read_text(encoding="utf-8").splitlines()]
    assert "header" in rows[0] and len(rows) == 1 + 2 * chunk  # every answered chunk kept, only the failed one lost
    assert [r["question"] for r in rows[1:]] == [it.question for it in ITEMS[:2 * chunk]]

    working = EvalBackend()
    result = evaluate_cot(_eval_cfg(task, tmp_path, tracking_uri, mode="zero-shot"), working)
    asked = [_last_question(p) for prompts, _ in working.calls for p in prompts]
    assert asked == [it.question for it in ITEMS[2 * chunk:40]]
    assert all(len(prompts) <= chunk for prompts, _ in working.calls)
    assert result.total == 40 and result.correct == 20
    assert len(out.read_text(encoding="utf-8").splitlines()) == 1 + 40

    again = EvalBackend()
    assert evaluate_cot(_eval_cfg(task, tmp_path, tracking_uri, mode="zero-shot"), again).correct == 20
    assert again.calls == []

    before = out.read_text(encoding="utf-8")
    for change in [{"mode": "zero-shot-cot"}, {"max_tokens": 64}]:
        with pytest.raises(ConfigError) as info:
            evaluate_cot(_eval_cfg(task, tmp_path, tracking_uri, **{"mode": "zero-shot", **change}), EvalBackend())
        assert str(out) in str(info.value) and next(iter(change)) in str(info.value)
    with pytest.raises(ConfigError, match="generator"):
        evaluate_cot(_eval_cfg(task, tmp_path, tracking_uri, mode="zero-shot"), EvalBackend(name="another"))
    assert out.read_text(encoding="utf-8") == before


def test_evaluate_cot_resumes_after_a_line_cut_mid_write(tmp_path, tracking_uri):
    """Half a line at the end of the predictions file (a stop mid-write): the rerun generates that question again,
    and the file must stay readable for the next rerun."""
    task = _write_task(tmp_path, n=40)
    cfg = _eval_cfg(task, tmp_path, tracking_uri, mode="zero-shot", limit=6)
    evaluate_cot(cfg, EvalBackend())
    out = Path(cfg.out)
    lines = out.read_text(encoding="utf-8").splitlines()
    out.write_text("\n".join(lines[:4]) + "\n" + lines[4][:20], encoding="utf-8")  # header, 3 rows, half a row

    backend = EvalBackend()
    assert evaluate_cot(cfg, backend).total == 6
    assert sum(len(p) for p, _ in backend.calls) == 3
    rerun = EvalBackend()
    result = evaluate_cot(cfg, rerun)  # a finished file: nothing to generate, nothing refused
    assert rerun.calls == [] and (result.correct, result.total) == (3, 6)


def test_check_eval_refusals(tmp_path, tracking_uri):
    task = _write_task(tmp_path, n=40)
    with pytest.raises(ConfigError, match="needs a demo file"):
        CotEvalConfig(task=task, mode="auto-cot")
    with pytest.raises(ConfigError, match="reads no demonstrations"):
        CotEvalConfig(task=task, mode="zero-shot-cot", demos="d.json")
    nodemos = tmp_path / "plain.json"
    nodemos.write_text(json.dumps({"demo": [{**d, "rationale": ""} for d in PUBLISHED["demo"]]}), encoding="utf-8")
    with pytest.raises(ConfigError, match="no rationales"):
        R.check_eval(_eval_cfg(task, tmp_path, tracking_uri, mode="manual-cot", demos=str(nodemos)))
    yn = tmp_path / "yn.yaml"
    (tmp_path / "yn.jsonl").write_text('{"q": "Is it?", "a": "yes"}\n', encoding="utf-8")
    yn.write_text("name: yn\ndata: yn.jsonl\nquestion_field: q\nanswer_field: a\nanswer_type: yes-no\n")
    with pytest.raises(ConfigError, match="no built-in exemplars fit task yn"):
        R.check_eval(_eval_cfg(str(yn), tmp_path, tracking_uri, mode="manual-cot"))


# ---- the command line ---------------------------------------------------------------------------------------------

def _cli(tmp_path: Path, *argv: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path}/mlflow.db"}
    return subprocess.run([sys.executable, "-m", "workbench", "cot", *argv], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)


def _one_error_line(done: subprocess.CompletedProcess) -> str:
    assert done.returncode == 2, (done.returncode, done.stderr)
    lines = [x for x in done.stderr.splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), done.stderr
    assert "Traceback" not in done.stderr
    return lines[0]


DEMO_FILES = {
    "gsm8k.json": json.dumps({**PUBLISHED, "meta": {"task": "gsm8k"}}),
    "bad.json": '{\n "demo": [\n  {"question": "Q: x\\nA:",,}\n ]\n}\n',
    "ok.json": json.dumps(PUBLISHED),
}


@requires_data("multiarith")
@pytest.mark.parametrize("argv,expect", [
    (["eval", "--task", "nope"], ["--task", "'nope'", "not a CoT task"]),
    (["demos", "--task", "nope"], ["--task", "'nope'"]),
    (["eval", "--task", "multiarith", "--mode", "auto-cot", "--demos", "gsm8k.json"],
     ["gsm8k.json", "built for task 'gsm8k'"]),
    (["eval", "--task", "multiarith", "--mode", "auto-cot", "--demos", "bad.json"], ["bad.json", "line 3"]),
    (["eval", "--task", "multiarith", "--mode", "auto-cot"], ["--demos", "auto-cot"]),
    (["eval", "--task", "multiarith", "--mode", "zero-shot", "--demos", "ok.json"],
     ["--demos", "zero-shot", "reads no demonstrations"]),
], ids=["eval-unknown-task", "demos-unknown-task", "demos-of-another-task", "malformed-demos",
        "auto-cot-without-demos", "demos-with-zero-shot"])
def test_cli_refuses_bad_input(tmp_path, argv, expect):
    for name, text in DEMO_FILES.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    message = _one_error_line(_cli(tmp_path, *argv))
    for piece in expect:
        assert piece in message, message
    assert not list(tmp_path.glob("cot_*.jsonl"))  # refused before any output was started


class MultiarithBackend:
    """Zero-shot-CoT on MultiArith under the name the HTTP backend will have: a rationale, then the answer 5."""

    name = "x@http://127.0.0.1:9/v1"

    def complete(self, prompts, decoding):
        return [Completion(" 5." if p.endswith(" is") else " So 5.", "stop") for p in prompts]


@requires_data("multiarith")
def test_cli_unreachable_endpoint_loses_nothing(tmp_path, tracking_uri):
    """Two questions were done earlier by the same generator: the rerun cannot reach the server, says so in one
    error line (after the note on what it kept), and the predictions file still holds its header and both rows."""
    out = tmp_path / "pred.jsonl"
    evaluate_cot(CotEvalConfig(task="multiarith", limit=2, out=str(out), progress=False, tracking_uri=tracking_uri),
                 MultiarithBackend())
    before = out.read_text(encoding="utf-8")
    assert len(before.splitlines()) == 3

    done = _cli(tmp_path, "eval", "--task", "multiarith", "--limit", "4", "--out", "pred.jsonl", "--no-progress",
                "--tracking-uri", tracking_uri, "--api-base", "http://127.0.0.1:9/v1", "--model", "x",
                "--retries", "0", "--timeout", "2")
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    lines = [x for x in done.stderr.splitlines() if x.strip()]
    assert lines[0] == "pred.jsonl: 2 questions kept from an earlier run; 2 to go", done.stderr
    assert len(lines) == 2 and lines[1].startswith("error: cannot reach http://127.0.0.1:9/v1"), done.stderr
    assert out.read_text(encoding="utf-8") == before


def test_cli_demos_unreachable_endpoint_keeps_the_pool_header(tmp_path, tiny_mlm_dir, monkeypatch, capsys):
    """In process (the encoder is a local folder): the pool file is started before the server is asked."""
    from workbench.cli import main

    folder, _ = tiny_mlm_dir
    task = _write_task(tmp_path, n=10, demos=2)
    code = main(["cot", "demos", "--task", task, "--out", "d.json", "--encoder", str(folder), "--no-progress",
                 "--api-base", "http://127.0.0.1:9/v1", "--model", "x", "--retries", "0", "--timeout", "2"])
    lines = [x for x in capsys.readouterr().err.splitlines() if x.strip()]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: cannot reach"), lines
    rows = _pool_rows(tmp_path / "d.json.pool.jsonl")
    assert rows == [{"header": {"task": "toyarith", "generator": "x@http://127.0.0.1:9/v1", "max_tokens": 256}}]
    assert not (tmp_path / "d.json").exists()


def test_decoding_is_a_plain_dataclass():
    """The fakes above read decoding fields; keep them in step with the real class."""
    from workbench.instruct.backends import Decoding

    d = replace(Decoding(), stop=("\n",), max_tokens=5)
    assert d.stop == ("\n",) and d.max_tokens == 5 and d.temperature == 0.7
