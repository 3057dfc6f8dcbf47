"""Any JSON-serialisable result with NaN or ±inf anywhere is written as valid JSON (null there)."""

from __future__ import annotations

import json
import math

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from circuitwise.types import nan_to_none

floats = st.floats(allow_nan=True, allow_infinity=True)
scalars = st.none() | st.booleans() | st.integers() | st.text(max_size=5) | floats
trees = st.recursive(scalars, lambda kids: st.lists(kids, max_size=4) | st.tuples(kids, kids)
                     | st.dictionaries(st.text(max_size=4), kids, max_size=4), max_leaves=30)


def _expected(x):
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {k: _expected(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_expected(v) for v in x]
    return x


@settings(max_examples=300, deadline=None)
@given(trees)
def test_any_tree_with_nan_or_inf_is_valid_json(tree):
    text = json.dumps(nan_to_none(tree), allow_nan=False)
    assert json.loads(text) == _expected(tree)


def test_tensor_scalars_inside_dicts():
    data = {"a": {"b": [torch.tensor(float("nan")), torch.tensor(2.5)]}, "c": (float("-inf"), 1)}
    assert json.loads(json.dumps(nan_to_none(data), allow_nan=False)) == {"a": {"b": [None, 2.5]}, "c": [None, 1]}
