"""Every patching sweep on every family equals TransformerLens's own ``get_act_patch_*``.

Run with the engine circuitwise picks for the family (``auto``), so the same tests guard the hook
engine today and any faster engine that takes a family over later. With grouped-query attention
TL's ``head_k`` / ``head_v`` sweeps run per key/value head (``n_key_value_heads`` cells per
layer, each shared by several query heads), so ours must too.

On OPT, GPT-Neo and GPT-J, TL 4.3's bridge runs attention inside the Hugging Face module and
discards ``hook_pattern`` edits (it warns once, outside ``patching``), so TL's
``get_act_patch_attn_head_pattern_all_pos`` returns the corrupted metric for every head there.
On those families ``head_pattern`` is checked against the equivalent plain-hook patch instead:
``hook_z`` of the head set to the clean pattern times the corrupted run's values.
"""

from __future__ import annotations

import pytest
import torch

import circuitwise as cw
from circuitwise.patching import SWEEPS, activation_patching

# Every sweep on 15 families is ~100 forwards each of TL's and ours: over a minute on 2 cores.
pytestmark = pytest.mark.slow

ATOL = 1e-4
_refs: dict[tuple[str, str], torch.Tensor] = {}


@pytest.fixture(scope="module")
def family_tok(family_model):
    # The three seed prompts whose corruption moves every family's logit difference most.
    task = cw.get_task("opposites-seed").subset((1, 2, 5))
    tok, _ = cw.tokenize_task(family_model, task, need_corrupted=True)
    assert tok.same_length, "TL's sweeps read position -1; the prompts must be of equal length"
    return tok


def _metric(tok):
    def metric(logits):
        a = logits[:, -1].gather(-1, tok.answers.to(logits.device))
        return (a[:, 0] - a[:, 1]).mean()

    return metric


def _tl(family, model, tok, what):
    from transformer_lens import patching

    if (family, what) not in _refs:
        _, clean_cache = model.run_with_cache(tok.clean)
        fn = getattr(patching, SWEEPS[what].tl_function)
        _refs[family, what] = fn(model, tok.corrupted, clean_cache, _metric(tok)).cpu()
    return _refs[family, what]


def _logit_diff(model, tokens, tok):
    with torch.inference_mode():
        a = model(tokens)[:, -1].gather(-1, tok.answers)
    return a[:, 0] - a[:, 1]


def _pattern_edits_take_effect(model, tok):
    uniform = lambda act, hook: torch.full_like(act, 1.0 / act.shape[-1])  # noqa: E731
    with torch.inference_mode():
        plain = model(tok.clean[:1])
        edited = model.run_with_hooks(tok.clean[:1], fwd_hooks=[("blocks.0.attn.hook_pattern", uniform)])
    return bool((plain - edited).abs().max() > 1e-4)


@pytest.mark.parametrize("what", list(SWEEPS))
def test_sweep_equals_transformerlens(family_ckpt, family_model, family_tok, what):
    family = family_ckpt[0]
    if what == "head_pattern" and not _pattern_edits_take_effect(family_model, family_tok):
        ref = _tl(family, family_model, family_tok, what)
        corrupted = _logit_diff(family_model, family_tok.corrupted, family_tok).mean()
        torch.testing.assert_close(ref, corrupted.expand_as(ref), atol=1e-6, rtol=0)
        pytest.skip(f"TL 4.3 discards hook_pattern edits on {family} (attention runs inside the HF module), "
                    "so its pattern sweep is the corrupted metric everywhere (just checked); "
                    "test_head_pattern_equals_patching_z_with_the_clean_pattern checks ours")
    ref = _tl(family, family_model, family_tok, what)
    res = activation_patching(family_model, family_tok, what, normalize=False)
    assert res.axes == SWEEPS[what].axes
    assert res.values.shape == ref.shape, (
        f"{family} {what}: ours {tuple(res.values.shape)}, TL's {tuple(ref.shape)}")
    torch.testing.assert_close(res.values, ref, atol=ATOL, rtol=0)
    n_cells = ref.shape[-1] if SWEEPS[what].by_head else None
    if n_cells is not None:
        assert len(res.labels["head"]) == n_cells


