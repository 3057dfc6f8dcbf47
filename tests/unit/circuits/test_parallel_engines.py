"""The engines' independent pieces on two worker threads (models.parallel) give one thread's numbers."""

from __future__ import annotations

import pytest
import torch

import circuitwise.models.parallel as parallel
from circuitwise.circuits import eap_ig
from circuitwise.circuits.patch import patched_metrics
from circuitwise.circuits.scores import prepare


def test_patched_metrics_and_eap_ig_on_two_workers_equal_one(tiny_model, tiny_tok, monkeypatch):
    prep = prepare(tiny_model, tiny_tok, batch_size=2)
    g = prep.gm.graph
    gen = torch.Generator().manual_seed(0)
    masks = torch.rand(9, g.n_edges, generator=gen) > 0.3
    prep.gm.memo.clear()
    one = patched_metrics(prep, masks)
    s1 = eap_ig(tiny_model, tiny_tok, steps=3, batch_size=2)
    monkeypatch.setattr(parallel, "WORKERS", 2)
    prep.gm.memo.clear()
    two = patched_metrics(prep, masks)
    s2 = eap_ig(tiny_model, tiny_tok, steps=3, batch_size=2)
    torch.testing.assert_close(two.patched, one.patched, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(s2.scores, s1.scores, atol=1e-6, rtol=1e-5)
    assert s2.clean_metric == pytest.approx(s1.clean_metric, rel=1e-6)


@pytest.mark.parametrize("what", ["resid_pre", "heads", "heads_by_pos"])
def test_patching_sweeps_on_two_workers_equal_one(tiny_model, seed_task, what, monkeypatch, tmp_path):
    from circuitwise.patching import activation_patching

    calls: list[int] = []
    one = activation_patching(tiny_model, seed_task, what, engine="cone")
    monkeypatch.setattr(parallel, "WORKERS", 2)
    two = activation_patching(tiny_model, seed_task, what, engine="cone", out=tmp_path,
                              progress=lambda done, total: calls.append(done))
    torch.testing.assert_close(two.values, one.values, atol=1e-6, rtol=1e-6)
    assert calls == sorted(calls) and calls[-1] == tiny_model.cfg.n_layers  # one batch, every layer saved
    again = activation_patching(tiny_model, seed_task, what, engine="cone", out=tmp_path)  # from the checkpoints
    torch.testing.assert_close(again.values, two.values, atol=0, rtol=0)
