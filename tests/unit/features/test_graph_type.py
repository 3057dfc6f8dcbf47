"""The AttributionGraph type: shapes and node order are checked, slices and weights are right."""

import pytest
import torch

from circuitwise.errors import ConfigError
from circuitwise.features.graph import AttributionGraph, Node


def _graph(nodes, adj=None):
    n = len(nodes)
    return AttributionGraph(nodes=tuple(nodes), adjacency=torch.zeros(n, n) if adj is None else adj,
                            bias=torch.zeros(n), model="m", n_layers=2, prompts=("a b",), tokens=((1, 2),),
                            token_strs=(("a", " b"),), targets="salient", transcoders={}, dtype="float32")


NODES = [Node("feature", 0, 1, 7, 2.0), Node("error", 0, 1), Node("token", -1, 0, token=1),
         Node("token", -1, 1, token=2), Node("target", 2, 1, token=5, probability=0.6),
         Node("target", 2, 1, token=9, probability=0.2)]


def test_slices_edges_and_target_weights():
    adj = torch.zeros(6, 6)
    adj[4, 0], adj[0, 2] = 1.5, -0.25
    g = _graph(NODES, adj)
    assert (g.features, g.errors, g.token_nodes, g.target_nodes) == (slice(0, 1), slice(1, 2), slice(2, 4), slice(4, 6))
    assert sorted(g.edges()) == [(0, 2, -0.25), (4, 0, 1.5)]
    assert g.edges(min_abs=1.0) == [(4, 0, 1.5)]
    assert torch.allclose(g.target_weights, torch.tensor([0.75, 0.25], dtype=torch.float64))
    assert g.with_(scores={"replacement": 0.5}).scores == {"replacement": 0.5}


def test_bad_shapes_and_order_are_refused():
    with pytest.raises(ConfigError, match=r"\[6, 6\] adjacency"):
        _graph(NODES, torch.zeros(5, 5))
    with pytest.raises(ConfigError, match="ordered features, errors"):
        _graph([NODES[2], NODES[0]])
