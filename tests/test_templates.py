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
    ('{"placeholder":"text_a", "post_processing": "lambda x: x.title()"} {"mask"}', "is not a supported operation"),
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
    from workbench.resources import templates_dir

    paths = list(templates_dir().glob("*.txt"))
    assert paths
    for path in paths:
        assert load_templates(path)


# --- OpenPrompt's published syntax: Python literals, special tokens, post_processing -------------------------
# Our own example lines in OpenPrompt's spelling (fragments are read with json/ast, never evaluated).

def test_python_literals_in_fragments():
    t = parse_template("""{"placeholder": 'text_a', "shortenable": False} {"meta": "topic", "shortenable": True} """
                       """{"soft": None, "duplicate": 2} {'mask'}""")
    assert t.segments[0] == Segment("placeholder", "text_a", False)
    assert Segment("meta", "topic", True) in t.segments
    assert [s.value for s in t.segments if s.kind == "soft"] == ["", ""]
    assert t.segments[-1] == Segment("mask")


def test_special_tokens():
    t = parse_template('{"placeholder": "text_a"} {"special": "<sep>"} Topic: {"mask"} {"special": "eos"}')
    assert [s for s in t.segments if s.kind == "special"] == [Segment("special", "sep"), Segment("special", "eos")]
    with pytest.raises(ConfigError, match=r"t.txt:3: unknown special token '<unk>'; use one of <sep>, <cls>"):
        parse_template('{"placeholder": "text_a"} {"special": "<unk>"} {"mask"}', "t.txt:3")
    with pytest.raises(ConfigError, match=r'write the mask as \{"mask"\}'):
        parse_template('{"placeholder": "text_a"} {"special": "<mask>"}', "t.txt:3")


@pytest.mark.parametrize("spelled, ops", [
    ('lambda s: s[:-1]', ("drop_last",)),
    ('lambda x:x+"."', ("append:.",)),
    ('"lambda x:x.strip(\'.\')"', ("strip:.",)),  # OpenPrompt also writes lambdas as strings
    ('lambda s: s[:1].lower() + s[1:]', ("lower_first",)),
    ('lambda t: t[0].upper() + t[1:]', ("upper_first",)),
    ('lambda s: s.rstrip(string.punctuation)', ("rstrip_punct",)),
    ('lambda x: x.rstrip("?!")', ("rstrip:?!",)),
    ('lambda x: x.strip().lower()', ("strip", "lower")),
    ('lambda x: "Q: " + x', ("prepend:Q: ",)),
    ('lambda x: x', ()),
    ('"lower"', ("lower",)),
    ('["strip", "append:!"]', ("strip", "append:!")),
    ('"rstrip:.,"', ("rstrip:.,",)),
    ('null', ()),
])
def test_post_processing_is_matched_to_named_operations(spelled, ops):
    t = parse_template('{"placeholder": "text_a", "post_processing": ' + spelled + '} It was {"mask"}.')
    assert t.segments[0].post == ops
    assert t.segments[0].kind == "placeholder" and t.segments[0].shortenable


@pytest.mark.parametrize("ops, text, out", [
    (("drop_last",), "A fine film.", "A fine film"),
    (("append:.",), "a fine film", "a fine film."),
    (("strip:.",), "..ok..", "ok"),
    (("lower_first",), "The film", "the film"),
    (("upper_first",), "the film", "The film"),
    (("rstrip_punct",), "really?!", "really"),
    (("strip", "lower"), "  LOUD ", "loud"),
    (("prepend:Q: ", "upper"), "why", "Q: WHY"),
    (("lstrip",), "  x ", "x "),
    (("drop_last",), "", ""),
])
def test_apply_post(ops, text, out):
    from workbench.prompts.template import apply_post

    assert apply_post(ops, text) == out


@pytest.mark.parametrize("text, problem", [
    ('{"placeholder": "text_a", "post_processing": lambda x: __import__(\'os\').system(\'ls\')} {"mask"}',
     "is not a supported operation; templates are never evaluated"),
    ('{"placeholder": "text_a", "post_processing": lambda x: x.replace("a", "b")} {"mask"}',
     "is not a supported operation"),
    ('{"placeholder": "text_a", "post_processing": "lambda x: eval(x)"} {"mask"}', "is not a supported operation"),
    ('{"placeholder": __import__("os").system("ls")} {"mask"}', "must be a literal"),
    ('{"text": lambda x: x} {"mask"}', "must be a literal"),
    ('{"placeholder": "text_a", "post_processing": "shout"} {"mask"}', "unknown post_processing operation 'shout'"),
    ('{"placeholder": "text_a", "post_processing": "append"} {"mask"}', "unknown post_processing operation"),
    ('{"meta": "turns", "post_processing": lambda x: " | ".join(x)} {"mask"}', "joins a list"),
    ('{"text": "Answer:", "post_processing": "lower"} {"mask"}', "applies to placeholder and meta fields only"),
    ('{"soft": None, "post_processing": "mlp"} {"mask"}', "'mlp'"),
    ('{"soft": None} {"soft_id": 1} {"mask"}', "shared soft tokens"),
    ('{"soft": "the", "duplicate": 3} {"mask"}', "'duplicate' repeats random soft tokens"),
    ('{"placeholder": "text_a", "meta": "x"} {"mask"}', "mixes placeholder and meta"),
    ('{"placeholder": "text_a"} {"mask": null, "shortenable": true}', "'shortenable' does not apply to a mask"),
    ('{"placeholder": "text_a", "new_token": 1} {"mask"}', r"unknown key\(s\) \['new_token'\]"),
    ('{"placeholder": "text_a", "shortenable": False, "shortenable": True} {"mask"}', "appears twice"),
    ('{"placeholder": "text_a", "add_prefix_space": "  "} {"mask"}', "'add_prefix_space' must be"),
    ('{"placeholder": "text_a"} {"mask"} and {"mask"}, {"mask"}',
     "has 3 masks; only single-mask templates are supported"),
])
def test_refusals_are_one_line_naming_file_and_line(text, problem):
    with pytest.raises(ConfigError, match=problem) as err:
        parse_template(text, "t.txt:3")
    assert str(err.value).startswith("t.txt:3: ")
    assert "\n" not in str(err.value)


