"""The one percentile of the project: exact nearest rank.

pN of n sorted samples is the sample at rank ceil(N/100 · n) (at least rank 1): the smallest
sample such that at least N % of the samples are at or below it. It is always a measured value,
so "p95 < 100 ms" means at least 95 % of the samples were under 100 ms.

The rank is computed with fractions of the percentile *as written* (``99.9`` is 999/1000, not
the binary float 99.900000000000006), so no float rounding moves a sample up or down a rank:
with floats, ``math.ceil(7 / 100 * 100)`` is 8.

It lives in the bottom package because the contract rules, the load summary, the report and the
benchmarks all need the same definition, and it depends on nothing.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from fractions import Fraction


def nearest_rank(n: int, p: float) -> int:
    """The 1-based rank of the pN sample among ``n`` (``n`` ≥ 1, 0 ≤ ``p`` ≤ 100)."""
    if n < 1:
        raise ValueError("nearest_rank needs at least one sample")
    if not 0 <= p <= 100:
        raise ValueError(f"a percentile is between 0 and 100, not {p}")
    exact = Fraction(str(p)) if isinstance(p, float) else Fraction(p)
    return min(n, max(1, math.ceil(exact * n / 100)))


def percentile(ordered: Sequence[float], p: float) -> float | None:
    """pN of samples already sorted ascending (see the module docstring); None when there are none."""
    if not ordered:
        return None
    return float(ordered[nearest_rank(len(ordered), p) - 1])
