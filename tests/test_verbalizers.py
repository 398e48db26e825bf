import pytest
import torch
from bad_inputs import Case, run_case
from conftest import requires_data

from workbench.errors import ConfigError
from workbench.prompts import Verbalizer, load_verbalizer
from workbench.prompts.verbalizer import label_word_ids


def test_file_format_one_line_per_class(tmp_path):
    f = tmp_path / "v.txt"
    f.write_text("bad, terrible\ngood,great\n")
    v = load_verbalizer(f)
    assert v.words == (("bad", "terrible"), ("good", "great"))
    v.check_classes(("negative", "positive"))
    with pytest.raises(ConfigError, match=r"2 lines of label words, but the task has 3 classes"):
        v.check_classes(("a", "b", "c"))


def test_blank_line_and_empty_word_named(tmp_path):
    f = tmp_path / "v.txt"
    f.write_text("bad\n\ngood\n")
    with pytest.raises(ConfigError, match=rf"{f}:2: blank line"):
        load_verbalizer(f)
    f.write_text("bad,\ngood\n")
    with pytest.raises(ConfigError, match=rf"{f}:1: empty label word"):
        load_verbalizer(f)


def test_word_outside_vocabulary(tiny_mlm):
    v = Verbalizer.from_lines(["bad", "zzzqx"], "v.txt")
    # the tiny WordPiece vocab spells unknown words with character pieces: that is multi-token, not unknown
    with pytest.raises(ConfigError, match=r"v.txt:2: label word 'zzzqx' is \d+ tokens"):
        label_word_ids(v, tiny_mlm.tokenizer)
    v = Verbalizer.from_lines(["bad", "€"], "v.txt")
    with pytest.raises(ConfigError, match=r"v.txt:2: label word '€' is not in the model's vocabulary"):
        label_word_ids(v, tiny_mlm.tokenizer)


def test_multi_token_policies(tiny_mlm):
    tok = tiny_mlm.tokenizer
    v = Verbalizer.from_lines(["bad, dullish", "great"], "v.txt")
    first = label_word_ids(v, tok, "first")
    mean = label_word_ids(v, tok, "mean")
    dull_ids = tok("dullish", add_special_tokens=False)["input_ids"]
    assert len(dull_ids) > 1
    assert dull_ids[0] in first.token_ids and dull_ids[-1] not in first.token_ids
    assert set(dull_ids) <= set(mean.token_ids)
    # each class row averages its words, each word averages its tokens: rows sum to one
    assert torch.allclose(mean.class_matrix.sum(1), torch.ones(2))
    assert mean.multi_token == "mean"
    with pytest.raises(ConfigError, match="choose one of"):
        label_word_ids(v, tok, "max")


# --- OpenPrompt's other verbalizer files: long word lists, JSON, template-syntax label words ------------------

def test_long_lists_and_trailing_blank_lines(tmp_path):
    f = tmp_path / "knowledgeable.txt"
    f.write_text("awful, bad, dreadful, grim\ngood,fine,splendid,great\n\n\n")
    v = load_verbalizer(f)
    assert v.words == (("awful", "bad", "dreadful", "grim"), ("good", "fine", "splendid", "great"))
    assert v.where(1) == f"{f}:2"


def test_empty_file_and_blank_gap_are_refused(tmp_path):
    f = tmp_path / "empty.txt"
    f.write_text("\n")
    with pytest.raises(ConfigError, match=rf"{f}: no label words \(the file is empty\)"):
        load_verbalizer(f)
    f.write_text("bad\n\ngood\n")
    with pytest.raises(ConfigError, match=r"second verbalizer") as err:
        load_verbalizer(f)
    assert "\n" not in str(err.value)


def test_template_syntax_label_words(tmp_path):
    f = tmp_path / "generation_verbalizer.txt"
    f.write_text(' {"text": "No"}\n{"text":"Yes"} \n')
    assert load_verbalizer(f).words == (("No",), ("Yes",))
    f.write_text('{"text": "Neither"}\n {"meta": "option2"} \n')
    with pytest.raises(ConfigError, match=rf"{f}:2: this label word is filled from each example \(meta\)"):
        load_verbalizer(f)


