"""Flipped bits in a saved checkpoint never reach the results: the part is recomputed, with a warning."""

from __future__ import annotations

import shutil

import pytest
import torch

from circuitwise.patching import activation_patching
from circuitwise.patching.resume import CheckpointWarning


def _parts(folder):
    return sorted((folder / ".patching").rglob("*.safetensors"))


def _flip(path, offset_from_end=5):
    data = bytearray(path.read_bytes())
    data[-offset_from_end] ^= 0x10  # inside the tensor bytes, after the JSON header
    path.write_bytes(bytes(data))


def test_flipped_bits_are_recomputed_never_used(small_model, seed_tok, tmp_path):
    whole = activation_patching(small_model, seed_tok, "heads", out=tmp_path, normalize=False)
    parts = _parts(tmp_path)
    for p in parts:
        _flip(p)
    with pytest.warns(CheckpointWarning, match="checksum"):
        again = activation_patching(small_model, seed_tok, "heads", out=tmp_path, normalize=False)
    torch.testing.assert_close(again.raw, whole.raw, atol=0, rtol=0)
    torch.testing.assert_close(again.clean, whole.clean, atol=0, rtol=0)


def test_a_part_copied_from_another_sweep_is_refused(small_model, seed_tok, tmp_path):
    a = activation_patching(small_model, seed_tok, "heads", out=tmp_path / "a", normalize=False)
    b = activation_patching(small_model, seed_tok, "heads", out=tmp_path / "b", normalize=False, direction="noise")
    (pa,), (pb,) = ([p for p in _parts(tmp_path / x) if p.name.endswith("-l001.safetensors")] for x in "ab")
    shutil.copy(pb, pa)  # same name, same shape, other sweep
    with pytest.warns(CheckpointWarning, match="another sweep"):
        again = activation_patching(small_model, seed_tok, "heads", out=tmp_path / "a", normalize=False)
    torch.testing.assert_close(again.raw, a.raw, atol=0, rtol=0)
    assert not torch.equal(a.raw, b.raw)


def test_a_damaged_header_is_recomputed(small_model, seed_tok, tmp_path):
    whole = activation_patching(small_model, seed_tok, "resid_pre", out=tmp_path, normalize=False)
    part = _parts(tmp_path)[0]
    data = bytearray(part.read_bytes())
    data[10] ^= 0xFF
    part.write_bytes(bytes(data))
    with pytest.warns(CheckpointWarning):
        again = activation_patching(small_model, seed_tok, "resid_pre", out=tmp_path, normalize=False)
    torch.testing.assert_close(again.raw, whole.raw, atol=0, rtol=0)
