import pytest
import torch

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
