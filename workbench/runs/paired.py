"""Paired comparisons over seeds: how far apart two methods are, and whether the seeds show it.

Two methods compared on the same few-shot splits give one difference per seed. With 3-5 seeds the spread
of those differences is as large as most effects, so a mean difference alone reads like a result when it is
not one. Every difference is printed with its 95% interval (Student's t on the paired differences, the
textbook choice for a handful of pairs; a bootstrap over 5 values would be too narrow) and the number of
seeds, and is called a difference only when the interval leaves out zero.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

CONFIDENCE = 0.95
INTERVAL_NAME = "paired t"


@dataclass(frozen=True)
class PairedDifference:
    """a - b over the seeds both have, in the units given (fractions of 1 for accuracy)."""

    mean: float
    sd: float
    n: int
    low: float | None  # None with one seed: no interval
    high: float | None

    @property
    def shown(self) -> bool:
        """The interval leaves out zero."""
        return self.low is not None and (self.low > 0 or self.high < 0)

    @property
    def verdict(self) -> str:
        if self.low is None:
            return "one seed: no interval"
        if not self.shown:
            return "no difference shown"
        return "higher" if self.mean > 0 else "lower"

    def describe(self, scale: float = 100.0, unit: str = " points") -> str:
        """`+3.1 points (95% paired-t interval -1.2 to +7.4, n=5): no difference shown`."""
        text = f"{scale * self.mean:+.1f}{unit}"
        if self.low is None:
            return f"{text} (n=1: {self.verdict})"
        return (f"{text} ({CONFIDENCE:.0%} {INTERVAL_NAME} interval {scale * self.low:+.1f} to "
                f"{scale * self.high:+.1f}, n={self.n}): {self.verdict}")

    def cell(self, scale: float = 100.0) -> str:
        """The table's short form: `+3.1 [-1.2, +7.4] no difference shown`."""
        if self.low is None:
            return f"{scale * self.mean:+.1f} ({self.verdict})"
        return f"{scale * self.mean:+.1f} [{scale * self.low:+.1f}, {scale * self.high:+.1f}] {self.verdict}"

    def as_dict(self) -> dict:
        return {"mean": self.mean, "sd": self.sd, "n": self.n, "ci_low": self.low, "ci_high": self.high,
                "interval": f"{CONFIDENCE:.0%} {INTERVAL_NAME}", "verdict": self.verdict}


def paired_difference(a: dict[int, float], b: dict[int, float]) -> PairedDifference:
    """`a` and `b` map seed -> score; the pairs are the seeds both have (ValueError when there are none)."""
    shared = [s for s in a if s in b]
    if not shared:
        raise ValueError("the two sides share no seed, so there is nothing to pair")
    diffs = [a[s] - b[s] for s in shared]
    mean = statistics.mean(diffs)
    if len(diffs) == 1:
        return PairedDifference(mean, 0.0, 1, None, None)
    sd = statistics.stdev(diffs)
    half = t_quantile(1 - (1 - CONFIDENCE) / 2, len(diffs) - 1) * sd / math.sqrt(len(diffs))
    return PairedDifference(mean, sd, len(diffs), mean - half, mean + half)


def t_quantile(p: float, df: int) -> float:
    from scipy.stats import t

    return float(t.ppf(p, df))


def mean_sd(values: list[float]) -> tuple[float, float | None]:
    """Mean and sample sd; the sd is None for one value (printing ± 0.0 would claim a spread of zero)."""
    return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else None


def mean_sd_text(values: list[float]) -> str:
    """'0.7790 ± 0.0268', or '0.7790 (one seed)' when there is no spread to show."""
    mean, sd = mean_sd(values)
    return f"{mean:.4f} (one seed)" if sd is None else f"{mean:.4f} ± {sd:.4f}"


__all__ = ["CONFIDENCE", "INTERVAL_NAME", "PairedDifference", "mean_sd", "mean_sd_text", "paired_difference"]
