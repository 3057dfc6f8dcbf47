"""Spearman with ties, against values worked out by hand."""

from __future__ import annotations

import math

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from circuitwise.evaluation.stats import pearson, rankdata, spearman


def test_ranks_with_ties():
    assert rankdata(torch.tensor([10.0, 20.0, 10.0, 30.0])).tolist() == [1.5, 3.0, 1.5, 4.0]


def test_known_values():
    x = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0])
    assert math.isclose(spearman(x, x ** 3), 1.0)
    assert math.isclose(spearman(x, -x), -1.0)
    # ranks (1,2,3,4,5) vs (2,1,4,3,5): 1 - 6*4/(5*24) = 0.8
    assert math.isclose(spearman(x, torch.tensor([2.0, 1.0, 4.0, 3.0, 5.0])), 0.8)
    assert math.isnan(spearman(torch.tensor([1.0]), torch.tensor([2.0])))
    assert math.isclose(spearman(torch.tensor([1.0, float("nan"), 2.0, 3.0]), torch.tensor([1.0, 5.0, 2.0, 3.0])), 1.0)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(-5, 5), min_size=3, max_size=30))
def test_spearman_is_pearson_of_ranks_and_bounded(values):
    x = torch.tensor(values, dtype=torch.float64)
    y = torch.arange(len(values), dtype=torch.float64)
    r = spearman(x, y)
    if x.unique().numel() == 1:
        assert math.isnan(r)
    else:
        assert -1 - 1e-9 <= r <= 1 + 1e-9
        assert math.isclose(r, pearson(rankdata(x), rankdata(y)))
