"""ACDC: its batched, cumulative trials make exactly the decisions of plain one-edge-at-a-time ACDC,
and it finds the planted circuit."""

from __future__ import annotations

import pytest
import torch

from circuitwise.circuits import score_edges
from circuitwise.circuits.acdc import ACDCOptions, acdc_circuit, receiver_order
from circuitwise.circuits.graph import graph_of
from circuitwise.circuits.patch import patched_metrics
from circuitwise.circuits.scores import prepare
from circuitwise.errors import ConfigError
from circuitwise.metrics import get_metric
from tests.unit.circuits.known_circuit import PLANTED


def sequential_acdc(model, tok, threshold, objective="kl", metric="logit_diff"):
    """ACDC as its paper states it: one edge, one patched run of every prompt, one decision."""
    m = get_metric("kl" if objective == "kl" else metric)
    sign = -1.0 if m.higher_is_clean else 1.0
    prep = prepare(model, tok, m.name)
    g = prep.gm.graph
    s_idx, r_idx = g.edge_index

    def loss(keep):
        return sign * float(patched_metrics(prep, keep[None]).patched.double().mean())

    pm = patched_metrics(prep, torch.ones(1, g.n_edges, dtype=torch.bool))
    gap = sign * float(pm.corrupted.double().mean() - pm.clean.double().mean())
    tau = threshold * gap
    keep = torch.ones(g.n_edges, dtype=torch.bool)
    scores = torch.zeros(g.n_edges)
    current = loss(keep)
    for r in receiver_order(g):
        rec = g.receivers[r]
        node = None if rec.kind == "logits" else (
            g.mlp_sender(rec.layer) if rec.kind == "mlp" else g.head_senders(rec.layer).start + rec.head)
        incoming = (r_idx == r).nonzero().flatten()
        if node is not None and not keep[s_idx == node].any():
            keep[incoming] = False
            continue
        for e in sorted(incoming.tolist(), key=lambda e: -int(s_idx[e])):
            keep[e] = False
            trial = loss(keep)
            scores[e] = trial - current
            if trial - current < tau:
                current = trial
            else:
                keep[e] = True
    return keep, scores


@pytest.mark.parametrize("objective,threshold", [("kl", 0.01), ("metric", 0.02)])
def test_batched_trials_make_the_sequential_decisions(tiny_model, tiny_tok, objective, threshold):
    s = score_edges(tiny_model, tiny_tok, "acdc", objective=objective, threshold=threshold)
    keep, scores = sequential_acdc(tiny_model, tiny_tok, threshold, objective)
    assert torch.equal(acdc_circuit(s), keep)
    torch.testing.assert_close(s.scores, scores, atol=1e-6, rtol=1e-5)
    assert 0 < int(keep.sum()) < keep.numel()  # a real test: some edges kept, some removed
    # Batched: one stacked call per kept edge or receiver visited (its in-degree is below SPECULATE),
    # not one per edge tried.
    assert s.config["stacked_calls"] <= int(keep.sum()) + len(s.graph.receivers) + 1 < s.config["n_tried"]


def test_acdc_finds_the_planted_circuit(known_model, known_tok):
    s = score_edges(known_model, known_tok, "acdc", objective="metric", threshold=0.05)
    g = s.graph
    kept = {tuple(g.edge_names[i].split("->")) for i in acdc_circuit(s).nonzero().flatten().tolist()}
    assert kept == PLANTED
    # With ACDC's own KL the planted edges lead the ranking too.
    kl = score_edges(known_model, known_tok, "acdc")
    assert {tuple(n.split("->")) for n, _ in kl.top(3)} == PLANTED


def test_threshold_ends_keep_every_helpful_edge_or_none(tiny_model, tiny_tok):
    none = score_edges(tiny_model, tiny_tok, "acdc", threshold=1e9)
    assert int(acdc_circuit(none).sum()) == 0
    everything = score_edges(tiny_model, tiny_tok, "acdc", objective="metric", threshold=-0.0)
    # At threshold 0 an edge goes only if removing it does not raise the loss at all.
    kept = acdc_circuit(everything)
    assert bool((everything.scores[kept] >= 0).all())


def test_receivers_are_visited_from_the_logits_back(tiny_model):
    g = graph_of(tiny_model)
    order = receiver_order(g)
    assert sorted(order) == list(range(len(g.receivers))) and order[0] == g.logits_receiver
    layers = [g.receivers[r].layer for r in order]
    assert layers == sorted(layers, reverse=True)


@pytest.mark.parametrize("bad", [dict(threshold=-1), dict(threshold="a"), dict(objective="loss"),
                                 dict(relative="yes")])
def test_bad_options_name_what_is_valid(bad):
    with pytest.raises(ConfigError, match="acdc"):
        ACDCOptions(**bad)
