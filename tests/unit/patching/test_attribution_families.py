"""Attribution patching on every family equals a finite difference of the patch it estimates.

The finite difference moves one cell a small step from its corrupted towards its clean value
with plain TransformerLens hooks. An attention pattern is moved through the head's output
z = pattern @ v: on OPT, GPT-Neo and GPT-J TransformerLens 4.3 discards edits to hook_pattern.
"""

from __future__ import annotations

import pytest
import torch

import circuitwise as cw
from circuitwise.metrics import answer_logits
from circuitwise.patching import SWEEPS, attribution_patching

EPS = 1e-2


@pytest.fixture(scope="module")
def family_tok(family_model):
    tok, _ = cw.tokenize_task(family_model, cw.get_task("opposites-seed").subset((1, 2, 5)), need_corrupted=True)
    return tok


def _finite_difference(model, tok, what, layer, cell):
    sweep = SWEEPS[what]
    name = sweep.hook_name(layer)
    z_name, v_name = f"blocks.{layer}.attn.hook_z", f"blocks.{layer}.attn.hook_v"
    _, src_cache = model.run_with_cache(tok.clean, names_filter=lambda n: n == name)
    src = src_cache[name]
    _, base_cache = model.run_with_cache(tok.corrupted, names_filter=lambda n: n in (name, v_name))

    def metric_at(alpha):
        def hook(act, hook):
            act = act.clone()
            if sweep.site == "pos":
                (p,) = cell
                act[:, p] += alpha * (src[:, p] - act[:, p])
            elif sweep.site == "pos_head":
                p, h = cell
                act[:, p, h] += alpha * (src[:, p, h] - act[:, p, h])
            elif sweep.act == "pattern":  # act is z [b, pos, head, d]
                (h,) = cell
                base_p = base_cache[name][:, h]
                v = base_cache[v_name]
                v_h = v[:, :, h // (act.shape[2] // v.shape[2])]
                act[:, :, h] = (base_p + alpha * (src[:, h] - base_p)) @ v_h
            else:
                (h,) = cell
                act[:, :, h] += alpha * (src[:, :, h] - act[:, :, h])
            return act

        target = z_name if sweep.act == "pattern" else name
        logits = model.run_with_hooks(tok.corrupted, fwd_hooks=[(target, hook)])
        a = answer_logits(logits, tok.last, tok.answers).double()
        return a[:, 0] - a[:, 1]

    return (metric_at(EPS) - metric_at(-EPS)) / (2 * EPS)


@pytest.mark.parametrize("what", list(SWEEPS))
def test_attribution_equals_finite_difference(family_model, family_tok, what):
    attr = attribution_patching(family_model, family_tok, what, normalize=False)
    effect = attr.raw - attr.corrupted.view(-1, *[1] * (attr.raw.dim() - 1))  # [example, layer, *cell]
    # The (layer, cell) the patch moves most: with 4-token windows a layer-0 query patch can be
    # out of the answer's reach entirely.
    layer, *cell = (int(c) for c in torch.unravel_index(effect.abs().mean(0).argmax(), effect.shape[1:]))
    cell = tuple(cell)
    effect = effect[:, layer]
    fd = _finite_difference(family_model, family_tok, what, layer, cell).float()
    if float(effect.abs().max()) == 0.0:
        # Only where every layer is windowed (Mistral, Phi-3 fixtures): the corrupted token's
        # queries never reach the answer. The finite difference must agree that nothing moves.
        from circuitwise.models.weights import read_weights

        assert all(w is not None for w in read_weights(family_model).features["sliding_window"])
        assert float(fd.abs().max()) == 0.0
        return
    assert float(fd.abs().max()) > 1e-5, "the patch moves nothing: a degenerate check"
    torch.testing.assert_close(effect[(slice(None), *cell)], fd, atol=2e-4, rtol=5e-3)
