"""The graph: node layout, edge counts, adjacency, names."""

from __future__ import annotations

import pytest
import torch

from circuitwise.circuits import Graph, graph_of
from circuitwise.errors import ConfigError


def test_gpt2_small_has_32491_edges():
    # The count the EAP literature gives for GPT-2 small (q/k/v separate, MLPs, logits).
    assert Graph(12, 12).n_edges == 32491


def test_tiny_model_graph(tiny_model):
    g = graph_of(tiny_model)
    assert (g.n_layers, g.n_heads, g.has_mlp) == (2, 4, True)
    assert [s.name for s in g.senders][:6] == ["input", "L0H0", "L0H1", "L0H2", "L0H3", "MLP0"]
    assert g.receivers[-1].name == "logits"
    assert g.n_edges == 110
    assert len(set(g.edge_names)) == g.n_edges


def test_a_sender_feeds_only_later_receivers():
    g = Graph(3, 2)
    for s, r in zip(*g.edge_index):
        snd, rec = g.senders[int(s)], g.receivers[int(r)]
        if snd.kind == "input":
            continue
        if rec.kind == "mlp" and snd.kind == "head":
            assert snd.layer <= rec.layer
        else:
            assert snd.layer < rec.layer
    assert g.adjacency[:, g.logits_receiver].all()
    assert g.adjacency[0].all()  # the input feeds everything


def test_parallel_attention_mlp_reads_no_same_layer_head():
    g = Graph(2, 2, parallel_attn_mlp=True)
    assert not g.adjacency[g.head_senders(1), g.mlp_receiver(1)].any()
    assert Graph(2, 2).adjacency[Graph(2, 2).head_senders(1), Graph(2, 2).mlp_receiver(1)].all()


def test_dense_round_trip():
    g = Graph(2, 3)
    v = torch.arange(g.n_edges, dtype=torch.float32)
    d = g.to_dense(v, fill=float("nan"))
    assert torch.equal(g.from_dense(d), v)
    assert d.isnan().sum() == (~g.adjacency).sum()


def test_edge_id_rejects_non_edges_with_the_fix():
    g = Graph(2, 2)
    assert g.edge_names[g.edge_id("L0H1", "L1H0.q")] == "L0H1->L1H0.q"
    with pytest.raises(ConfigError, match="not an edge"):
        g.edge_id("L1H0", "L0H0.q")  # backwards
    with pytest.raises(ConfigError, match="another model"):
        g.edge_id("L7H0", "logits")


def test_tl_node_fields():
    g = Graph(2, 2)
    assert g.senders[1].tl_node() == {"kind": "attn_head_out", "layer": 0, "head": 0}
    assert g.receivers[g.logits_receiver].tl_node(2) == {"kind": "logits", "layer": 1, "head": None}
