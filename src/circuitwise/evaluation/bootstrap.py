"""Percentile bootstrap intervals over prompts for the study's headline numbers.

Every headline number of a study is a statistic of per-prompt values: a mean (logit difference,
accuracy, a head's direct effect) or a ratio of means (faithfulness, a patching cell's recovery,
MIB's CPR/CMD, which are areas under ratios of means). A resample draws ``n`` prompts with
replacement; a statistic that is linear in the prompts' means is then one matrix product with the
resample's counts (how often each prompt was drawn), so 1,000 resamples of every
top component cost one ``[resamples, n] @ [n, values]`` product instead of 1,000 Python loops.

Ratios are bootstrapped as the ratio of the *resampled means* (the statistic the study reports),
never as the mean of per-prompt ratios, which is a different number and explodes on prompts whose
own clean–corrupted gap is near zero. A resample whose gap is degenerate gives NaN and is left out
of the quantiles (``nanquantile``).

The indices come from a ``torch.Generator`` seeded with ``seed``, so the same seed gives the same
interval on any machine; :func:`resample_indices` exposes them so a test can recompute an interval
with numpy.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from circuitwise.errors import ConfigError


@dataclass(frozen=True)
class Resampling:
    """How intervals are drawn. The defaults live in :mod:`circuitwise.config` (``BOOTSTRAP_*``);
    the front-ends pass them in, so a library call states what it wants."""

    resamples: int
    level: float
    seed: int

    def __post_init__(self) -> None:
        if self.resamples < 2:
            raise ConfigError(f"A bootstrap needs at least 2 resamples (1000 is usual), got {self.resamples}.")
        if not 0 < self.level < 1:
            raise ConfigError(f"The interval's level must lie in (0, 1) (0.95 is usual), got {self.level}.")


@dataclass(frozen=True)
class Interval:
    """A percentile bootstrap interval of one number."""

    low: float
    high: float
    level: float
    resamples: int
    seed: int

    def __str__(self) -> str:
        return f"[{self.low:.3g}, {self.high:.3g}]"

    def covers(self, value: float) -> bool:
        return self.low <= value <= self.high

    def to_json(self) -> dict[str, Any]:
        return {"low": _finite(self.low), "high": _finite(self.high), "level": self.level,
                "resamples": self.resamples, "seed": self.seed, "method": "percentile"}


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None


def resample_indices(n: int, rs: Resampling) -> torch.Tensor:
    """``[resamples, n]`` prompt indices drawn with replacement (the seed fixes them)."""
    if n < 1:
        raise ConfigError("A bootstrap needs at least one prompt.")
    gen = torch.Generator().manual_seed(rs.seed)
    return torch.randint(0, n, (rs.resamples, n), generator=gen)


def resample_counts(n: int, rs: Resampling) -> torch.Tensor:
    """``[resamples, n]`` float64: how often each prompt is drawn in each resample.

    ``counts @ x / n`` is each resample's mean of ``x``, the same as ``x[indices].mean(1)`` (the
    division last, so a constant column's resampled mean is that constant exactly).
    """
    idx = resample_indices(n, rs)
    w = torch.zeros(rs.resamples, n, dtype=torch.float64)
    w.scatter_add_(1, idx, torch.ones_like(idx, dtype=torch.float64))
    return w


def quantile_interval(stats: torch.Tensor, rs: Resampling) -> list[Interval]:
    """Per column of ``stats`` ``[resamples, m]``: the percentile interval (linear interpolation,
    numpy's default), NaN resamples left out; all-NaN columns give NaN ends."""
    alpha = (1.0 - rs.level) / 2
    q = torch.tensor([alpha, 1.0 - alpha], dtype=torch.float64)
    ends = torch.nanquantile(stats.double().reshape(stats.shape[0], -1), q, dim=0)
    return [Interval(float(lo), float(hi), rs.level, rs.resamples, rs.seed) for lo, hi in ends.T.tolist()]


def bootstrap(stat: Callable[[torch.Tensor], torch.Tensor], values: torch.Tensor, rs: Resampling) -> list[Interval]:
    """Intervals of ``stat(means)`` where ``means`` ``[resamples, k]`` are the resampled means of
    ``values`` ``[n, k]`` (prompts first). ``stat`` maps ``[R, k]`` to ``[R, m]``; one interval per ``m``."""
    x = values.double().reshape(values.shape[0], -1)
    means = resample_counts(x.shape[0], rs) @ x / x.shape[0]  # a NaN prompt makes its statistic NaN, never 0
    return quantile_interval(stat(means), rs)


def mean_intervals(values: torch.Tensor, rs: Resampling) -> list[Interval]:
    """The mean over prompts of each column of ``values`` ``[n, ...]`` (flattened)."""
    return bootstrap(lambda m: m, values, rs)


def mean_interval(values: torch.Tensor, rs: Resampling) -> Interval:
    """The mean over prompts of ``values`` ``[n]``."""
    return mean_intervals(values.reshape(-1, 1), rs)[0]


def ratio(patched: torch.Tensor, clean: torch.Tensor, corrupted: torch.Tensor) -> torch.Tensor:
    """``(patched − corrupted) / (clean − corrupted)`` of means; NaN where the gap vanishes (the
    threshold is :func:`circuitwise.circuits.patch.normalise`'s, so no resample divides by noise)."""
    gap = clean - corrupted
    scale = torch.maximum(torch.ones_like(clean), torch.maximum(clean.abs(), corrupted.abs()))
    ok = gap.abs() > 1e-4 * scale
    return torch.where(ok, (patched - corrupted) / torch.where(ok, gap, torch.ones_like(gap)), torch.nan)


def normalised_intervals(patched: torch.Tensor, clean: torch.Tensor, corrupted: torch.Tensor,
                         rs: Resampling) -> list[Interval]:
    """Faithfulness-style ratios of means: one interval per column of ``patched`` ``[n, k]``, with
    ``clean``/``corrupted`` ``[n]`` resampled together with it (the same prompts in every part)."""
    p = patched.reshape(patched.shape[0], -1)
    k = p.shape[1]
    both = torch.cat([p, clean.reshape(-1, 1), corrupted.reshape(-1, 1)], 1)
    return bootstrap(lambda m: ratio(m[:, :k], m[:, k : k + 1], m[:, k + 1 : k + 2]), both, rs)


__all__ = ["Interval", "Resampling", "bootstrap", "mean_interval", "mean_intervals", "normalised_intervals",
           "quantile_interval", "ratio", "resample_counts", "resample_indices"]


def top_cell_order(values: torch.Tensor, k: int) -> list[int]:
    """Flat indices of the ``k`` cells of largest ``|value|``, NaN last: ``PatchResult.top``'s order when given
    its ``values - unpatched``."""
    key = values.flatten().abs()
    key = torch.where(torch.isnan(key), torch.tensor(float("-inf")), key)
    return key.argsort(descending=True)[:k].tolist()


def cell_intervals(raw: torch.Tensor, clean: torch.Tensor | None, corrupted: torch.Tensor | None, cells: list[int],
                   normalized: bool, rs: Resampling) -> list[Interval]:
    """Patching cells' intervals: ``raw`` ``[n, *axes]`` is the patched metric per prompt, ``cells``
    flat indices. Normalised sweeps are ratios of means (clean and corrupted resampled with them)."""
    cols = raw.reshape(raw.shape[0], -1)[:, cells]
    if normalized and clean is not None and corrupted is not None:
        return normalised_intervals(cols, clean, corrupted, rs)
    return mean_intervals(cols, rs)


__all__ += ["cell_intervals", "top_cell_order"]
