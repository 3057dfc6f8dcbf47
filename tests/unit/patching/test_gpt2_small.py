"""GPT-2-small shapes (random weights, GPT-2's tokenizer): parity with TransformerLens at full size."""

from __future__ import annotations

import pytest
import torch

import circuitwise as cw
from circuitwise.patching import SWEEPS, activation_patching
from tests.helpers import gpt2_small_checkpoint

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def gpt2_small(tmp_path_factory):
    model = cw.load_model(str(gpt2_small_checkpoint(tmp_path_factory.mktemp("gpt2s"))), device="cpu")
    tok, _ = cw.tokenize_task(model, cw.get_task("opposites-seed"), need_corrupted=True)
    _, cache = model.run_with_cache(tok.clean)
    return model, tok, cache


def _metric(tok):
    def metric(logits):
        a = logits[:, -1].gather(-1, tok.answers)
        return (a[:, 0] - a[:, 1]).mean()

    return metric


@pytest.mark.parametrize("what", ["resid_pre", "heads_by_pos", "heads"])
def test_gpt2_small_sweeps_equal_transformerlens(gpt2_small, what):
    """Every cell for resid_pre; an evenly spaced sample of cells (one TL forward each) for the rest."""
    from transformer_lens import patching as tl_patching

    model, tok, cache = gpt2_small
    ours = activation_patching(model, tok, what, normalize=False)
    kw = getattr(tl_patching, SWEEPS[what].tl_function).keywords
    names = list(kw["index_axis_names"])
    sizes = {"layer": model.cfg.n_layers, "pos": tok.clean.shape[1], "head": model.cfg.n_heads}
    df = tl_patching.make_df_from_ranges([sizes[n] for n in names], names)
    if what != "resid_pre":
        df = df.iloc[:: max(1, len(df) // 40)].reset_index(drop=True)
    ref = tl_patching.generic_activation_patch(model, tok.corrupted, cache, _metric(tok), kw["patch_setter"],
                                   kw["activation_name"], index_df=df).cpu()
    cells = tuple(torch.tensor(df[n].to_numpy()) for n in names)
    torch.testing.assert_close(ours.values[cells], ref, atol=1e-4, rtol=0)
