"""How long things take, as the console says it: one format for every estimate and elapsed time."""

from __future__ import annotations


def duration(seconds: float) -> str:
    """`72 s`, `20 min`, `1.5 h`: as precise as a wait needs."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


__all__ = ["duration"]