def test_json_verbalizer(tmp_path):
    f = tmp_path / "v.json"
    f.write_text('{\n  "negative": ["bad", " awful "],\n  "positive": "good"\n}\n')
    v = load_verbalizer(f)
    assert v.words == (("bad", "awful"), ("good",))
    assert v.classes == ("negative", "positive")
    assert v.lines == (2, 3)
    v.check_classes(("negative", "positive"))
    v.check_classes(("neg", "pos"))  # other names: matched by position, like a .txt file
    with pytest.raises(ConfigError, match=r"order \['negative', 'positive'\] but the task's order is"):
        v.check_classes(("Positive", "Negative"))
    with pytest.raises(ConfigError, match=r"2 classes \(negative, positive\), but the task has 3 classes"):
        v.check_classes(("a", "b", "c"))


def test_json_problems_name_file_and_line(tmp_path, tiny_mlm):
    f = tmp_path / "v.json"
    f.write_text('{\n  "negative": ["bad"],\n  "positive": ["€"]\n}\n')
    with pytest.raises(ConfigError, match=rf"{f}:3: label word '€' is not in the model's vocabulary"):
        label_word_ids(load_verbalizer(f), tiny_mlm.tokenizer)
    f.write_text('{"negative": ["bad"],\n "positive": []}')
    with pytest.raises(ConfigError, match=rf"{f}:2: class 'positive' has an empty label word or none"):
        load_verbalizer(f)
    f.write_text('{"negative": ["bad"], "negative": ["awful"]}')
    with pytest.raises(ConfigError, match="given twice"):
        load_verbalizer(f)
    f.write_text('{"negative": ["bad"],\n "positive": ["good"]')
    with pytest.raises(ConfigError, match=rf"{f}:2: invalid JSON"):
        load_verbalizer(f)


def test_several_verbalizers_in_one_file(tmp_path):
    f = tmp_path / "multi.jsonl"
    f.write_text('[\n {"neg": ["bad"], "pos": ["good"]},\n {"neg": ["bad", "dull"], "pos": ["good", "fun"]}\n]\n')
    assert load_verbalizer(f).words == (("bad",), ("good",))  # the first, as OpenPrompt's choice=0
    assert load_verbalizer(f, choice=1).words == (("bad", "dull"), ("good", "fun"))
    assert load_verbalizer(f, choice=1).lines == (3, 3)
    with pytest.raises(ConfigError, match="holds 2 verbalizer"):
        load_verbalizer(f, choice=2)
    f.write_text('{"neg": ["bad"], "pos": ["good"]}\n{"neg": ["dull"], "pos": ["fun"]}\n')  # JSON Lines
    assert load_verbalizer(f, choice=1).words == (("dull",), ("fun",))


def test_classes_on_one_line_get_a_hint():
    v = Verbalizer.from_lines(["Yes No"], "v.txt")
    with pytest.raises(ConfigError, match=r"1 line of label words, .*'Yes No' is one label word"):
        v.check_classes(("yes", "no"))


@pytest.mark.parametrize("lines, policy", [(["not good", "not bad"], "first"), (["good bad", "bad good"], "mean"),
                                           (["not good, not fun", "not bad, not dull"], "first")],
                         ids=["same-first-token", "same-tokens-any-order", "same-words-per-class"])
def test_classes_that_cannot_be_told_apart_are_refused_naming_both(tiny_mlm, lines, policy):
    v = Verbalizer.from_lines(lines, "v.txt")
    with pytest.raises(ConfigError) as e:
        label_word_ids(v, tiny_mlm.tokenizer, policy)
    message = str(e.value)
    assert message.startswith("v.txt:2: class 2 (line 2)") and "class 1 (line 1)" in message
    assert f"cannot be told apart under --multi-token {policy}" in message and "\n" not in message


def test_classes_told_apart_by_a_later_token_pass_under_mean(tiny_mlm):
    v = Verbalizer.from_lines(["not good", "not bad"], "v.txt")
    assert label_word_ids(v, tiny_mlm.tokenizer, "mean").class_matrix.shape[0] == 2


@requires_data("sst2")
def test_indistinguishable_label_words_are_refused_before_the_model_loads(tiny_mlm_dir, tmp_path, monkeypatch,
                                                                          capsys):
    folder, _ = tiny_mlm_dir
    case = Case("multi-token-first-same-token", ["train", "--task", "sst2", "--model", str(folder), "--template-id",
                                                 "1", "--verbalizer-file", "v.txt", "--multi-token", "first"],
                ["v.txt:2: class 2 (line 2) ['not bad']", "class 1 (line 1) ['not good']",
                 "cannot be told apart under --multi-token first"], {"v.txt": "not good\nnot bad\n"})
    run_case(case, tmp_path, monkeypatch, capsys)