def test_refused_code_is_never_run(tmp_path):
    marker = tmp_path / "ran"
    for text in (f'{{"placeholder": "text_a", "post_processing": lambda x: open({str(marker)!r}, "w")}} {{"mask"}}',
                 f'{{"placeholder": "text_a", "post_processing": "lambda x: open({str(marker)!r}, \'w\')"}} {{"mask"}}',
                 f'{{"text": open({str(marker)!r}, "w")}} {{"mask"}}'):
        with pytest.raises(ConfigError):
            parse_template(text, "t.txt:1")
    assert not marker.exists()


def test_add_prefix_space_replaces_written_spaces():
    t = parse_template('It was   {"mask": None, "add_prefix_space": ""}!')
    assert [s.value for s in t.segments if s.kind == "text"] == ["It was", "!"]
    t = parse_template('Review:{"placeholder": "text_a", "add_prefix_space": " "} {"mask"}')
    kinds = [(s.kind, s.value) for s in t.segments]
    assert kinds[:3] == [("text", "Review:"), ("text", " "), ("placeholder", "text_a")]


def test_file_in_openprompt_spelling_loads(tmp_path):
    f = tmp_path / "mixed.txt"
    f.write_text(' {"placeholder":"text_a", "shortenable":False, "post_processing": lambda x:x+"."} '
                 '{"placeholder":"text_b"} {"mask"}\n'
                 '{"placeholder": "text_a"} {"special": "<sep>"} In short: {"mask"} .\n'
                 '\n'
                 ' {"soft"} {"soft": "in short"} '
                 '{"placeholder": "text_a", "post_processing": "lambda s: s[:-1]"} {"mask"}\n')
    templates = load_templates(f)
    assert sorted(templates) == [0, 1, 3]
    assert templates[0].segments[1].post == ("append:.",)
    assert templates[3].num_soft == 3


def test_special_token_encodes_to_the_tokenizers_id(tiny_mlm, tiny_causal):
    tok = tiny_mlm.tokenizer
    tpl = parse_template('{"placeholder":"text_a"} {"special": "<sep>"} It was {"mask"}.', "t.txt:1")
    e = PromptEncoder(tpl, tok, ModelKind.MASKED, ("sentence",), 64).encode(_example("great movie"))
    assert e.input_ids.count(tok.sep_token_id) == 2  # ours, then the tokenizer's closing [SEP]
    assert e.input_ids[3] == tok.sep_token_id  # [CLS] great movie [SEP] it was ...
    assert e.input_ids[e.readout] == tok.mask_token_id
    # the byte-BPE tokenizer has no sep token: said at construction, naming the template
    with pytest.raises(ConfigError, match=r"t.txt:1: .*tokenizer has no sep token"):
        PromptEncoder(tpl, tiny_causal.tokenizer, ModelKind.CAUSAL, ("sentence",), 64)
    eos = parse_template('{"placeholder":"text_a"} {"special": "<eos>"} It was {"mask"}', "t.txt:2")
    e = PromptEncoder(eos, tiny_causal.tokenizer, ModelKind.CAUSAL, ("sentence",), 64).encode(_example("great movie"))
    assert tiny_causal.tokenizer.eos_token_id in e.input_ids


def test_post_processing_applies_when_encoding_and_rendering(tiny_mlm):
    from workbench.prompts.encoding import render

    tok = tiny_mlm.tokenizer
    tpl = parse_template('{"placeholder":"text_a", "post_processing": lambda s: s[:-1]} It was {"mask"}')
    e = PromptEncoder(tpl, tok, ModelKind.MASKED, ("sentence",), 64).encode(_example("great movie!"))
    assert tok.decode(e.input_ids) == "[CLS] great movie it was [MASK] [SEP]"
    upper = parse_template('{"placeholder":"text_a", "post_processing": ["upper_first", "append:."]} It was {"mask"}')
    assert render(upper, _example("great movie"), ("sentence",), "good") == "Great movie. It was good"
