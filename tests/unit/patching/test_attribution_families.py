"""Attribution patching on every family equals a finite difference of the patch it estimates
(tests/unit/patching/finite_difference.py: plain TransformerLens hooks)."""

from __future__ import annotations

import pytest
import torch

import circuitwise as cw
from circuitwise.patching import SWEEPS, attribution_patching
from tests.unit.patching.finite_difference import finite_difference


@pytest.fixture(scope="module")
def family_tok(family_model):
    tok, _ = cw.tokenize_task(family_model, cw.get_task("opposites-seed").subset((1, 2, 5)), need_corrupted=True)
    return tok


@pytest.mark.parametrize("what", list(SWEEPS))
def test_attribution_equals_finite_difference(family_model, family_tok, what):
    attr = attribution_patching(family_model, family_tok, what, normalize=False)
    effect = attr.raw - attr.corrupted.view(-1, *[1] * (attr.raw.dim() - 1))  # [example, layer, *cell]
    # The (layer, cell) the patch moves most: with 4-token windows a layer-0 query patch can be
    # out of the answer's reach entirely.
    layer, *cell = (int(c) for c in torch.unravel_index(effect.abs().mean(0).argmax(), effect.shape[1:]))
    cell = tuple(cell)
    effect = effect[:, layer]
    fd = finite_difference(family_model, family_tok, what, layer, cell).float()
    if float(effect.abs().max()) == 0.0:
        # Only where every layer is windowed (Mistral, Phi-3 fixtures): the corrupted token's
        # queries never reach the answer. The finite difference must agree that nothing moves.
        from circuitwise.models.weights import read_weights

        assert all(w is not None for w in read_weights(family_model).features["sliding_window"])
        assert float(fd.abs().max()) == 0.0
        return
    assert float(fd.abs().max()) > 1e-5, "the patch moves nothing: a degenerate check"
    torch.testing.assert_close(effect[(slice(None), *cell)], fd, atol=2e-4, rtol=5e-3)
