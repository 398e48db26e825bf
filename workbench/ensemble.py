"""PET's ensemble and iPET's training sets, as plain arithmetic on class scores (numpy), so each rule is tested
on its own (Schick & Schütze, EACL 2021; ../shared/reference/METHODS.md, section 5).

- The ensemble averages the models' class scores (logits), weighted by each model's accuracy on the labelled
  examples before training (`wmean`), or uniformly (`mean`, required when there are no labelled examples).
- iPET grows each model's training set by the scale factor d per generation: generation g+1 gets
  N = |T| * d^(g+1) - |T| examples labelled by a random `fraction` of the *other* models of generation g, per
  class in T's proportions, drawn without replacement with probability proportional to the labellers'
  confidence. With no labelled examples |T| counts as 10 / d, so N = 10 * d^g, split equally over the classes.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

import numpy as np

from workbench.errors import WorkbenchError

REDUCTIONS = ("wmean", "mean")
ZERO_SHOT_BASE = 10  # |T| * d when there are no labelled examples (PET's code)


def ensemble_weights(priors: Sequence[float], reduction: str) -> np.ndarray:
    """One weight per model: its accuracy on the labelled examples before training (`wmean`), or 1 (`mean`).
    All-zero priors (every pattern wrong on every example) fall back to uniform weights."""
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction {reduction!r}: expected one of {REDUCTIONS}")
    w = np.asarray(priors, dtype=np.float64) if reduction == "wmean" else np.ones(len(priors))
    return w if w.sum() > 0 else np.ones(len(priors))


def merge(scores: Sequence[np.ndarray], weights: np.ndarray) -> np.ndarray:
    """The weighted average of the models' [rows, classes] scores."""
    stacked = np.stack([np.asarray(s, dtype=np.float64) for s in scores])
    return np.tensordot(weights / weights.sum(), stacked, axes=1)


def softmax(scores: np.ndarray) -> np.ndarray:
    z = scores - scores.max(-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(-1, keepdims=True)


def new_examples(labelled: int, generation: int, scale: float) -> int:
    """How many pool examples generation `generation` labels for each model of the next one."""
    base = labelled if labelled else ZERO_SHOT_BASE / scale
    return int(round(base * scale ** (generation + 1) - labelled, 6))


def per_class(labels: Sequence[int], num_classes: int, total: int) -> list[int]:
    """`total` split over the classes in the proportions of `labels` (T's), or equally when there are none."""
    if not len(labels):
        return [total // num_classes] * num_classes
    counts = Counter(labels)
    return [int(counts[c] * total / len(labels)) for c in range(num_classes)]


def pick_labellers(models: int, index: int, fraction: float, rng: np.random.Generator) -> list[int]:
    """The models of a generation that label data for model `index` of the next: a random `fraction` of the
    others (at least one)."""
    others = [m for m in range(models) if m != index]
    if not others:
        raise WorkbenchError("iPET needs at least 2 models per generation (patterns x repetitions); add patterns "
                             "or repetitions")
    k = min(len(others), max(1, round(fraction * len(others))))
    return sorted(int(m) for m in rng.choice(others, size=k, replace=False))


def draw_labelled(probs: np.ndarray, counts: Sequence[int], rng: np.random.Generator,
                  most_likely: int | None = None, label_names: Sequence[str] | None = None) -> list[tuple[int, int]]:
    """(pool index, label) pairs: per class c, `counts[c]` of the pool examples predicted as c, drawn without
    replacement with probability proportional to the confidence (the largest class probability). A class with
    too few predicted examples has them repeated first. `most_likely`: instead take the N examples with the
    highest probability of each class (zero-shot iPET's first generation)."""
    names = label_names or [str(c) for c in range(probs.shape[1])]
    predicted, confidence = probs.argmax(-1), probs.max(-1)
    out: list[tuple[int, int]] = []
    for c, n in enumerate(counts):
        if most_likely:
            out += [(int(i), c) for i in np.argsort(-probs[:, c], kind="stable")[:most_likely]]
            continue
        if n <= 0:
            continue
        pool = np.flatnonzero(predicted == c)
        if not len(pool):
            raise WorkbenchError(f"iPET: the labelling models predict no pool example as {names[c]!r}, so no "
                                 f"{names[c]!r} examples can be drawn; use a larger pool or more labelled shots")
        if len(pool) < n:
            pool = np.tile(pool, math.ceil(n / len(pool)))
        p = confidence[pool] / confidence[pool].sum()
        out += [(int(i), c) for i in rng.choice(pool, size=n, replace=False, p=p)]
    return out
