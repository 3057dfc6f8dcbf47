"""Influence pruning and the graph scores: the series equals the matrix inverse, a known chain is kept,
scores are 1 without error nodes and 0 when only errors carry the answer."""

import pytest
import torch

from circuitwise.errors import ConfigError
from circuitwise.features.attribute import LogitDiff, attribution_graph
from circuitwise.features.graph import AttributionGraph, Node
from circuitwise.features.prune import graph_scores, node_influence, normalize, prune_graph, prune_masks
from tests.unit.features.random_transcoders import random_set


def _graph(nodes, adj):
    n = len(nodes)
    return AttributionGraph(nodes=tuple(nodes), adjacency=adj, bias=torch.zeros(n), model="m", n_layers=2,
                            prompts=("",), tokens=((0, 1),), token_strs=(("a", "b"),), targets="metric",
                            transcoders={}, dtype="float32")


# features f0 (L0), f1 (L0), f2 (L1); errors e0 (L0), e1 (L1) at one position; tokens t0, t1; target y.
NODES = [Node("feature", 0, 1, 0, 1.0), Node("feature", 0, 1, 1, 1.0), Node("feature", 1, 1, 2, 1.0),
         Node("error", 0, 1), Node("error", 1, 1), Node("token", -1, 0), Node("token", -1, 1), Node("target", 2, 1)]


def _chain(weak=0.01, err=0.0):
    a = torch.zeros(8, 8)
    a[0, 6] = 2.0       # t1 -> f0
    a[2, 0] = 3.0       # f0 -> f2
    a[7, 2] = 4.0       # f2 -> y
    a[1, 5] = 1.0       # t0 -> f1 (weak branch)
    a[7, 1] = weak      # f1 -> y
    a[7, 4] = err       # e1 -> y
    return _graph(NODES, a)


def test_influence_is_the_neumann_series():
    g = _chain(weak=0.5, err=1.0)
    a = normalize(g.adjacency)
    w = torch.zeros(8, dtype=torch.float64)
    w[7] = 1
    expect = w @ (torch.linalg.inv(torch.eye(8, dtype=torch.float64) - a) - torch.eye(8, dtype=torch.float64))
    assert torch.allclose(node_influence(g), expect)


def test_the_chain_is_kept_and_the_weak_branch_dropped():
    p = prune_graph(_chain(), node_threshold=0.9, edge_threshold=0.98)
    kept = {(n.kind, n.feature) for n in p.nodes if n.kind == "feature"}
    assert kept == {("feature", 0), ("feature", 2)}
    assert sum(1 for n in p.nodes if n.kind in ("token", "target")) == 3  # always kept
    assert p.scores["replacement"] == pytest.approx(1.0) and p.scores["completeness"] == pytest.approx(1.0)
    assert p.influence is not None and len(p.influence) == p.n_nodes


def test_scores_count_what_errors_carry():
    only_error = torch.zeros(8, 8)
    only_error[7, 4] = 1.0
    rep, comp = graph_scores(_graph(NODES, only_error))
    # The target's inputs are all error (0); the error node has no inputs and counts as whole (1), each
    # weighted by its influence + target weight (1 and 1): circuit-tracer's definition.
    assert rep == 0.0 and comp == pytest.approx(0.5)
    half = _chain(weak=0.0, err=4.0)  # y: half from f2, half from the error
    rep, comp = graph_scores(half)
    assert rep == pytest.approx(0.5) and 0 < comp < 1


def test_thresholds_are_checked_and_everything_kept_at_one(tiny_model):
    with pytest.raises(ConfigError, match="between 0 and 1"):
        prune_masks(_chain(), node_threshold=1.5)
    g = attribution_graph(tiny_model, random_set(tiny_model, "jumprelu"), "A tortoise is old, but a kitten is",
                          targets=LogitDiff(" young", " old"))
    keep, edges, inf = prune_masks(g, 1.0, 1.0)
    # At 1.0, only nodes of no influence (nothing reaches the target through them) can go.
    assert bool((inf[~keep] == 0).all())
    small = prune_graph(g, 0.5, 0.9)
    assert small.n_nodes < g.n_nodes
    kept_inf = small.influence[: small.features.stop]
    assert float(kept_inf.min()) >= 0
    assert 0 <= small.scores["replacement"] <= 1 and 0 <= small.scores["completeness"] <= 1
