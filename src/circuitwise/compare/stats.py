"""Differences between two sides with their uncertainty: bootstrap intervals, permutation tests, BH.

Every compared quantity is a statistic of per-example values: the ``mean`` of a column, or the
patching ``ratio`` (mean patched − mean corrupted) / (mean clean − mean corrupted). Both are
functions of column *means*, so a resample or a permutation of examples is a weight matrix
``[R, n]`` times the per-example values: thousands of resamples cost one matrix product.

- **Paired** (example *i* of A is example *i* of B): the bootstrap draws the same examples for
  both sides; the test is a sign-flip (swap) permutation test: under "no difference" the two
  values of one example are exchangeable, so each pair is swapped at random. With ``2**n`` at
  most ``permutations`` every swap pattern is enumerated and the p-value is exact.
- **Unpaired**: each side is resampled on its own; the test permutes the side labels of the
  pooled examples (Monte Carlo, with the +1 correction).

Both tests are two-sided on |statistic(A) − statistic(B)|. Over a family of cells (the heads of
a heatmap) p-values are adjusted by Benjamini–Hochberg, controlling the false discovery rate.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Literal

import torch

Statistic = Literal["mean", "ratio"]
# Two permuted statistics this close to the observed one count as ties (float rounding of sums).
TIE_RTOL = 1e-9
TIE_ATOL = 1e-12


@dataclass(frozen=True)
class Side:
    """One side's per-example values. ``values`` [n, cells]; ``clean``/``corrupted`` [n] for ``ratio``."""

    values: torch.Tensor
    clean: torch.Tensor | None = None
    corrupted: torch.Tensor | None = None

    def features(self) -> torch.Tensor:
        """[n, k]: the columns whose means the statistic reads (values, then clean and corrupted)."""
        cols = [self.values.double()]
        if self.clean is not None and self.corrupted is not None:
            cols += [self.clean.double()[:, None], self.corrupted.double()[:, None]]
        return torch.cat(cols, 1)

    @property
    def n(self) -> int:
        return int(self.values.shape[0])


@dataclass(frozen=True)
class Difference:
    """Statistic of A, of B, their difference, intervals and tests, one entry per cell."""

    a: torch.Tensor
    b: torch.Tensor
    diff: torch.Tensor
    a_ci: tuple[torch.Tensor, torch.Tensor]
    b_ci: tuple[torch.Tensor, torch.Tensor]
    diff_ci: tuple[torch.Tensor, torch.Tensor]
    p: torch.Tensor
    q: torch.Tensor | None
    significant: torch.Tensor
    paired: bool
    test: str
    statistic: Statistic


def apply(stat: Statistic, means: torch.Tensor, cells: int) -> torch.Tensor:
    """The statistic from column means ``[..., k]`` → ``[..., cells]``."""
    if stat == "mean":
        return means[..., :cells]
    raw, clean, corr = means[..., :cells], means[..., cells : cells + 1], means[..., cells + 1 : cells + 2]
    gap = clean - corr
    return (raw - corr) / torch.where(gap.abs() > 0, gap, torch.nan)


def bootstrap_weights(n: int, samples: int, gen: torch.Generator) -> torch.Tensor:
    """[samples, n]: how often each example is drawn in each resample, divided by n."""
    idx = torch.randint(0, n, (samples, n), generator=gen)
    w = torch.zeros(samples, n, dtype=torch.float64)
    w.scatter_add_(1, idx, torch.ones(samples, n, dtype=torch.float64))
    return w / n


def _quantiles(x: torch.Tensor, confidence: float) -> tuple[torch.Tensor, torch.Tensor]:
    alpha = (1.0 - confidence) / 2
    return torch.nanquantile(x, alpha, dim=0), torch.nanquantile(x, 1 - alpha, dim=0)


def swap_patterns(n: int, permutations: int, gen: torch.Generator) -> tuple[torch.Tensor, bool]:
    """[R, n] 0/1 (1: swap this pair) and whether they are every pattern (exact test)."""
    if n <= 30 and 2**n <= permutations:
        rows = list(itertools.product((0.0, 1.0), repeat=n))
        return torch.tensor(rows, dtype=torch.float64), True
    return torch.randint(0, 2, (permutations, n), generator=gen).double(), False


