"""ROUGE-L novelty filter that makes exactly the decisions of `rouge-score`, much faster.

Self-Instruct rejects a candidate instruction when its ROUGE-L F-measure against any instruction in the
pool is above a threshold (0.7). Done pairwise with `rouge_score`, each check costs one tokenisation and one
quadratic LCS table per pool item, and the pool grows with every accepted instruction.

Here every decision is the one `rouge_score` would make (same tokenizer, same float formula), but most pairs
are settled without an LCS:

* Texts are tokenised once with `rouge_score`'s own tokenizer and interned to integer ids.
* An inverted index gives, for every pool item at once (numpy), the bag-of-tokens overlap with the
  candidate. The LCS can never exceed that overlap.
* For each pair of lengths (m, n) we precompute the smallest LCS whose F-measure, evaluated with the exact
  expression `rouge_score` uses, is above the threshold. A pair whose overlap is below it cannot pass;
  this needs no assumption about float monotonicity, because the table is built by evaluating the formula
  itself for every LCS value.
* The few remaining pairs get an exact LCS (bit-parallel, Hyyro 2004) and the exact F-measure.
"""

from __future__ import annotations

import heapq
from array import array
from collections import Counter
from dataclasses import dataclass

import numpy as np
from rouge_score import tokenizers

DEFAULT_THRESHOLD = 0.7


def rouge_tokenizer():
    """The tokenizer the Self-Instruct code gets from `RougeScorer(["rougeL"], use_stemmer=False)`."""
    return tokenizers.DefaultTokenizer(use_stemmer=False)


def rouge_l_f(lcs: int, m: int, n: int) -> float:
    """ROUGE-L F-measure from an LCS length, written as `rouge_score` computes it (same float operations)."""
    if m == 0 or n == 0:
        return 0.0
    precision = lcs / m
    recall = lcs / n
    if precision + recall > 0:
        return 2 * precision * recall / (precision + recall)
    return 0.0


def lcs_length(match_masks: dict[int, int], m: int, other: list[int] | tuple[int, ...]) -> int:
    """LCS of the text behind `match_masks` (length m) and `other`, bit-parallel in Python integers."""
    full = (1 << m) - 1
    v = full
    for tok in other:
        u = v & match_masks.get(tok, 0)
        if u:
            v = ((v + u) | (v - u)) & full
    return m - (v.bit_count() if hasattr(v, "bit_count") else bin(v).count("1"))


def match_masks(ids: list[int]) -> dict[int, int]:
    masks: dict[int, int] = {}
    for pos, tok in enumerate(ids):
        masks[tok] = masks.get(tok, 0) | (1 << pos)
    return masks


@dataclass(frozen=True)
class Verdict:
    novel: bool
    # When rejected: the pool index and score of the first pool item found above the threshold.
    match: int | None = None
    score: float | None = None


