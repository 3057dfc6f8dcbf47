"""Prompts of different lengths: aligned by role, never read at a padding position."""

from __future__ import annotations

import pytest
import torch

import circuitwise as cw
from circuitwise.errors import TaskError
from circuitwise.patching import activation_patching

PROMPTS = [
    ("A tortoise is old, but a kitten is", "old", " young", " old"),
    ("The slow and very ancient tortoise is old, but the kitten is", "old", " young", " old"),
    ("A rock is hard, but, a sponge is", "hard", " soft", " hard"),
]


def _task(with_roles: bool) -> cw.Task:
    examples = []
    for clean, adj, correct, incorrect in PROMPTS:
        corrupted = clean.replace(f" {adj},", f"{correct},", 1)
        roles = None
        if with_roles:
            roles = {"ADJ": clean.index(f" {adj},") + 1, "END": clean.rindex(" is") + 1}
        examples.append(cw.Example(clean, correct, incorrect, corrupted=corrupted, roles=roles))
    return cw.Task("mixed", tuple(examples))


@pytest.fixture(scope="module")
def mixed_tok(small_model):
    tok, _ = cw.tokenize_task(small_model, _task(with_roles=True), need_corrupted=True)
    assert not tok.same_length
    return tok


@pytest.mark.parametrize("what", ["resid_pre", "heads_by_pos", "heads", "head_k", "head_pattern"])
@pytest.mark.parametrize("direction", ["denoise", "noise"])
def test_cone_equals_hooks_on_mixed_lengths(small_model, mixed_tok, what, direction):
    fast = activation_patching(small_model, mixed_tok, what, normalize=False, direction=direction, engine="cone")
    ref = activation_patching(small_model, mixed_tok, what, normalize=False, direction=direction, engine="hooks")
    torch.testing.assert_close(fast.raw, ref.raw, atol=1e-4, rtol=0)


def test_each_example_alone_gives_its_own_row(small_model, mixed_tok):
    """Padding never leaks: a batched row equals the example swept on its own."""
    together = activation_patching(small_model, mixed_tok, "heads", normalize=False)
    for i in range(len(mixed_tok)):
        alone = activation_patching(small_model, mixed_tok.slice(i, i + 1), "heads", normalize=False)
        torch.testing.assert_close(together.raw[i], alone.raw[0], atol=1e-4, rtol=0)


def test_role_axis_is_labelled_by_role_in_reading_order(small_model, mixed_tok):
    res = activation_patching(small_model, mixed_tok, "resid_pre", normalize=False)
    assert res.labels["pos"] == ["ADJ", "END"]
    assert res.config["align"] == "role"
    # Layer 0, ADJ: the flipped word itself, so each example is fully restored.
    torch.testing.assert_close(res.raw[:, 0, 0], res.clean, atol=1e-4, rtol=0)


def test_different_lengths_without_roles_say_how_to_fix(small_model):
    task = _task(with_roles=False)
    with pytest.raises(TaskError, match="different token lengths.*roles"):
        activation_patching(small_model, task, "resid_pre")
    # Sweeps without a position axis do not need alignment.
    res = activation_patching(small_model, task, "heads", normalize=False)
    assert res.values.shape == (small_model.cfg.n_layers, small_model.cfg.n_heads)


@pytest.mark.parametrize("what", ["resid_pre", "heads_by_pos", "head_q"])
def test_attribution_reads_the_same_role_cells(small_model, mixed_tok, what):
    from circuitwise.patching import attribution_patching

    exact = activation_patching(small_model, mixed_tok, what, normalize=False, direction="noise")
    attr = attribution_patching(small_model, mixed_tok, what, normalize=False, direction="noise")
    assert attr.labels == exact.labels and attr.raw.shape == exact.raw.shape
    torch.testing.assert_close(attr.clean, exact.clean, atol=1e-4, rtol=0)
    assert attr.correlation(exact) > 0.5
