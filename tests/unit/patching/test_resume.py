"""An interrupted sweep keeps what it finished and, re-run, gives the uninterrupted result."""

from __future__ import annotations

import pytest
import torch

from circuitwise.patching import activation_patching
from circuitwise.patching import cone_sweeps


class Interrupt(Exception):
    pass


def _stop_after(n):
    calls = []

    def progress(done, total):
        calls.append((done, total))
        if done == n:
            raise Interrupt

    return progress, calls


@pytest.mark.parametrize("what", ["heads_by_pos", "head_v"])
def test_interrupted_then_resumed_equals_uninterrupted(small_model, seed_tok, tmp_path, monkeypatch, what):
    whole = activation_patching(small_model, seed_tok, what, batch_size=4)
    L = small_model.cfg.n_layers
    progress, calls = _stop_after(L + 2)  # all of the first batch, two layers of the second
    with pytest.raises(Interrupt):
        activation_patching(small_model, seed_tok, what, batch_size=4, out=tmp_path, progress=progress)
    assert calls[-1] == (L + 2, 2 * L)

    computed = []
    original = cone_sweeps.ConeSweeper.layer_values

    def counting(self, sweep, l, pos, mask=None):
        computed.append(l)
        return original(self, sweep, l, pos, mask)

    monkeypatch.setattr(cone_sweeps.ConeSweeper, "layer_values", counting)
    progress, calls = _stop_after(-1)
    resumed = activation_patching(small_model, seed_tok, what, batch_size=4, out=tmp_path, progress=progress)
    assert computed == list(range(2, L)), "only the unfinished layers of the second batch are recomputed"
    assert calls[-1] == (2 * L, 2 * L)
    torch.testing.assert_close(resumed.raw, whole.raw, atol=0, rtol=0)
    torch.testing.assert_close(resumed.values, whole.values, atol=0, rtol=0, equal_nan=True)


def test_other_settings_do_not_reuse_checkpoints(small_model, seed_tok, tmp_path):
    a = activation_patching(small_model, seed_tok, "resid_pre", out=tmp_path, normalize=False)
    b = activation_patching(small_model, seed_tok, "resid_pre", out=tmp_path, normalize=False, direction="noise")
    assert not torch.equal(a.raw, b.raw)
    assert len(list((tmp_path / ".patching").iterdir())) == 2
    # Same settings again: everything is read back, nothing recomputed, same numbers.
    c = activation_patching(small_model, seed_tok, "resid_pre", out=tmp_path, normalize=False, engine="hooks")
    assert torch.equal(c.raw, a.raw)


def test_a_torn_checkpoint_file_is_recomputed(small_model, seed_tok, tmp_path):
    a = activation_patching(small_model, seed_tok, "heads", out=tmp_path, normalize=False)
    (part,) = [p for p in (tmp_path / ".patching").rglob("*-l001.safetensors")]
    part.write_bytes(b"not a safetensors file")
    b = activation_patching(small_model, seed_tok, "heads", out=tmp_path, normalize=False)
    assert torch.equal(a.raw, b.raw)
