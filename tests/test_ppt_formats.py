"""PPT corpus reading and pre-training formats (workbench.ppt.corpus, workbench.ppt.formats), on a small synthetic
corpus whose sentences say which document and position they come from."""

from __future__ import annotations

import json
import re
from collections import Counter

import pytest

from workbench.data.tasks import Example
from workbench.errors import ConfigError
from workbench.ppt import formats as F
from workbench.ppt.corpus import Document, detokenize, long_documents, read_corpus, split_sentences
from workbench.prompts.encoding import render
from workbench.prompts.verbalizer import Verbalizer

TOPICS = ("rivers and hills", "old castles", "green forests", "quiet harbours", "distant stars")
N_DOCS, N_SENT = 5, 8
ID = re.compile(r"^Document (\d+) sentence (\d+) ")
OPTION_LINE = re.compile(r"^([A-P])\. (.*)$")


def sentence(d: int, s: int) -> str:
    """9 words plus 4*s filler words: sentences 6 and 7 exceed the 30-word option cap, most exceed 15."""
    return f"Document {d} sentence {s} talks about {TOPICS[d]}" + "".join(f" w{k}" for k in range(4 * s)) + "."


def where(text: str) -> tuple[int, int]:
    """(document, position) of a sentence, also of a sentence cut to its first words."""
    m = ID.match(text)
    assert m, text
    return int(m.group(1)), int(m.group(2))


DOCS = [Document(f"mem:{d}", tuple(sentence(d, s) for s in range(N_SENT))) for d in range(N_DOCS)]
LONG = long_documents(DOCS)


def options(example: Example) -> list[str]:
    lines = example.fields["text_b"].split("\n")
    parsed = [OPTION_LINE.match(line) for line in lines]
    assert all(parsed), lines
    assert [m.group(1) for m in parsed] == list(F.LETTERS[: len(lines)])
    return [m.group(2) for m in parsed]


def many(build, seeds=range(8)) -> list[Example]:
    return [ex for seed in seeds for ex in build(seed)]


# ---- corpus reading -------------------------------------------------------------------------------------------

def test_wikitext_headings_split_documents_and_drop_subheadings(tmp_path):
    """`= T =` starts a document, blank lines inside one do not, `= = S = =` lines are no sentences."""
    f = tmp_path / "wiki.txt"
    f.write_text(" = Alpha =\n\n First alpha sentence is here . Second alpha sentence is here .\n\n"
                 " = = Part one = =\n\n Third alpha sentence is here .\n\n"
                 " = Beta =\n\n = = = Deep = = =\n Only beta sentence is here .\n")
    docs = read_corpus(f)
    assert [d.sentences for d in docs] == [
        ("First alpha sentence is here.", "Second alpha sentence is here.", "Third alpha sentence is here."),
        ("Only beta sentence is here.",)]
    assert docs[0].source == f"{f}:3" and docs[1].source == f"{f}:12"


def test_markdown_headings_split_documents(tmp_path):
    """`# T` starts a document, `## S` is dropped."""
    f = tmp_path / "notes.md"
    f.write_text("# One\nAlpha one is a sentence.\n\n## Sub\nAlpha two is a sentence.\n# Two\nBeta one is here.\n")
    assert [d.sentences for d in read_corpus(f)] == [
        ("Alpha one is a sentence.", "Alpha two is a sentence."), ("Beta one is here.",)]


def test_blank_lines_split_documents_without_headings(tmp_path):
    """Without top headings every blank-line block is a document; runs of blank lines make no empty document."""
    f = tmp_path / "plain.txt"
    f.write_text("A first block line. It has two sentences!\nA second line of it?\n\n\n\nSecond block here.\n"
                 "## Not a heading here\n\nThird block here.\n")
    docs = read_corpus(f)
    assert [d.sentences for d in docs] == [
        ("A first block line.", "It has two sentences!", "A second line of it?"),
        ("Second block here.",), ("Third block here.",)]
    assert [d.source for d in docs] == [f"{f}:1", f"{f}:6", f"{f}:9"]


def test_jsonl_text_field(tmp_path):
    """One document per record from the named field; blank lines and empty texts are skipped."""
    f = tmp_path / "c.jsonl"
    f.write_text(json.dumps({"body": "One a. Two b.\nThree c.", "id": 1}) + "\n\n"
                 + json.dumps({"body": ""}) + "\n" + json.dumps({"body": "Four d."}) + "\n")
    docs = read_corpus(f, text_field="body")
    assert [d.sentences for d in docs] == [("One a.", "Two b.", "Three c."), ("Four d.",)]
    assert [d.source for d in docs] == [f"{f}:1", f"{f}:4"]


