"""Exact sweeps equal TransformerLens's ``get_act_patch_*`` on the same model and tokens."""

from __future__ import annotations

import pytest
import torch

from circuitwise.patching import SWEEPS, activation_patching

ATOL = 1e-4


@pytest.mark.parametrize("what", list(SWEEPS))
@pytest.mark.parametrize("engine", ["cone", "hooks"])
def test_raw_values_equal_transformerlens(small_model, seed_tok, tl_reference, what, engine):
    res = activation_patching(small_model, seed_tok, what, normalize=False, engine=engine)
    ref = tl_reference(what)
    assert res.values.shape == ref.shape
    assert res.axes == SWEEPS[what].axes
    torch.testing.assert_close(res.values, ref, atol=ATOL, rtol=0)
    assert res.config["engine"] == engine


def test_axis_labels_name_tokens_layers_and_heads(small_model, seed_tok):
    res = activation_patching(small_model, seed_tok, "heads_by_pos", normalize=False)
    L, H = small_model.cfg.n_layers, small_model.cfg.n_heads
    assert res.labels["layer"] == [str(l) for l in range(L)]
    assert res.labels["head"] == [str(h) for h in range(H)]
    assert res.labels["pos"] == [f"{t}_{i}" for i, t in enumerate(seed_tok.str_tokens[0])]
    assert res.per_example.shape == (len(seed_tok), L, seed_tok.clean.shape[1], H)


def test_batches_give_the_same_result(small_model, seed_tok):
    whole = activation_patching(small_model, seed_tok, "resid_pre", normalize=False)
    parts = activation_patching(small_model, seed_tok, "resid_pre", normalize=False, batch_size=4)
    torch.testing.assert_close(parts.raw, whole.raw, atol=1e-5, rtol=0)


def test_noising_equals_transformerlens_with_the_runs_swapped(small_model, seed_tok):
    """``noise``: TL's sweep run on the clean prompts with the corrupted run's cache."""
    from transformer_lens import patching

    _, corrupted_cache = small_model.run_with_cache(seed_tok.corrupted)
    answers = seed_tok.answers

    def metric(logits):
        a = logits[:, -1].gather(-1, answers)
        return (a[:, 0] - a[:, 1]).mean()

    ref = patching.get_act_patch_attn_head_out_by_pos(small_model, seed_tok.clean, corrupted_cache, metric)
    res = activation_patching(small_model, seed_tok, "heads_by_pos", normalize=False, direction="noise")
    torch.testing.assert_close(res.values, ref.cpu(), atol=ATOL, rtol=0)