class NoveltyIndex:
    """A growing pool of texts; `check` says whether a candidate's ROUGE-L against every item is <= threshold."""

    def __init__(self, threshold: float = DEFAULT_THRESHOLD):
        # Above 1 nothing is ever rejected (ROUGE-L F <= 1) and at 0 or below everything is: both turn the
        # filter into a no-op or a wall, so they are refused rather than honoured.
        if not isinstance(threshold, (int, float)) or not 0 < threshold <= 1:
            raise ValueError(f"threshold {threshold!r}: expected a number > 0 and <= 1")
        self.threshold = threshold
        self._tokenizer = rouge_tokenizer()
        self._vocab: dict[str, int] = {}
        self.texts: list[str] = []
        self._ids: list[tuple[int, ...]] = []
        self._lens = array("i")
        # token id -> (pool indices, counts); array('i') grows in place and numpy reads it without a copy.
        self._post_docs: list[array] = []
        self._post_counts: list[array] = []
        self._min_lcs_cache: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.texts)

    def tokenize(self, text: str) -> list[str]:
        return self._tokenizer.tokenize(text)

    def _intern(self, tokens: list[str], grow: bool) -> list[int]:
        ids = []
        for t in tokens:
            i = self._vocab.get(t)
            if i is None:
                if not grow:
                    ids.append(-1)  # a token no pool item has: it can only lower the overlap
                    continue
                i = self._vocab[t] = len(self._vocab)
                self._post_docs.append(array("i"))
                self._post_counts.append(array("i"))
            ids.append(i)
        return ids

    def add(self, text: str) -> int:
        ids = self._intern(self.tokenize(text), grow=True)
        doc = len(self.texts)
        self.texts.append(text)
        self._ids.append(tuple(ids))
        self._lens.append(len(ids))
        for tok, c in Counter(ids).items():
            self._post_docs[tok].append(doc)
            self._post_counts[tok].append(c)
        return doc

    def retire(self, doc: int) -> None:
        """Take an item out of the comparisons (its index stays taken). A zero length never passes the bound."""
        self._lens[doc] = 0

    def _min_lcs(self, m: int, max_n: int) -> np.ndarray:
        """For each pool length n: the smallest LCS with F > threshold (a value > min(m, n) if none)."""
        table = self._min_lcs_cache.get(m)
        if table is not None and len(table) > max_n:
            return table
        size = max(max_n + 1, 2 * (len(table) if table is not None else 64))
        table = np.full(size, np.iinfo(np.int32).max, dtype=np.int64)
        for n in range(1, size):
            for lcs in range(min(m, n) + 1):
                if rouge_l_f(lcs, m, n) > self.threshold:
                    table[n] = lcs
                    break
        self._min_lcs_cache[m] = table
        return table

    def _overlap(self, ids: list[int], limit: int) -> np.ndarray:
        overlap = np.zeros(limit, dtype=np.int32)
        for tok, c in Counter(ids).items():
            if tok < 0:
                continue
            docs = np.frombuffer(self._post_docs[tok], dtype=np.int32)
            counts = np.frombuffer(self._post_counts[tok], dtype=np.int32)
            if limit < len(self.texts):  # pool indices were appended in order, so a prefix is a slice
                cut = int(np.searchsorted(docs, limit))
                docs, counts = docs[:cut], counts[:cut]
            overlap[docs] += np.minimum(counts, c)
        return overlap

    def check(self, text: str, limit: int | None = None) -> Verdict:
        """Is `text` novel against the pool (or its first `limit` items)? Stops at the first item above."""
        limit = len(self.texts) if limit is None else limit
        ids = self._intern(self.tokenize(text), grow=False)
        m = len(ids)
        if m == 0 or limit == 0:
            return Verdict(True)
        overlap = self._overlap(ids, limit)
        lens = np.frombuffer(self._lens, dtype=np.int32)[:limit]
        need = self._min_lcs(m, int(lens.max()))[lens]
        survivors = np.flatnonzero(overlap >= need)
        if len(survivors) == 0:
            return Verdict(True)
        masks = match_masks(ids)
        # Most likely matches first: the highest overlap relative to the combined length.
        order = survivors[np.argsort(-(overlap[survivors] / (lens[survivors] + m)), kind="stable")]
        for j in order.tolist():
            other = self._ids[j]
            score = rouge_l_f(lcs_length(masks, m, other), m, len(other))
            if score > self.threshold:
                return Verdict(False, j, score)
        return Verdict(True)

    def top_k(self, text: str, k: int = 10) -> list[tuple[int, float]]:
        """The k most similar pool items with their exact ROUGE-L F (branch and bound on the overlap bound)."""
        ids = self._intern(self.tokenize(text), grow=False)
        m = len(ids)
        if m == 0 or not self.texts or k <= 0:
            return []
        overlap = self._overlap(ids, len(self.texts))
        lens = np.frombuffer(self._lens, dtype=np.int32)
        cand = np.flatnonzero((overlap > 0) & (lens > 0))
        if len(cand) == 0:
            return []
        ov = overlap[cand].astype(np.float64)
        p, r = ov / m, ov / lens[cand]
        bound = 2 * p * r / (p + r)
        order = cand[np.argsort(-bound, kind="stable")]
        bound_sorted = np.sort(bound)[::-1]
        masks = match_masks(ids)
        best: list[tuple[float, int]] = []  # min-heap of (score, -index)
        for rank, j in enumerate(order.tolist()):
            if len(best) == k and bound_sorted[rank] + 1e-12 < best[0][0]:
                break
            other = self._ids[j]
            score = rouge_l_f(lcs_length(masks, m, other), m, len(other))
            if len(best) < k:
                heapq.heappush(best, (score, -j))
            elif score > best[0][0]:
                heapq.heapreplace(best, (score, -j))
        return [(-negj, s) for s, negj in sorted(best, reverse=True)]