def test_jsonl_missing_field_names_file_and_line(tmp_path):
    f = tmp_path / "c.jsonl"
    f.write_text(json.dumps({"text": "Fine here."}) + "\n" + json.dumps({"content": "No."}) + "\n")
    with pytest.raises(ConfigError, match=rf"{re.escape(str(f))}: line 2: no text field 'text'") as e:
        read_corpus(f)
    assert e.value.field == "text_field"
    f.write_text(json.dumps(["a list", "not a record"]) + "\n")
    with pytest.raises(ConfigError, match=r"line 1: no text field 'text'"):
        read_corpus(f)


def test_jsonl_invalid_json_names_line(tmp_path):
    f = tmp_path / "c.jsonl"
    f.write_text(json.dumps({"text": "Fine."}) + "\n\n{broken\n")
    with pytest.raises(ConfigError, match=rf"{re.escape(str(f))}: line 3: not valid JSON"):
        read_corpus(f)


def test_folder_of_files(tmp_path):
    """.txt/.md/.jsonl files under a folder, recursively and in sorted order; other suffixes ignored."""
    (tmp_path / "corpus" / "sub").mkdir(parents=True)
    (tmp_path / "corpus" / "b.txt").write_text("Bee text here.\n\nBee two here.\n")
    (tmp_path / "corpus" / "sub" / "c.jsonl").write_text(json.dumps({"text": "Sea text here."}) + "\n")
    (tmp_path / "corpus" / "a.md").write_text("Ay text here.\n")
    (tmp_path / "corpus" / "skip.csv").write_text("text\nNot read at all.\n")
    docs = read_corpus(tmp_path / "corpus")
    assert [d.sentences[0] for d in docs] == ["Ay text here.", "Bee text here.", "Bee two here.", "Sea text here."]
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="holds no .txt, .md or .jsonl file"):
        read_corpus(tmp_path / "empty")


def test_empty_or_missing_corpus_refused(tmp_path):
    f = tmp_path / "empty.txt"
    f.write_text("\n\n = Only a heading =\n\n")
    with pytest.raises(ConfigError, match=rf"--corpus {re.escape(str(f))}: no text found") as e:
        read_corpus(f)
    assert e.value.field == "corpus"
    with pytest.raises(ConfigError, match="no such file or folder"):
        read_corpus(tmp_path / "nope.txt")


def test_non_utf8_names_line(tmp_path):
    f = tmp_path / "latin.txt"
    f.write_bytes(b"Fine first line.\nFine second line.\nCaf\xe9 is not UTF-8.\n")
    with pytest.raises(ConfigError, match=rf"{re.escape(str(f))}: line 3: not UTF-8"):
        read_corpus(f)


def test_wikitext_detokenisation():
    assert detokenize("1 @,@ 000") == "1,000"
    assert detokenize("state @-@ of @-@ the @-@ art") == "state-of-the-art"
    assert detokenize("a , b ; c ( d ) e 's f do n't .") == "a, b; c (d) e's f don't."
    assert detokenize("Plain text, untouched.") == "Plain text, untouched."
    assert split_sentences(" It cost 2 @.@ 5 million . The state @-@ run firm , however , paid . ") == [
        "It cost 2.5 million.", "The state-run firm, however, paid."]


def test_dataset_saved_to_disk(tmp_path):
    """A `save_to_disk` dataset is read by text field; a wrong field names the columns."""
    datasets = pytest.importorskip("datasets")
    path = tmp_path / "ds"
    datasets.Dataset.from_dict({"text": ["First one. Second one.", "", "Third one."],
                                "n": [1, 2, 3]}).save_to_disk(str(path))
    docs = read_corpus(path)
    assert [d.sentences for d in docs] == [("First one.", "Second one."), ("Third one.",)]
    assert [d.source for d in docs] == [f"{path}[0]", f"{path}[2]"]
    with pytest.raises(ConfigError, match=r"no column 'body' \(columns: \['text', 'n'\]\)") as e:
        read_corpus(path, text_field="body")
    assert e.value.field == "text_field"


