"""Answer cleansing of the CoT modes (`workbench.cot.answers`) and the CoT tasks (`workbench.cot.tasks`): a table of
model outputs with the answer each must give, gold-answer normalisation, the six built-in arithmetic sets read
from the data folder, and a user's own task described by a YAML file."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
from conftest import requires_data

from workbench.cot.answers import cot_trigger, direct_trigger, extract, normalize
from workbench.cot.tasks import load_cot_task
from workbench.errors import ConfigError

# ---- extraction: (model output, answer type, few_shot, expected) ----------------------------------------------

ZS, FS = False, True  # zero-shot modes (answer stage) read the first candidate; few-shot modes split on the phrase

EXTRACT = [
    # numbers: thousands commas, decimals in one canonical spelling, negatives, trailing periods
    ("n-plain", " 18", "number", ZS, "18"),
    ("n-trailing-period", " 18.", "number", ZS, "18"),
    ("n-float-zero", " 18.0", "number", ZS, "18"),
    ("n-float-zeros-period", " 18.00.", "number", ZS, "18"),
    ("n-decimal-trailing-zero", " 2.50", "number", ZS, "2.5"),
    ("n-decimal", " $0.75 per apple.", "number", ZS, "0.75"),
    ("n-thousands", " 1,234 people", "number", ZS, "1234"),
    ("n-millions", " 1,234,567.", "number", ZS, "1234567"),
    ("n-thousands-decimal", " $1,234.50", "number", ZS, "1234.5"),
    ("n-negative", " -7 degrees.", "number", ZS, "-7"),
    ("n-negative-decimal", " -0.50", "number", ZS, "-0.5"),
    ("n-dollar", " $45.", "number", ZS, "45"),
    # several candidates: zero-shot takes the first
    ("n-zs-first-of-several", " 8 apples, since 5 + 3 = 8.", "number", ZS, "8"),
    ("n-zs-first-is-operand", " 5 + 3 = 8", "number", ZS, "5"),
    ("n-zs-phrase-ignored", " 12. The answer is 13.", "number", ZS, "12"),
    # few-shot: first candidate after the LAST "The answer is"; the last candidate when the phrase is absent
    ("n-fs-after-phrase", " 5 + 3 = 8. The answer is 8.", "number", FS, "8"),
    ("n-fs-first-after-phrase", " The answer is 9 apples, not 10.", "number", FS, "9"),
    ("n-fs-last-phrase", " The answer is 3. No wait, 4 + 5 = 9. The answer is 9.", "number", FS, "9"),
    ("n-fs-runs-on", " 2 * 6 = 12. The answer is 12.\n\nQ: Tom has 40 pens. How many?\nA: 40", "number", FS,
     "12"),
    ("n-fs-no-phrase-last", " We have 5 apples and 3 more, 8 in all.", "number", FS, "8"),
    ("n-fs-no-phrase-commas", " 1,000 and 2,500 make 3,500.", "number", FS, "3500"),
    ("n-fs-phrase-then-nothing", " The answer is 5. The answer is unknown.", "number", FS, ""),
    ("n-fs-trailing-period-decimal", " So 7.5 - 2.5 = 5.0. The answer is 5.0.", "number", FS, "5"),
    # no candidate
    ("n-none", " I do not know.", "number", ZS, ""),
    ("n-none-fs", " I do not know. The answer is unclear.", "number", FS, ""),
    ("n-empty", "", "number", ZS, ""),
    # letters A-E: standalone capitals only ("Among" is no A, lower case is no letter)
    ("l-paren", " (C).", "letter", ZS, "C"),
    ("l-bare", " E", "letter", ZS, "E"),
    ("l-among", " Among the choices, the answer is (D).", "letter", ZS, "D"),
    ("l-among-only", " Among them all.", "letter", ZS, ""),
    ("l-lowercase", " c", "letter", ZS, ""),
    ("l-not-f", " F", "letter", ZS, ""),
    ("l-zs-first", " B or maybe D", "letter", ZS, "B"),
    ("l-fs-phrase", " 40 / 0.8 = 50, which is choice D. The answer is D.", "letter", FS, "D"),
    ("l-fs-no-phrase-last", " Not A; it is B, so C.", "letter", FS, "C"),
    # yes / no
    ("yn-yes", " Yes.", "yes-no", ZS, "yes"),
    ("yn-no-comma", " No, because it flipped twice.", "yes-no", ZS, "no"),
    ("yn-know-is-not-no", " I know it is yes", "yes-no", ZS, "yes"),
    ("yn-none", " Maybe.", "yes-no", ZS, ""),
    ("yn-fs-phrase", " It was flipped, so no. The answer is yes.", "yes-no", FS, "yes"),
    ("yn-fs-no-phrase-last", " Yes it was flipped, so no.", "yes-no", FS, "no"),
    # text: the first line, trimmed, lower case, no trailing period
    ("t-plain", "  Elon Musk.", "text", ZS, "elon musk"),
    ("t-first-line", " nk\nmore text", "text", ZS, "nk"),
    ("t-quotes-spaces", ' "ab  cd".', "text", ZS, "ab cd"),
    ("t-fs-quoted", ' The last letters are n and k. The answer is "nk".', "text", FS, "nk"),
    ("t-fs-phrase", " The last letters are n and k. The answer is nk.\n\nQ: next", "text", FS, "nk"),
    ("t-empty", "   ", "text", ZS, ""),
]


@pytest.mark.parametrize("text,answer_type,few_shot,expected",
                         [pytest.param(*row[1:], id=row[0]) for row in EXTRACT])
def test_extract(text, answer_type, few_shot, expected):
    assert extract(text, answer_type, few_shot) == expected


def test_extract_refuses_an_unknown_answer_type():
    with pytest.raises(ValueError, match="float"):
        extract("1", "float", False)


@pytest.mark.parametrize("value", ["5", "-12", "0.5", "2.25", "1234567", "123456789012", "100000000000000000000"])
def test_the_canonical_spelling_keeps_the_value(value):
    """Whatever spelling cleansing chooses, it must still be the same number: a gold answer of 10**20 must not be
    the same string as one of 10**200 or 100."""
    got = extract(f" {value}.", "number", False)
    assert float(got) == float(value), got
    assert normalize(value, "number", "here") == got


def test_triggers():
    assert cot_trigger("number") == "\nTherefore, the answer (arabic numerals) is"
    assert cot_trigger("letter") == "\nTherefore, among A through E, the answer is"
    assert cot_trigger("yes-no") == "\nTherefore, the answer (Yes or No) is"
    assert direct_trigger("number") == "The answer (arabic numerals) is"
    assert direct_trigger("letter") == "Among A through E, the answer is"


# ---- gold answers -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("value,answer_type,expected", [
    ("1,234", "number", "1234"),
    ("  72 ", "number", "72"),
    (5.0, "number", "5"),
    ("5.00", "number", "5"),
    (12, "number", "12"),
    (-3.0, "number", "-3"),
    ("2.50", "number", "2.5"),
    (0.75, "number", "0.75"),
    ("(C)", "letter", "C"),
    ("c", "letter", "C"),
    ("E", "letter", "E"),
    ("Yes", "yes-no", "yes"),
    ("no.", "yes-no", "no"),
    (True, "yes-no", "yes"),
    (False, "yes-no", "no"),
    ("  Elon Musk. ", "text", "elon musk"),
])
def test_normalize(value, answer_type, expected):
    assert normalize(value, answer_type, "data.json: record 3") == expected


@pytest.mark.parametrize("value,answer_type", [
    ("twelve", "number"), ("", "number"), (None, "number"), ("nan", "number"), ("inf", "number"),
    ("12 apples", "number"), ("AB", "letter"), ("", "letter"), ("(3)", "letter"), ("maybe", "yes-no"),
    (1, "yes-no"),
])
def test_normalize_refuses_bad_values_naming_where(value, answer_type):
    with pytest.raises(ConfigError) as info:
        normalize(value, answer_type, "gold.jsonl: record 7")
    assert "gold.jsonl: record 7" in str(info.value)
    assert answer_type in str(info.value)


def test_gold_answers_match_what_cleansing_reads_from_the_same_number():
    """Accuracy is a plain string comparison, so gold and prediction must meet in one spelling."""
    for gold, output in [("1,234", " 1234."), (5.0, " 5"), ("2.50", " $2.5."), (18, " 18.0")]:
        assert normalize(gold, "number", "x") == extract(output, "number", False)


# ---- the built-in tasks -----------------------------------------------------------------------------------------

DATA = Path(os.environ.get("WORKBENCH_DATA_DIR") or Path(__file__).resolve().parents[2] / "shared" / "data")
COUNTS = {"multiarith": 600, "gsm8k": 1319, "svamp": 1000, "addsub": 395, "singleeq": 508, "aqua": 254}
CANONICAL = re.compile(r"-?\d+(\.\d*[1-9])?")


def _raw(name: str) -> list[dict]:
    path = {"multiarith": "multiarith/test.json", "gsm8k": "gsm8k/test.jsonl", "svamp": "svamp/test.json",
            "addsub": "addsub/test.json", "singleeq": "singleeq/test.json", "aqua": "aqua/test.jsonl"}[name]
    text = (DATA / path).read_text(encoding="utf-8")
    return json.loads(text) if text.lstrip().startswith("[") else [json.loads(x) for x in text.splitlines() if x]


@requires_data("multiarith")
@pytest.mark.parametrize("name", list(COUNTS))
def test_builtin_task_loads_with_normalized_gold(name):
    task = load_cot_task(name)
    raw = _raw(name)
    assert task.name == name
    assert len(task.questions) == COUNTS[name] == len(raw)
    assert task.answer_type == ("letter" if name == "aqua" else "number")
    assert task.demos == (4 if name == "aqua" else 8)
    assert len({q.qid for q in task.questions}) == len(task.questions)
    for q, r in zip(task.questions, raw):
        assert q.question and q.question == q.question.strip()
        if name == "aqua":
            assert q.gold in "ABCDE" and len(q.gold) == 1 and q.gold == r["correct"].strip()
            assert "Answer Choices: (A)" in q.question
            assert all(f"({c})" in q.question for c in "ABCDE")
            continue
        assert CANONICAL.fullmatch(q.gold), (name, q.qid, q.gold)  # no commas, no "5.0"
        if name == "gsm8k":
            expected = float(r["answer"].split("####")[-1].strip().replace(",", ""))
        elif name == "svamp":
            expected = float(r["Answer"])
            assert q.question == f"{r['Body'].strip()} {r['Question'].strip()}"
        else:
            expected = float(r["lSolutions"][0])
            assert q.question == r["sQuestion"].strip()
        assert float(q.gold) == pytest.approx(expected, abs=1e-6), (name, q.qid)  # 1/6 is kept as 0.166667


@requires_data("gsm8k")
def test_gsm8k_gold_with_thousands_commas():
    task = load_cot_task("gsm8k")
    raw = _raw("gsm8k")
    with_comma = [(q, r) for q, r in zip(task.questions, raw) if "," in r["answer"].split("####")[-1]]
    assert with_comma, "the GSM8K test set has answers such as '#### 2,125'"
    for q, r in with_comma:
        assert q.gold == r["answer"].split("####")[-1].strip().replace(",", "")


def test_builtin_task_without_data_dir_is_refused(monkeypatch):
    from workbench.errors import WorkbenchError

    monkeypatch.delenv("WORKBENCH_DATA_DIR", raising=False)
    with pytest.raises(WorkbenchError, match="WORKBENCH_DATA_DIR"):
        load_cot_task("multiarith")


def test_unknown_task_names_the_choices():
    with pytest.raises(ConfigError) as info:
        load_cot_task("nope")
    assert "'nope'" in str(info.value) and "multiarith" in str(info.value)


# ---- a user's task from a YAML file -----------------------------------------------------------------------------

def _write_user_task(tmp_path: Path, spec: str, records: list[dict]) -> Path:
    (tmp_path / "data").mkdir(exist_ok=True)
    (tmp_path / "data" / "coins.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    path = tmp_path / "coin.yaml"
    path.write_text(spec, encoding="utf-8")
    return path


COIN_RECORDS = [
    {"q": "A coin is heads up. Ann flips it. Is it still heads up?", "a": "No"},
    {"q": "A coin is heads up. Ann does not flip it. Is it still heads up?", "a": "yes"},
    {"q": "A coin is heads up. Ann and Bob flip it. Is it still heads up?", "a": True},
]
COIN_SPEC = "name: coin\ndata: data/coins.jsonl\nquestion_field: q\nanswer_field: a\nanswer_type: yes-no\ndemos: 2\n"


def test_user_task_loads_with_no_code_change(tmp_path):
    path = _write_user_task(tmp_path, COIN_SPEC, COIN_RECORDS)
    task = load_cot_task(str(path))
    assert task.name == "coin"
    assert task.answer_type == "yes-no"
    assert task.demos == 2
    assert [q.question for q in task.questions] == [r["q"] for r in COIN_RECORDS]
    assert [q.gold for q in task.questions] == ["no", "yes", "yes"]
    assert len({q.qid for q in task.questions}) == 3
    assert Path(task.source) == (tmp_path / "data" / "coins.jsonl").resolve()
    # a model's answer meets the gold answer in the same spelling
    assert extract(" No, it is tails.", task.answer_type, False) == task.questions[0].gold


def test_user_task_demos_default_to_8(tmp_path):
    path = _write_user_task(tmp_path, COIN_SPEC.replace("demos: 2\n", ""), COIN_RECORDS)
    assert load_cot_task(str(path)).demos == 8


@pytest.mark.parametrize("spec,expect", [
    (COIN_SPEC + "prompt: hi\n", "unknown key 'prompt'"),
    (COIN_SPEC.replace("answer_field: a\n", ""), "'answer_field' is required"),
    (COIN_SPEC.replace("question_field: q\n", ""), "'question_field' is required"),
    (COIN_SPEC.replace("answer_type: yes-no", "answer_type: boolean"), "answer_type 'boolean'"),
    (COIN_SPEC.replace("demos: 2", "demos: 0"), "demos 0"),
    ("- just\n- a list\n", "expected a mapping"),
    ("name: [unclosed\n", "not valid YAML"),
    ("", "expected a mapping"),
    # the one safe loader (workbench.config.yaml_io): aliases and a key written twice are refused, naming the line
    ("base: &b coin\n" + COIN_SPEC.replace("name: coin", "name: *b"), "line 2: YAML aliases (*b) are not supported"),
    (COIN_SPEC + "answer_type: number\n", "line 7: key 'answer_type' appears twice"),
], ids=["unknown-key", "missing-answer-field", "missing-question-field", "bad-answer-type", "bad-demos",
        "not-a-mapping", "bad-yaml", "empty", "alias", "duplicate-key"])
def test_user_task_errors_name_the_file(tmp_path, spec, expect):
    path = _write_user_task(tmp_path, spec, COIN_RECORDS)
    with pytest.raises(ConfigError) as info:
        load_cot_task(str(path))
    message = str(info.value)
    assert str(path) in message
    assert expect in message


def test_user_task_record_missing_the_question_field(tmp_path):
    records = [COIN_RECORDS[0], {"question": "typo in the field name", "a": "yes"}]
    path = _write_user_task(tmp_path, COIN_SPEC, records)
    with pytest.raises(ConfigError) as info:
        load_cot_task(str(path))
    message = str(info.value)
    assert str(path) in message  # the YAML that names the field
    assert "coins.jsonl" in message and "record 1" in message and "'q'" in message


def test_user_task_bad_gold_answer_names_the_record(tmp_path):
    records = [COIN_RECORDS[0], {"q": "Is it?", "a": "perhaps"}]
    path = _write_user_task(tmp_path, COIN_SPEC, records)
    with pytest.raises(ConfigError) as info:
        load_cot_task(str(path))
    assert "coins.jsonl: record 1" in str(info.value) and "'perhaps'" in str(info.value)


def test_user_task_missing_data_file_is_refused(tmp_path):
    from workbench.errors import WorkbenchError

    path = tmp_path / "t.yaml"
    path.write_text(COIN_SPEC.replace("data/coins.jsonl", "data/none.jsonl"), encoding="utf-8")
    with pytest.raises(WorkbenchError) as info:
        load_cot_task(str(path))
    assert "none.jsonl" in str(info.value)


def test_user_task_yaml_file_missing(tmp_path):
    with pytest.raises(ConfigError, match="no such file"):
        load_cot_task(str(tmp_path / "absent.yaml"))
