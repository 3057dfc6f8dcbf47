"""Attribution patching is the derivative of patching: it equals a finite-difference estimate."""

from __future__ import annotations

import pytest
import torch

import circuitwise as cw
from circuitwise.patching import SWEEPS, activation_patching, attribution_patching
from tests.unit.patching.finite_difference import finite_difference


@pytest.fixture(scope="module")
def tiny_tok(tiny_model):
    tok, _ = cw.tokenize_task(tiny_model, cw.get_task("opposites-seed"), need_corrupted=True)
    return tok


@pytest.mark.parametrize("what", list(SWEEPS))
@pytest.mark.parametrize("layer", [0, 1])
def test_attribution_equals_finite_difference(tiny_model, tiny_tok, what, layer):
    attr = attribution_patching(tiny_model, tiny_tok, what, normalize=False)
    effect = attr.raw[:, layer] - attr.corrupted.view(-1, *[1] * (attr.raw.dim() - 2))
    # The cell the patch moves most (many cells are exactly 0: before the corruption, say).
    cell = torch.unravel_index(effect.abs().mean(0).argmax(), effect.shape[1:])
    cell = tuple(int(c) for c in cell)
    fd = finite_difference(tiny_model, tiny_tok, what, layer, cell).float()
    assert float(fd.abs().max()) > 1e-4
    torch.testing.assert_close(effect[(slice(None), *cell)], fd, atol=2e-4, rtol=2e-3)


def test_attribution_tracks_the_exact_sweep(small_model, seed_tok):
    exact = activation_patching(small_model, seed_tok, "heads")
    attr = attribution_patching(small_model, seed_tok, "heads")
    assert attr.config["method"] == "attribution"
    assert attr.values.shape == exact.values.shape and attr.labels == exact.labels
    torch.testing.assert_close(attr.clean, exact.clean, atol=1e-4, rtol=0)
    torch.testing.assert_close(attr.corrupted, exact.corrupted, atol=1e-4, rtol=0)
    assert attr.correlation(exact) > 0.8


def test_sweeps_sharing_one_forward_equal_each_sweep_alone(tiny_model, tiny_tok):
    """The pipeline's attribution_sweeps (one forward and backward per batch for all sweeps,
    a pattern sweep's extra hooks included) give each sweep's own attribution_patching result."""
    from circuitwise.patching.attribution import attribution_sweeps

    whats = ["resid_pre", "heads", "heads_by_pos", "head_pattern"]
    together = attribution_sweeps(tiny_model, tiny_tok, whats, batch_size=4)
    for what in whats:
        alone = attribution_patching(tiny_model, tiny_tok, what, batch_size=4)
        torch.testing.assert_close(together[what].raw, alone.raw, atol=1e-6, rtol=0)
        assert together[what].raw.abs().max() > 0
