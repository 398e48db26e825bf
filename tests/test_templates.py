import pytest

from workbench.errors import ConfigError
from workbench.models import ModelKind
from workbench.prompts import PromptEncoder, load_templates, parse_template
from workbench.prompts.template import Segment
from workbench.data import Example


def test_parses_openprompt_syntax():
    t = parse_template('{"placeholder":"text_a"} It was {"mask"}.')
    assert [s.kind for s in t.segments] == ["placeholder", "text", "mask", "text"]
    assert t.segments[0] == Segment("placeholder", "text_a", True)
    assert t.segments[1] == Segment("text", " It was ", False)


def test_soft_meta_text_and_options():
    t = parse_template('{"soft": "very good"} {"soft"} {"soft": null, "duplicate": 2} {"meta": "topic", '
                       '"shortenable": "False"} {"text": "\\nA:", "shortenable": true} {"mask"}')
    softs = [s for s in t.segments if s.kind == "soft"]
    assert [s.value for s in softs] == ["very", "good", "", "", ""]
    meta = next(s for s in t.segments if s.kind == "meta")
    assert meta == Segment("meta", "topic", False)
    assert Segment("text", "\nA:", True) in t.segments


def test_braces_inside_strings_are_text():
    t = parse_template('{"text": "a {curly} b"} {"mask"}')
    assert t.segments[0].value == "a {curly} b"


@pytest.mark.parametrize("text, problem", [
    ('{"placeholder":"text_a"} It was {"mask"}. {"mask"}', "2 masks"),
    ('{"placeholder":"text_c"} It was {"mask"}.', "unknown placeholder 'text_c'"),
    ('{"placeholder":"text_a" It was {"mask"}.', "never closed"),
    ('{"placeholder":"text_a"} It was {"mask"}}.', "unmatched '}'"),
    ('{"placeholder":"text_a", "post_processing": "lambda x: x"} {"mask"}', "post_processing is not supported"),
    ('{"shortenable": true} {"mask"}', "has no placeholder"),
    ('{"placeholder": "text_a", "shortenable": "maybe"} {"mask"}', "'shortenable' must be true or false"),
])
def test_rejects_bad_templates(text, problem):
    with pytest.raises(ConfigError, match=problem.replace("(", r"\(")):
        parse_template(text, "t.txt:3")


def test_template_file_errors_name_file_and_line(tmp_path):
    f = tmp_path / "sst2.txt"
    f.write_text('# comment\n{"placeholder":"text_a"} It was {"mask"}.\n{"placeholder":"text_a"} no mask {"mask"} {"mask"}\n')
    with pytest.raises(ConfigError, match=rf"{f}:3: template has 2 masks"):
        load_templates(f)
    f.write_text('# comment\n{"placeholder":"text_a"} It was {"mask"}.\n')
    assert list(load_templates(f)) == [1]  # ids are line numbers


def _example(text_a="it was a great movie", text_b=None):
    fields = {"sentence": text_a}
    if text_b is not None:
        fields["sentence2"] = text_b
    return Example("train-0", fields, 1)


def test_masked_lm_readout_is_the_mask(tiny_mlm):
    tok = tiny_mlm.tokenizer
    enc = PromptEncoder(parse_template('{"placeholder":"text_a"} It was {"mask"}.'), tok, ModelKind.MASKED,
                        ("sentence",), 64)
    e = enc.encode(_example())
    assert e.input_ids[0] == tok.cls_token_id and e.input_ids[-1] == tok.sep_token_id
    assert e.input_ids[e.readout] == tok.mask_token_id


def test_causal_lm_stops_at_the_mask(tiny_causal):
    tok = tiny_causal.tokenizer
    enc = PromptEncoder(parse_template('{"placeholder":"text_a"} It was {"mask"}.'), tok, ModelKind.CAUSAL,
                        ("sentence",), 64)
    e = enc.encode(_example())
    assert e.readout == len(e.input_ids) - 1
    assert tok.decode(e.input_ids).endswith("It was")


def test_causal_rejects_input_after_mask(tiny_causal):
    with pytest.raises(ConfigError, match="comes after the mask"):
        PromptEncoder(parse_template('Topic: {"mask"}. {"placeholder":"text_a"}', "t.txt:2"),
                      tiny_causal.tokenizer, ModelKind.CAUSAL, ("sentence",), 64)


def test_truncation_cuts_longest_shortenable_and_keeps_mask(tiny_mlm):
    tok = tiny_mlm.tokenizer
    tpl = parse_template('{"placeholder":"text_a"} and {"placeholder":"text_b", "shortenable": false} It was {"mask"}.')
    enc = PromptEncoder(tpl, tok, ModelKind.MASKED, ("sentence", "sentence2"), 16)
    long_a = " ".join(["great movie"] * 20)
    e = enc.encode(_example(long_a, "the plot was dull"))
    assert len(e.input_ids) == 16
    text = tok.decode(e.input_ids)
    assert "the plot was dull" in text and "it was" in text  # unshortenable parts survive
    assert e.input_ids[e.readout] == tok.mask_token_id


def test_template_too_long_for_context(tiny_mlm):
    tpl = parse_template('{"placeholder":"text_a"} ' + "very " * 40 + '{"mask"}', "long.txt:1")
    with pytest.raises(ConfigError, match="long.txt:1: the template alone is"):
        PromptEncoder(tpl, tiny_mlm.tokenizer, ModelKind.MASKED, ("sentence",), 32)


def test_placeholder_beyond_task_fields(tiny_mlm):
    tpl = parse_template('{"placeholder":"text_a"} {"placeholder":"text_b"} {"mask"}', "rte.txt:1")
    with pytest.raises(ConfigError, match="placeholder 'text_b' but the task has only 1 text field"):
        PromptEncoder(tpl, tiny_mlm.tokenizer, ModelKind.MASKED, ("sentence",), 32)


def test_soft_slots_are_recorded_in_place(tiny_causal):
    tpl = parse_template('{"placeholder":"text_a"} It {"soft"} {"soft"} was {"mask"}')
    enc = PromptEncoder(tpl, tiny_causal.tokenizer, ModelKind.CAUSAL, ("sentence",), 64)
    e = enc.encode(_example("great movie"))
    plain = tiny_causal.tokenizer("great movie It", add_special_tokens=False)["input_ids"]
    assert e.soft_slots == [len(plain), len(plain) + 1]


def test_builtin_template_files_parse():
    from workbench.recipes.train import TEMPLATES_DIR

    for path in TEMPLATES_DIR.glob("*.txt"):
        assert load_templates(path)
