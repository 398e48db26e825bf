"""The fast novelty filter must make exactly the decisions of the straightforward rouge-score check."""

import random

import pytest
from rouge_score import rouge_scorer

from workbench.instruct.rouge import NoveltyIndex, lcs_length, match_masks, rouge_l_f
from workbench.instruct.seeds import load_seed_tasks

SCORER = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)


def _baseline_novel(text, pool, threshold=0.7):
    return max((SCORER.score(text, p)["rougeL"].fmeasure for p in pool), default=0.0) <= threshold


def _mutate(text, rng):
    words = text.split()
    if len(words) > 2:
        i = rng.randrange(len(words))
        op = rng.randrange(3)
        if op == 0:
            del words[i]
        elif op == 1:
            words.insert(i, rng.choice(["the", "a", "very", "Please,", "quickly"]))
        else:
            words[i] = words[i].upper() + "!"
    return " ".join(words)


def test_lcs_matches_dynamic_programming():
    rng = random.Random(1)
    for _ in range(300):
        a = [rng.randrange(5) for _ in range(rng.randrange(0, 15))]
        b = [rng.randrange(5) for _ in range(rng.randrange(0, 15))]
        table = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
        for i in range(1, len(a) + 1):
            for j in range(1, len(b) + 1):
                table[i][j] = table[i - 1][j - 1] + 1 if a[i - 1] == b[j - 1] else max(table[i - 1][j], table[i][j - 1])
        assert lcs_length(match_masks(a), len(a), b) == table[-1][-1]


def test_score_formula_is_rouge_score():
    for text, other in [("give three tips", "give me three good tips"), ("a b c d", "d c b a"), ("x", "y")]:
        t, o = SCORER._tokenizer.tokenize(text), SCORER._tokenizer.tokenize(other)
        lcs = lcs_length(match_masks(t), len(t), o) if t else 0
        assert rouge_l_f(lcs, len(t), len(o)) == SCORER.score(text, other)["rougeL"].fmeasure


@pytest.mark.parametrize("threshold", [0.7, 0.5])
def test_same_decisions_as_rouge_score_on_random_and_real_strings(threshold):
    rng = random.Random(0)
    words = "the a of to give write list explain summarize classify sentence story poem cat dog 3 x-ray".split()
    seeds = [s.instruction for s in load_seed_tasks()]
    stream = []
    for _ in range(400):
        r = rng.random()
        if r < 0.3:
            stream.append(" ".join(rng.choice(words) for _ in range(rng.randrange(0, 12))))
        elif r < 0.6 or not stream:
            stream.append(rng.choice(seeds))
        else:
            stream.append(_mutate(rng.choice(stream), rng))
    stream += ["", "!!!", "Ünïcode café déjà vu", "WRITE A POEM", "write a poem"]
    index = NoveltyIndex(threshold)
    rejected = 0
    for text in stream:
        verdict = index.check(text)
        assert verdict.novel == _baseline_novel(text, index.texts, threshold), text
        if verdict.novel:
            index.add(text)
        else:
            rejected += 1
            assert verdict.score == SCORER.score(text, index.texts[verdict.match])["rougeL"].fmeasure
    assert rejected > 50  # the stream really exercises both decisions


def test_top_k_and_retire():
    index = NoveltyIndex()
    pool = ["Write a poem about the sea.", "Write a story about the sea.", "List three fruits.", "Name a colour."]
    for p in pool:
        index.add(p)
    query = "Write a short poem about the sea and the sky."
    expected = sorted(((j, SCORER.score(query, p)["rougeL"].fmeasure) for j, p in enumerate(pool)),
                      key=lambda x: -x[1])
    got = index.top_k(query, 2)
    assert [s for _, s in got] == [s for _, s in expected[:2]]
    assert not index.check("Write a poem about the sea").novel
    index.retire(0)
    index.retire(1)
    assert index.check("Write a poem about the sea").novel
    assert all(j not in (0, 1) for j, _ in index.top_k(query, 5))
