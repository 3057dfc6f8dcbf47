"""Shared inputs for the patching tests: the seed task on the 4-layer model, and TL's reference."""

from __future__ import annotations

import pytest

import circuitwise as cw


@pytest.fixture(scope="package")
def seed_tok(small_model):
    tok, _ = cw.tokenize_task(small_model, cw.get_task("opposites-seed"), need_corrupted=True)
    return tok


@pytest.fixture(scope="package")
def tl_reference(small_model, seed_tok):
    """``what -> TransformerLens's get_act_patch_* result`` (logit diff, batch mean), computed lazily."""
    from transformer_lens import patching

    from circuitwise.patching import SWEEPS

    _, clean_cache = small_model.run_with_cache(seed_tok.clean)
    answers = seed_tok.answers

    def metric(logits):
        a = logits[:, -1].gather(-1, answers)
        return (a[:, 0] - a[:, 1]).mean()

    done = {}

    def get(what):
        if what not in done:
            fn = getattr(patching, SWEEPS[what].tl_function)
            done[what] = fn(small_model, seed_tok.corrupted, clean_cache, metric).cpu()
        return done[what]

    return get


@pytest.fixture(scope="package", autouse=True)
def _one_thread():
    """These models are tiny: one thread beats OpenMP's hand-offs, most of all on a busy machine."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