def _p_values(observed: torch.Tensor, permuted: torch.Tensor, exact: bool) -> torch.Tensor:
    obs = observed.abs()
    hits = (permuted.abs() >= obs * (1 - TIE_RTOL) - TIE_ATOL).double()
    hits = torch.where(permuted.isnan(), torch.zeros_like(hits), hits)
    if exact:  # the identity pattern is among them: hits ≥ 1
        p = hits.sum(0) / permuted.shape[0]
    else:
        p = (hits.sum(0) + 1) / (permuted.shape[0] + 1)
    return torch.where(obs.isnan(), torch.nan, p.clamp(max=1.0))


def benjamini_hochberg(p: torch.Tensor) -> torch.Tensor:
    """BH-adjusted p-values (q-values) of a flat family; NaN entries are left out and stay NaN."""
    p = p.double().flatten()
    q = torch.full_like(p, float("nan"))
    ok = ~p.isnan()
    m = int(ok.sum())
    if m == 0:
        return q
    vals = p[ok]
    order = torch.argsort(vals)
    ranked = vals[order] * m / torch.arange(1, m + 1, dtype=torch.float64)
    # Step-up: each adjusted value is the smallest ranked value at or after it.
    adj = torch.flip(torch.cummin(torch.flip(ranked, [0]), 0).values, [0]).clamp(max=1.0)
    out = torch.empty_like(vals)
    out[order] = adj
    q[ok] = out
    return q


def compare_sides(a: Side, b: Side, *, paired: bool, statistic: Statistic = "mean", confidence: float = 0.95,
                  bootstrap: int = 2000, permutations: int = 10000, alpha: float = 0.05, correct: bool = True,
                  min_difference: float = 0.0, seed: int = 0) -> Difference:
    """Compare ``statistic`` of A and B cell by cell (see the module docstring).

    ``correct``: adjust p-values over the cells by Benjamini–Hochberg; a cell is ``significant``
    when its (adjusted) p-value is at most ``alpha`` and the difference exceeds
    ``min_difference`` (below it, a difference is float rounding, not an effect).
    """
    cells = int(a.values.shape[1])
    if int(b.values.shape[1]) != cells:
        raise ValueError(f"the sides have {cells} and {int(b.values.shape[1])} cells")
    if paired and a.n != b.n:
        raise ValueError(f"paired sides need the same examples, got {a.n} and {b.n}")
    fa, fb = a.features(), b.features()
    gen = torch.Generator().manual_seed(seed)
    stat_a = apply(statistic, fa.mean(0), cells)
    stat_b = apply(statistic, fb.mean(0), cells)
    diff = stat_a - stat_b
    wa = bootstrap_weights(a.n, bootstrap, gen)
    wb = wa if paired else bootstrap_weights(b.n, bootstrap, gen)
    boot_a, boot_b = apply(statistic, wa @ fa, cells), apply(statistic, wb @ fb, cells)
    if paired:
        swap, exact = swap_patterns(a.n, permutations, gen)
        ma = ((1 - swap) @ fa + swap @ fb) / a.n
        mb = (swap @ fa + (1 - swap) @ fb) / a.n
        test = (f"paired sign-flip permutation test ({'exact, all ' if exact else ''}{swap.shape[0]} swap "
                f"pattern{'s' if swap.shape[0] != 1 else ''}{'' if exact else ', Monte Carlo'})")
    else:
        exact = False
        pooled = torch.cat([fa, fb])
        N = pooled.shape[0]
        perm = torch.argsort(torch.rand(permutations, N, generator=gen), dim=1)
        wsel = torch.zeros(permutations, N, dtype=torch.float64)
        wsel.scatter_(1, perm[:, : a.n], 1.0)
        ma = wsel @ pooled / a.n
        mb = (1 - wsel) @ pooled / b.n
        test = f"two-sample permutation test ({permutations} label permutations, Monte Carlo)"
    permuted = apply(statistic, ma, cells) - apply(statistic, mb, cells)
    p = _p_values(diff, permuted, exact)
    q = benjamini_hochberg(p) if correct else None
    decide = q if q is not None else p
    significant = (decide <= alpha) & (diff.abs() > min_difference)
    return Difference(stat_a, stat_b, diff, _quantiles(boot_a, confidence), _quantiles(boot_b, confidence),
                      _quantiles(boot_a - boot_b, confidence), p, q, significant, paired, test, statistic)


__all__ = ["Difference", "Side", "Statistic", "apply", "benjamini_hochberg", "bootstrap_weights",
           "compare_sides", "swap_patterns"]