def test_dataset_dict_saved_to_disk(tmp_path):
    datasets = pytest.importorskip("datasets")
    path = tmp_path / "dd"
    datasets.DatasetDict({"train": datasets.Dataset.from_dict({"text": ["Train one here."]}),
                          "test": datasets.Dataset.from_dict({"text": ["Test one here."]})}).save_to_disk(str(path))
    assert [d.sentences for d in read_corpus(path)] == [("Train one here.",)]


def test_jsonl_record_with_unicode_line_separator(tmp_path):
    f = tmp_path / "c.jsonl"
    f.write_text(json.dumps({"text": "Line one here.\u2028Line two here."}, ensure_ascii=False) + "\n",
                 encoding="utf-8")
    assert len(read_corpus(f)) == 1


def test_non_utf8_line_number_with_bom(tmp_path):
    f = tmp_path / "bom.txt"
    f.write_bytes(b"\xef\xbb\xbfab\n\xffcd\n")
    with pytest.raises(ConfigError) as e:
        read_corpus(f)
    assert "line 2:" in str(e.value)


def test_split_sentences_keeps_closing_quote():
    assert split_sentences('She said "Stop here now." Then we left.') == ['She said "Stop here now."',
                                                                          "Then we left."]


# ---- nsp ------------------------------------------------------------------------------------------------------

def test_nsp_labels_balanced_and_pairs_match_label():
    """0: neighbour (distance 1), 1: same document, distance >= 2, 2: another document; each about a third."""
    examples = many(lambda seed: F.build_nsp(LONG, 1000, seed))
    assert len(examples) == 8 * N_DOCS * (N_SENT - 1)  # one example per anchor and seed
    counts = Counter(ex.label for ex in examples)
    assert set(counts) == {0, 1, 2}
    assert all(0.20 <= c / len(examples) <= 0.47 for c in counts.values()), counts
    for ex in examples:
        (da, ia), (db, ib) = where(ex.fields["text_a"]), where(ex.fields["text_b"])
        assert ex.fields["text_a"] == sentence(da, ia) and ia < N_SENT - 1  # the anchor has a next sentence
        if ex.label == 0:
            assert da == db and abs(ia - ib) == 1
        elif ex.label == 1:
            assert da == db and abs(ia - ib) >= 2
        else:
            assert da != db


def test_nsp_deterministic_per_seed_and_capped_at_n():
    a, b, c = F.build_nsp(LONG, 20, 3), F.build_nsp(LONG, 20, 3), F.build_nsp(LONG, 20, 4)
    assert len(a) == 20 and [e.guid for e in a] == [f"nsp-{i}" for i in range(20)]
    assert [(e.fields, e.label) for e in a] == [(e.fields, e.label) for e in b]
    assert [(e.fields, e.label) for e in a] != [(e.fields, e.label) for e in c]


def test_build_examples_dispatches_and_refuses_cls():
    nsp = F.build_examples(DOCS, F.get_format("nsp"), 10, 0, "mem")
    nss = F.build_examples(DOCS, F.get_format("nss"), 10, 0, "mem")
    assert {e.label for e in nsp} <= {0, 1, 2} and all(e.guid.startswith("nss-") for e in nss)
    with pytest.raises(ValueError, match="cls_candidates"):
        F.build_examples(DOCS, F.get_format("cls"), 10, 0, "mem")
    with pytest.raises(ConfigError, match="not a PPT format") as e:
        F.get_format("mlm")
    assert e.value.field == "format"


# ---- nss ------------------------------------------------------------------------------------------------------

def test_nss_six_options_one_true_next_one_same_doc_four_others():
    examples = many(lambda seed: F.build_examples(DOCS, F.get_format("nss"), 1000, seed, "mem"))
    assert len(examples) >= 200
    for ex in examples:
        opts = options(ex)
        d, i = where(ex.fields["text_a"])
        assert len(opts) == 6 and len(set(opts)) == 6 and 0 <= ex.label < 6
        assert ex.fields["text_a"] not in opts
        assert all(len(o.split()) <= F.OPTION_WORDS[0] for o in opts)
        assert opts[ex.label] == F.cut(sentence(d, i + 1), F.OPTION_WORDS[0])
        others = [where(o) for k, o in enumerate(opts) if k != ex.label]
        same = [p for dd, p in others if dd == d]
        assert len(same) == 1 and abs(same[0] - i) >= 2
        assert sum(dd != d for dd, _ in others) == 4


