"""Invariants: patching nothing gives the corrupted metric; patching the whole input the clean one."""

from __future__ import annotations

import pytest
import torch

import circuitwise as cw
from circuitwise.patching import DegenerateNormalizationWarning, activation_patching


def _flip_positions(tok):
    """The one position where each clean prompt differs from its corrupted prompt."""
    diff = tok.clean != tok.corrupted
    assert bool((diff.sum(1) == 1).all()), "the seed's flip corruption changes exactly one token"
    return diff.int().argmax(1)


@pytest.mark.parametrize("direction", ["denoise", "noise"])
def test_resid_pre_at_layer_0_is_the_whole_input(small_model, seed_tok, direction):
    """At layer 0 the residual is the token embedding: patching the flipped position swaps prompts."""
    res = activation_patching(small_model, seed_tok, "resid_pre", direction=direction)
    flip = _flip_positions(seed_tok)
    n = len(seed_tok)
    at_flip = res.raw[torch.arange(n), 0, flip]
    target, other = (res.clean, res.corrupted) if direction == "denoise" else (res.corrupted, res.clean)
    torch.testing.assert_close(at_flip, target, atol=1e-4, rtol=0)
    # Patching any other position at layer 0 patches nothing at all: exactly the unpatched run.
    mask = torch.ones_like(res.raw[:, 0], dtype=torch.bool)
    mask[torch.arange(n), flip] = False
    assert torch.equal(res.raw[:, 0][mask], other[:, None].expand_as(res.raw[:, 0])[mask])
    # Normalised, per example: 1 where the whole answer is restored (denoise) / destroyed (noise), else 0.
    per = res.per_example[:, 0]
    expected = 1.0 if direction == "denoise" else 0.0
    torch.testing.assert_close(per[torch.arange(n), flip], torch.full((n,), expected), atol=1e-4, rtol=0)
    torch.testing.assert_close(per[mask], torch.full_like(per[mask], 1.0 - expected), atol=1e-5, rtol=0)


def test_positions_before_the_corruption_change_nothing(small_model, seed_tok):
    res = activation_patching(small_model, seed_tok, "heads_by_pos", normalize=False)
    first = int(_flip_positions(seed_tok).min())
    before = res.raw[:, :, :first]
    assert torch.equal(before, res.corrupted.view(-1, 1, 1, 1).expand_as(before))


def test_normalised_values_are_the_recovered_fraction(small_model, seed_tok):
    res = activation_patching(small_model, seed_tok, "heads")
    gap = res.clean.mean() - res.corrupted.mean()
    torch.testing.assert_close(res.values, (res.raw.mean(0) - res.corrupted.mean()) / gap)
    raw = activation_patching(small_model, seed_tok, "heads", normalize=False)
    torch.testing.assert_close(raw.values, res.raw.mean(0))
    assert not res.degenerate and res.normalized


def test_no_gap_is_degenerate_nan_and_warned(small_model):
    same = cw.Task("same", tuple(
        cw.Example(e.clean, e.correct, e.incorrect, corrupted=e.clean) for e in cw.get_task("opposites-seed")))
    with pytest.warns(DegenerateNormalizationWarning, match="nothing to recover"):
        res = activation_patching(small_model, same, "resid_pre")
    assert res.degenerate
    assert bool(torch.isnan(res.values).all())
    assert bool(torch.isnan(res.per_example).all())
    assert res.to_json()["values"][0][0] is None
    raw = activation_patching(small_model, same, "resid_pre", normalize=False)
    assert torch.equal(raw.raw, raw.corrupted.view(-1, 1, 1).expand_as(raw.raw))
