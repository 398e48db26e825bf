"""Benchmark: the fast ROUGE-L novelty filter against the straightforward `rouge-score` pairwise check.

Builds N instructions (default 20,000) from the project's seed tasks, real dataset text (TREC questions,
GSM8K problems, SST sentences, RTE hypotheses turned into instructions) and near-duplicate mutations of
earlier items, then runs the Self-Instruct loop's novelty step over all of them: each candidate is checked
against the pool of everything accepted so far and added if novel.

The fast filter runs the whole stream. The baseline (`RougeScorer(["rougeL"], use_stemmer=False).score`
against every pool item, max > threshold, as in Self-Instruct's `bootstrap_instructions.py`) is too slow
for the full stream (about N^2/2 pairs), so it runs on every k-th step against exactly the pool the fast
filter saw at that step (the pool only grows, so that pool is a prefix). Both times below are for those
same sampled steps; the full-stream baseline time is extrapolated by pairs.

    WORKBENCH_DATA_DIR=../shared/data python benchmarks/bench_rouge_filter.py [--n 20000] [--samples 200]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import time
from pathlib import Path

from rouge_score import rouge_scorer

from workbench.instruct.rouge import DEFAULT_THRESHOLD, NoveltyIndex

VERBS = ["Rewrite", "Explain", "Summarize", "Classify", "Describe", "List", "Answer", "Translate", "Paraphrase",
         "Evaluate", "Give", "Suggest", "Identify", "Compare", "Simplify"]
FILLERS = ["in one sentence", "for a child", "briefly", "in simple words", "with an example", "step by step",
           "in a formal tone", "as a bullet list", "in under 50 words", "politely"]


def _tsv_column(path: Path, column: str) -> list[str]:
    import csv

    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        return [row[column].strip() for row in reader]


def build_instructions(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    data = Path(os.environ.get("WORKBENCH_DATA_DIR", "../shared/data"))
    base: list[str] = []
    seeds = Path(__file__).resolve().parents[1] / "workbench/instruct/data/seed_tasks.jsonl"
    if seeds.exists():
        base += [json.loads(line)["instruction"] for line in seeds.read_text().splitlines() if line.strip()]
    base += _tsv_column(data / "trec/train.tsv", "sentence")
    base += [json.loads(line)["question"] for line in (data / "gsm8k/train.jsonl").read_text().splitlines()]
    sst = _tsv_column(data / "sst5/train.tsv", "sentence")
    base += [f"{rng.choice(VERBS)} the following review {rng.choice(FILLERS)}: {s}" for s in sst]
    rte = _tsv_column(data / "rte/train.tsv", "sentence2")
    base += [f"Decide whether this claim is supported: {h}" for h in rte]
    rng.shuffle(base)
    out: list[str] = []
    fresh = iter(base)
    while len(out) < n:
        # About a third are near-duplicates of something earlier: the filter must catch those.
        if out and rng.random() < 0.35:
            out.append(mutate(rng.choice(out), rng))
        else:
            out.append(next(fresh))
    return out


def mutate(text: str, rng: random.Random) -> str:
    words = text.split()
    if len(words) < 3:
        return text + " " + rng.choice(FILLERS)
    kind = rng.randrange(4)
    i = rng.randrange(len(words))
    if kind == 0:
        del words[i]
    elif kind == 1 and i + 1 < len(words):
        words[i], words[i + 1] = words[i + 1], words[i]
    elif kind == 2:
        words[i] = rng.choice(VERBS).lower()
    else:
        words += rng.choice(FILLERS).split()
    return " ".join(words)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=20_000)
    ap.add_argument("--samples", type=int, default=100, help="steps on which the baseline also runs")
    ap.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD)
    args = ap.parse_args()

    texts = build_instructions(args.n)
    stride = max(1, args.n // args.samples)
    sampled = set(range(stride - 1, args.n, stride))

    index = NoveltyIndex(args.threshold)
    fast_decisions: dict[int, bool] = {}
    pool_at: dict[int, int] = {}
    pairs_full = 0  # pairs the baseline would score over the whole stream: the pool size at every step
    t0 = time.perf_counter()
    for step, text in enumerate(texts):
        pairs_full += len(index)
        verdict = index.check(text)
        if step in sampled:
            fast_decisions[step] = verdict.novel
            pool_at[step] = len(index)
        if verdict.novel:
            index.add(text)
    fast_full = time.perf_counter() - t0
    # The fast filter again, on just the sampled steps (same pools), so both times cover the same work.
    t0 = time.perf_counter()
    fast_sampled = {s: index.check(texts[s], limit=pool_at[s]).novel for s in sorted(sampled)}
    fast_time = time.perf_counter() - t0
    assert fast_sampled == fast_decisions

    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    differing = 0
    pairs_sampled = 0
    t0 = time.perf_counter()
    for s in sorted(sampled):
        pool_texts = index.texts[: pool_at[s]]
        pairs_sampled += len(pool_texts)
        scores = [scorer.score(texts[s], p)["rougeL"].fmeasure for p in pool_texts]
        novel = max(scores, default=0.0) <= args.threshold
        differing += novel != fast_decisions[s]
    base_time = time.perf_counter() - t0

    rejected = sum(not v for v in fast_decisions.values())
    print(f"instructions: {args.n:,}  accepted into pool: {len(index):,}  threshold: ROUGE-L F > {args.threshold}")
    print(f"sampled steps: {len(sampled)} (every {stride}th; {rejected} of them rejected), pairs: {pairs_sampled:,}")
    print(f"baseline rouge-score pairwise: {base_time:.2f} s")
    print(f"fast filter (same steps):      {fast_time:.3f} s")
    print(f"speed-up: {base_time / fast_time:.1f}x   differing decisions: {differing}")
    per_pair = base_time / max(pairs_sampled, 1)
    print(f"whole stream: fast filter {fast_full:.1f} s; baseline estimated {per_pair * pairs_full / 3600:.1f} h "
          f"({pairs_full:,} pairs at {per_pair * 1e6:.1f} us/pair)")


if __name__ == "__main__":
    main()
