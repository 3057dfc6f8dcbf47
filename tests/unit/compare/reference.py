"""Plain-Python re-implementations of the comparison's statistics (no torch, numpy or scipy).

They read the per-example values as compare.json stores them and recompute every number the
comparison reports, the slow and obvious way, so the tests can hold the fast one to them.
"""

from __future__ import annotations

import itertools
from typing import Sequence

Rows = Sequence[Sequence[float]]


def mean(xs: Sequence[float]) -> float:
    return sum(xs) / len(xs)


def column(rows: Rows, j: int) -> list[float]:
    return [r[j] for r in rows]


def ratio(raw: Sequence[float], clean: Sequence[float], corrupted: Sequence[float]) -> float:
    c = mean(corrupted)
    return (mean(raw) - c) / (mean(clean) - c)


def statistic(kind: str, values: Sequence[float], clean: Sequence[float] | None,
              corrupted: Sequence[float] | None) -> float:
    return mean(values) if kind == "mean" else ratio(values, clean, corrupted)  # type: ignore[arg-type]


def exact_paired_p(kind: str, a: Sequence[float], b: Sequence[float], ca=None, cb=None, xa=None, xb=None) -> float:
    """Two-sided exact swap test: every way of swapping the two values of each pair."""
    n = len(a)

    def diff(swap: Sequence[int]) -> float:
        pick = lambda s, x, y: [y[i] if s[i] else x[i] for i in range(n)]  # noqa: E731
        A = statistic(kind, pick(swap, a, b), ca and pick(swap, ca, cb), xa and pick(swap, xa, xb))
        B = statistic(kind, pick(swap, b, a), cb and pick(swap, cb, ca), xb and pick(swap, xb, xa))
        return A - B

    observed = abs(diff([0] * n))
    hits = sum(abs(diff(s)) >= observed * (1 - 1e-9) - 1e-12 for s in itertools.product((0, 1), repeat=n))
    return hits / 2**n


def exact_unpaired_p(a: Sequence[float], b: Sequence[float]) -> float:
    """Two-sided exact two-sample permutation test of the difference of means."""
    pooled, na = list(a) + list(b), len(a)
    observed = abs(mean(a) - mean(b))
    hits = total = 0
    for chosen in itertools.combinations(range(len(pooled)), na):
        s = set(chosen)
        x = [pooled[i] for i in chosen]
        y = [pooled[i] for i in range(len(pooled)) if i not in s]
        hits += abs(mean(x) - mean(y)) >= observed * (1 - 1e-9) - 1e-12
        total += 1
    return hits / total


def benjamini_hochberg(p: Sequence[float]) -> list[float]:
    """q_i = min over j with p_j ≥ p_i of p_j · m / rank_j, capped at 1."""
    m = len(p)
    order = sorted(range(m), key=lambda i: p[i])
    rank = {i: k + 1 for k, i in enumerate(order)}
    return [min(1.0, min(p[j] * m / rank[j] for j in range(m) if p[j] >= p[i])) for i in range(m)]


__all__ = ["benjamini_hochberg", "column", "exact_paired_p", "exact_unpaired_p", "mean", "ratio", "statistic"]