def test_nss_answer_position_spread_over_letters():
    """No answer leakage: the true next sentence lands on every letter, none dominating."""
    labels = Counter(ex.label for ex in many(lambda seed: F.build_choice(LONG, 1000, seed, F.get_format("nss"))))
    total = sum(labels.values())
    assert total >= 200 and set(labels) == set(range(6))
    assert max(labels.values()) / total < 0.35, labels


# ---- unified --------------------------------------------------------------------------------------------------

def test_option_words_falls_from_30_to_15():
    caps = [F.option_words(n) for n in range(2, 17)]
    assert caps[0] == 30 and caps[-1] == 15 and caps == sorted(caps, reverse=True)


def test_unified_option_counts_caps_and_answer():
    examples = many(lambda seed: F.build_examples(DOCS, F.get_format("unified"), 1000, seed, "mem"), range(12))
    counts = Counter()
    for ex in examples:
        opts = options(ex)
        n, cap = len(opts), F.option_words(len(opts))
        counts[n] += 1
        d, i = where(ex.fields["text_a"])
        assert 2 <= n <= 16 and 0 <= ex.label < n
        assert all(len(o.split()) <= cap for o in opts)
        assert opts[ex.label] == F.cut(sentence(d, i + 1), cap)
        same = [p for k, o in enumerate(opts) if k != ex.label for dd, p in [where(o)] if dd == d]
        assert len(same) == (1 if n >= 3 else 0) and all(abs(p - i) >= 2 for p in same)
    assert counts[2] and counts[16] and len(counts) == 15, counts
    assert any(F.option_words(n) < 30 for n in counts)  # the cap really cuts (sentence 7 has 37 words)


class _Runaway(Exception):
    pass


def test_unified_on_smallest_accepted_corpus_terminates(monkeypatch):
    docs = [Document("m", tuple(sentence(d, s) for s in range(5))) for d in range(2)]
    real, calls = F._other_sentence, Counter()

    def guarded(*args):
        calls["n"] += 1
        if calls["n"] > 20000:
            raise _Runaway("build_choice keeps drawing distractors")
        return real(*args)

    monkeypatch.setattr(F, "_other_sentence", guarded)
    try:
        F.build_examples(docs, F.get_format("unified"), 50, 0, "mem")
    except ConfigError:
        pass  # refusing the corpus would be fine too


# ---- cls ------------------------------------------------------------------------------------------------------

def test_cls_candidates():
    """Label -1, each sentence once, 5..60 words, at most n, deterministic per seed."""
    extra = Document("x", ("Too short here.", " ".join(["long"] * 61) + ".", sentence(0, 1), "Five words in this one."))
    docs = DOCS + [extra]
    every = F.cls_candidates(docs, 1000, 0)
    texts = [e.fields["text_a"] for e in every]
    assert len(texts) == len(set(texts)) == N_DOCS * N_SENT + 1
    assert all(e.label == -1 and 5 <= len(e.fields["text_a"].split()) <= 60 for e in every)
    assert "Five words in this one." in texts and "Too short here." not in texts
    few = F.cls_candidates(docs, 7, 0)
    assert len(few) == 7 and [e.guid for e in few] == [f"cls-{i}" for i in range(7)]
    assert few == F.cls_candidates(docs, 7, 0) and few != F.cls_candidates(docs, 7, 1)


# ---- too-short corpus -----------------------------------------------------------------------------------------

def test_short_documents_refused_for_pair_formats(tmp_path):
    f = tmp_path / "short.txt"
    f.write_text("\n\n".join(" ".join(sentence(d, s) for s in range(3)) for d in range(4)) + "\n")
    docs = read_corpus(f)
    assert [len(d.sentences) for d in docs] == [3] * 4
    for name in ("nsp", "nss", "unified"):
        with pytest.raises(ConfigError, match=rf"--corpus {re.escape(str(f))}: 0 document\(s\)") as e:
            F.build_examples(docs, F.get_format(name), 10, 0, str(f))
        assert "--format cls" in str(e.value) and "most any has is 3" in str(e.value) and e.value.field == "corpus"
    assert len(F.cls_candidates(docs, 100, 0)) == 12


