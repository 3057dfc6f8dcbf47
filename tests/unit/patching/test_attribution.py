"""Attribution patching is the derivative of patching: it equals a finite-difference estimate."""

from __future__ import annotations

import pytest
import torch

import circuitwise as cw
from circuitwise.metrics import answer_logits
from circuitwise.patching import SWEEPS, activation_patching, attribution_patching

EPS = 1e-2


@pytest.fixture(scope="module")
def tiny_tok(tiny_model):
    tok, _ = cw.tokenize_task(tiny_model, cw.get_task("opposites-seed"), need_corrupted=True)
    return tok


def _finite_difference(model, tok, what, layer, cell):
    """d/dα metric(base + α (src − base) at one cell) at α = 0, by central differences, per example."""
    sweep = SWEEPS[what]
    name = sweep.hook_name(layer)
    _, src_cache = model.run_with_cache(tok.clean, names_filter=lambda n: n == name)
    src = src_cache[name]

    def metric_at(alpha):
        def hook(act, hook):
            act = act.clone()
            if sweep.site == "pos":
                (p,) = cell
                act[:, p] += alpha * (src[:, p] - act[:, p])
            elif sweep.site == "pos_head":
                p, h = cell
                act[:, p, h] += alpha * (src[:, p, h] - act[:, p, h])
            elif sweep.act == "pattern":
                (h,) = cell
                act[:, h] += alpha * (src[:, h] - act[:, h])
            else:
                (h,) = cell
                act[:, :, h] += alpha * (src[:, :, h] - act[:, :, h])
            return act

        logits = model.run_with_hooks(tok.corrupted, fwd_hooks=[(name, hook)])
        a = answer_logits(logits, tok.last, tok.answers).double()
        return a[:, 0] - a[:, 1]

    return (metric_at(EPS) - metric_at(-EPS)) / (2 * EPS)


@pytest.mark.parametrize("what", list(SWEEPS))
@pytest.mark.parametrize("layer", [0, 1])
def test_attribution_equals_finite_difference(tiny_model, tiny_tok, what, layer):
    attr = attribution_patching(tiny_model, tiny_tok, what, normalize=False)
    effect = attr.raw[:, layer] - attr.corrupted.view(-1, *[1] * (attr.raw.dim() - 2))
    # The cell the patch moves most (many cells are exactly 0: before the corruption, say).
    cell = torch.unravel_index(effect.abs().mean(0).argmax(), effect.shape[1:])
    cell = tuple(int(c) for c in cell)
    fd = _finite_difference(tiny_model, tiny_tok, what, layer, cell).float()
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