def test_gqa_key_value_sweeps_run_per_key_value_head(family_model, family_tok):
    cfg = family_model.cfg
    kv = getattr(cfg, "n_key_value_heads", None) or cfg.n_heads
    for what in ("head_k", "head_v"):
        res = activation_patching(family_model, family_tok, what, normalize=False)
        assert res.values.shape == (cfg.n_layers, kv)
    for what in ("head_q", "heads", "head_pattern"):
        res = activation_patching(family_model, family_tok, what, normalize=False)
        assert res.values.shape == (cfg.n_layers, cfg.n_heads)


def test_unpatched_metrics_are_the_models_own(family_model, family_tok):
    res = activation_patching(family_model, family_tok, "heads", normalize=False)
    torch.testing.assert_close(res.clean, _logit_diff(family_model, family_tok.clean, family_tok), atol=ATOL, rtol=0)
    torch.testing.assert_close(res.corrupted, _logit_diff(family_model, family_tok.corrupted, family_tok),
                               atol=ATOL, rtol=0)
    assert (res.clean - res.corrupted).abs().max() > 50 * ATOL, "degenerate fixture: clean and corrupted agree"


def test_resid_pre_at_layer_0_restores_the_clean_run_and_no_op_patches_change_nothing(family_model, family_tok):
    """At layer 0 the residual is the whole input: the flipped token's patch is the clean run, others no-ops."""
    tok = family_tok
    diff = tok.clean != tok.corrupted
    assert bool((diff.sum(1) == 1).all()), "the seed's flip corruption changes exactly one token"
    flip = diff.int().argmax(1)
    n = len(tok)
    res = activation_patching(family_model, tok, "resid_pre", normalize=False)
    torch.testing.assert_close(res.raw[torch.arange(n), 0, flip], res.clean, atol=ATOL, rtol=0)
    mask = torch.ones_like(res.raw[:, 0], dtype=torch.bool)
    mask[torch.arange(n), flip] = False
    layer0 = res.raw[:, 0]
    torch.testing.assert_close(layer0[mask], res.corrupted[:, None].expand_as(layer0)[mask], atol=ATOL, rtol=0)


def test_head_pattern_equals_patching_z_with_the_clean_pattern(family_model, family_tok):
    """A head's output is its pattern times its values: the plain-hook patch that works on every bridge."""
    model, tok = family_model, family_tok
    cfg = model.cfg
    _, clean = model.run_with_cache(tok.clean)
    _, corrupted = model.run_with_cache(tok.corrupted)
    metric = _metric(tok)
    ref = torch.zeros(cfg.n_layers, cfg.n_heads)
    for l in range(cfg.n_layers):
        v = corrupted[f"blocks.{l}.attn.hook_v"]  # [batch, pos, kv_head, d_head]
        group = cfg.n_heads // v.shape[2]  # query heads per key/value head (GQA)
        for h in range(cfg.n_heads):
            z = torch.einsum("bqk,bkd->bqd", clean[f"blocks.{l}.attn.hook_pattern"][:, h], v[:, :, h // group])

            def patch(act, hook, h=h, z=z):
                act = act.clone()
                act[:, :, h] = z
                return act

            with torch.inference_mode():
                logits = model.run_with_hooks(tok.corrupted, fwd_hooks=[(f"blocks.{l}.attn.hook_z", patch)])
            ref[l, h] = metric(logits)
    # The tiny LayerNorm fixtures' patterns barely matter (effects ~1e-3), so compare more tightly
    # than ATOL: both sides compute the same thing, to float rounding.
    tight = 1e-5
    corrupted_metric = _logit_diff(model, tok.corrupted, tok).mean()
    assert (ref - corrupted_metric).abs().max() > 20 * tight, "degenerate: no head's pattern matters"
    res = activation_patching(model, tok, "head_pattern", normalize=False)
    torch.testing.assert_close(res.values, ref, atol=tight, rtol=0)