def test_one_long_document_is_not_enough():
    """Two documents of >= 5 sentences of >= 5 words are needed; four-word sentences do not count."""
    short_words = Document("s", tuple(f"Only four words {k}." for k in range(9)))
    with pytest.raises(ConfigError, match=r"1 document\(s\)"):
        F.pair_documents([DOCS[0], short_words], F.get_format("nss"), "mem")
    assert len(F.pair_documents(DOCS[:2], F.get_format("nss"), "mem")) == 2


# ---- casting a downstream task --------------------------------------------------------------------------------

def test_cast_nsp():
    two = Verbalizer.from_lines(["entailment", "not_entailment"])
    template, verb = F.cast_prompt(F.get_format("nsp"), 2, two, "rte")
    assert verb.words == (("yes",), ("no",))
    ex = Example("g", {"p": "A man sleeps.", "h": "Someone rests."}, 0)
    assert render(template, ex, ("p", "h"), "yes") == "A man sleeps.\nSomeone rests.\nAnswer: yes"
    _, verb3 = F.cast_prompt(F.get_format("nsp"), 2, Verbalizer.from_lines(["a", "b", "c"]), "cb")
    assert verb3.words == (("yes",), ("no",), ("maybe",))
    with pytest.raises(ConfigError, match="'sst2' has 1 text field") as e:
        F.cast_prompt(F.get_format("nsp"), 1, two, "sst2")
    assert e.value.field == "method.init"
    with pytest.raises(ConfigError, match="has 4 classes") as e:
        F.cast_prompt(F.get_format("nsp"), 2, Verbalizer.from_lines(["a", "b", "c", "d"]), "x")
    assert e.value.field == "method.init"


def test_cast_cls():
    verb = Verbalizer.from_lines(["bad, terrible", "good"])
    template, out = F.cast_prompt(F.get_format("cls"), 1, verb, "sst2")
    assert out is verb
    assert render(template, Example("g", {"s": "A fine film."}, 1), ("s",), "good") == "A fine film. It was good."
    with pytest.raises(ConfigError, match="'rte' has 2 text fields") as e:
        F.cast_prompt(F.get_format("cls"), 2, verb, "rte")
    assert e.value.field == "method.init"


@pytest.mark.parametrize("name", ["nss", "unified"])
def test_cast_multiple_choice(name):
    verb = Verbalizer.from_lines(["negative, bad", "positive"])
    template, letters = F.cast_prompt(F.get_format(name), 1, verb, "sst2")
    assert letters.words == (("A",), ("B",))
    assert any("A. negative\nB. positive" in s.value for s in template.segments if s.kind == "text")
    ex = Example("g", {"s": "A fine film.", "t": "Second."}, 1)
    assert render(template, ex, ("s",), "B") == "A fine film.\nA. negative\nB. positive\nThe correct one is B"
    pair, _ = F.cast_prompt(F.get_format(name), 2, verb, "rte")
    assert render(pair, ex, ("s", "t"), "A") == "A fine film.\nSecond.\nA. negative\nB. positive\nThe correct one is A"
    quoted, _ = F.cast_prompt(F.get_format(name), 1, Verbalizer.from_lines(['say "no"', "yes"]), "q")
    assert render(quoted, ex, ("s",), "A").startswith('A fine film.\nA. say "no"\nB. yes\n')
    _, sixteen = F.cast_prompt(F.get_format(name), 1, Verbalizer.from_lines([f"c{k}" for k in range(16)]), "x")
    assert [w[0] for w in sixteen.words] == list("ABCDEFGHIJKLMNOP")
    with pytest.raises(ConfigError, match="at most 16 options; 'x' has 17 classes") as e:
        F.cast_prompt(F.get_format(name), 1, Verbalizer.from_lines([f"c{k}" for k in range(17)]), "x")
    assert e.value.field == "method.init"


def test_pretrain_template_renders_options_and_verbalizers():
    ex = F.build_choice(LONG, 1, 0, F.get_format("nss"))[0]
    text = render(F.pretrain_template(F.get_format("nss")), ex, F.text_fields(F.get_format("nss")), "C")
    assert text == ex.fields["text_a"] + "\n" + ex.fields["text_b"] + "\nThe correct one is C"
    assert F.pretrain_verbalizer(F.get_format("nsp")).words == (("yes",), ("maybe",), ("no",))
    assert [w[0] for w in F.pretrain_verbalizer(F.get_format("nss")).words] == list("ABCDEF")
    assert F.options_text(["x", "y"]) == "A. x\nB. y"
    assert F.text_fields(F.get_format("cls")) == ("text_a",)
