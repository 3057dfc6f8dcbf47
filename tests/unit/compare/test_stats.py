"""The comparison's statistics against plain-Python re-implementations (tests/unit/compare/reference.py)."""

from __future__ import annotations

import random

import pytest
import torch

from circuitwise.compare.stats import Side, benjamini_hochberg, bootstrap_weights, compare_sides
from circuitwise.patching.result import PatchResult
from tests.unit.compare import reference as ref


def T(x):
    return torch.tensor(x, dtype=torch.float64)


def _data(n: int, cells: int, shift: list[float], seed: int = 0) -> tuple[list[list[float]], list[list[float]]]:
    rng = random.Random(seed)
    a = [[rng.gauss(0, 1) for _ in range(cells)] for _ in range(n)]
    b = [[a[i][j] - shift[j] + rng.gauss(0, 0.5) for j in range(cells)] for i in range(n)]
    return a, b


def test_paired_exact_test_and_bh_equal_the_reference():
    a, b = _data(10, 5, [0.0, 2.0, 0.3, 0.0, -1.5])
    d = compare_sides(Side(T(a)), Side(T(b)), paired=True, permutations=4096, bootstrap=200)
    assert "exact" in d.test
    for j in range(5):
        ca, cb = ref.column(a, j), ref.column(b, j)
        assert float(d.a[j]) == pytest.approx(ref.mean(ca), abs=1e-12)
        assert float(d.diff[j]) == pytest.approx(ref.mean(ca) - ref.mean(cb), abs=1e-12)
        assert float(d.p[j]) == pytest.approx(ref.exact_paired_p("mean", ca, cb), abs=1e-12)
    q = ref.benjamini_hochberg([float(x) for x in d.p])
    assert [float(x) for x in d.q] == pytest.approx(q, abs=1e-12)
    assert d.significant.tolist() == [qi <= 0.05 for qi in q]
    assert d.significant[1] and d.significant[4] and not d.significant[0] and not d.significant[3]


def test_paired_ratio_statistic_is_patchings_and_its_swap_test_exact():
    rng = random.Random(3)
    n, cells = 8, 3
    clean = [[rng.uniform(2, 3) for _ in range(n)] for _ in range(2)]
    corr = [[rng.uniform(-1, 0) for _ in range(n)] for _ in range(2)]
    raw = [[[corr[s][i] + f * (clean[s][i] - corr[s][i]) + rng.gauss(0, 0.1) for f in (0.9, 0.1, 0.5 - 0.3 * s)]
            for i in range(n)] for s in range(2)]
    sides = [Side(T(raw[s]), T(clean[s]), T(corr[s])) for s in range(2)]
    d = compare_sides(*sides, paired=True, statistic="ratio", permutations=256, bootstrap=200)
    for s, stat in ((0, d.a), (1, d.b)):
        pr = PatchResult.build(T(raw[s]), T(clean[s]), T(corr[s]), axes=("cell",),
                               labels={}, metric="logit_diff", normalize=True, config={})
        assert stat.float().tolist() == pytest.approx(pr.values.tolist(), abs=1e-6)
    for j in range(cells):
        ra, rb = ref.column(raw[0], j), ref.column(raw[1], j)
        want = ref.exact_paired_p("ratio", ra, rb, clean[0], clean[1], corr[0], corr[1])
        assert float(d.p[j]) == pytest.approx(want, abs=1e-12)


def test_identical_sides_give_zero_differences_p_one_and_nothing_flagged():
    a, _ = _data(20, 6, [0.0] * 6)
    t = T(a)
    d = compare_sides(Side(t), Side(t.clone()), paired=True, permutations=1000, bootstrap=200)
    assert d.diff.abs().max() == 0 and (d.p == 1).all() and (d.q == 1).all() and not d.significant.any()
    assert float(d.diff_ci[0].min()) == 0 and float(d.diff_ci[1].max()) == 0


def test_min_difference_keeps_float_rounding_from_being_flagged():
    a = torch.ones(12, 1) * 1e-7
    d = compare_sides(Side(a), Side(torch.zeros(12, 1)), paired=True, permutations=5000, min_difference=1e-4)
    assert float(d.p[0]) < 0.01 and not d.significant.any()


def test_unpaired_permutation_p_is_close_to_the_exact_test():
    rng = random.Random(1)
    a = [[rng.gauss(0.8, 1)] for _ in range(6)]
    b = [[rng.gauss(0, 1)] for _ in range(7)]
    d = compare_sides(Side(T(a)), Side(T(b)), paired=False, permutations=40000, bootstrap=500)
    exact = ref.exact_unpaired_p([r[0] for r in a], [r[0] for r in b])
    se = (exact * (1 - exact) / 40000) ** 0.5
    assert abs(float(d.p[0]) - exact) < 5 * se + 1e-4
    assert float(d.diff[0]) == pytest.approx(ref.mean([r[0] for r in a]) - ref.mean([r[0] for r in b]), abs=1e-12)
    assert "two-sample" in d.test


def test_bootstrap_interval_is_the_percentile_interval_of_paired_resamples():
    a, b = _data(9, 2, [1.0, 0.0], seed=5)
    d = compare_sides(Side(T(a)), Side(T(b)), paired=True, bootstrap=300, permutations=512,
                      seed=7, confidence=0.9)
    # The same resamples, read back as counts of each example, recomputed in plain Python.
    w = bootstrap_weights(9, 300, torch.Generator().manual_seed(7))
    counts = (w * 9).round().long().tolist()
    assert all(sum(c) == 9 for c in counts)
    for j in range(2):
        diffs = sorted(sum(c[i] * (a[i][j] - b[i][j]) for i in range(9)) / 9 for c in counts)
        lo = torch.quantile(T(diffs), 0.05)
        hi = torch.quantile(T(diffs), 0.95)
        assert float(d.diff_ci[0][j]) == pytest.approx(float(lo), abs=1e-9)
        assert float(d.diff_ci[1][j]) == pytest.approx(float(hi), abs=1e-9)
        assert float(d.diff_ci[0][j]) <= float(d.diff[j]) <= float(d.diff_ci[1][j])


def test_benjamini_hochberg_with_ties_and_nan():
    p = T([0.01, 0.04, 0.04, 0.2, float("nan"), 0.03])
    q = benjamini_hochberg(p)
    want = ref.benjamini_hochberg([0.01, 0.04, 0.04, 0.2, 0.03])
    assert q[[0, 1, 2, 3, 5]].tolist() == pytest.approx(want, abs=1e-12)
    assert torch.isnan(q[4])
