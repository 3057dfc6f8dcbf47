"""The engine's AttributionGraph into graph.json and Neuronpedia's JSON: every node once with its id,
every non-zero entry of the adjacency as a link from its sender (column) to its receiver (row)."""

from __future__ import annotations

import pytest
import torch

from circuitwise.features.export import graph_file, to_neuronpedia
from circuitwise.features.graph import AttributionGraph, Node
from circuitwise.schema.graph import Context, GraphFile

NODES = (Node("feature", 0, 1, 7, 2.0), Node("feature", 1, 2, 7, 0.5), Node("error", 0, 1, value=0.3),
         Node("token", -1, 0, token=11, value=1.0), Node("token", -1, 1, token=12), Node("token", -1, 2, token=13),
         Node("target", 2, 2, token=5, value=4.0, label="logit ' young'", probability=0.6),
         Node("target", 2, 2, token=9, label="logit ' old'", probability=0.2))


def _graph(**changes):
    n = len(NODES)
    adj = torch.zeros(n, n)
    adj[0, 3], adj[0, 4], adj[1, 0], adj[1, 2], adj[6, 1], adj[7, 0] = 0.5, 1.5, 2.0, -0.25, 3.0, -1.0
    g = AttributionGraph(nodes=NODES, adjacency=adj, bias=torch.zeros(n), model="tiny", n_layers=2,
                         prompts=("a b c",), tokens=((11, 12, 13),), token_strs=(("a", " b", " c"),),
                         targets="salient",
                         transcoders={"cross_layer": False, "activation": "relu", "n_features": [16, 16],
                                      "k": None, "site": "mlp_in", "meta": {}},
                         dtype="float32", influence=torch.tensor([0.5, 0.4, 0.1, 0.0, 0.2, 0.0, 0.0, 0.0]),
                         scores={"replacement": 0.75, "completeness": 0.9})
    return g.with_(**changes) if changes else g


def test_every_node_and_link_with_circuit_tracers_ids():
    ctx = [Context(source="task", tokens=["a", " b", " c"], pos=1, activation=2.0, index=0)]
    f = graph_file(_graph(), transcoders="bundled", node_threshold=0.8, edge_threshold=0.98, contexts={(0, 7): ctx})
    assert [n.id for n in f.nodes] == ["0_7_1", "1_7_2", "0_-1_1", "E_11_0", "E_12_1", "E_13_2", "3_5_2", "3_9_2"]
    assert [n.kind for n in f.nodes] == ["feature"] * 2 + ["error"] + ["embedding"] * 3 + ["logit"] * 2
    # adjacency[receiver, sender]: a link goes from the sender to the receiver, with that weight.
    assert sorted((e.source, e.target, e.weight) for e in f.edges) == sorted([
        ("E_11_0", "0_7_1", 0.5), ("E_12_1", "0_7_1", 1.5), ("0_7_1", "1_7_2", 2.0), ("0_-1_1", "1_7_2", -0.25),
        ("1_7_2", "3_5_2", 3.0), ("0_7_1", "3_9_2", -1.0)])
    young = f.node("3_5_2")
    assert young.token == " young" and young.prob == 0.6 and young.target and not f.node("3_9_2").target
    assert f.node("0_7_1").activation == 2.0 and f.node("0_7_1").contexts == ctx and f.node("1_7_2").contexts == []
    assert f.node("0_7_1").influence == 0.5 and f.node("E_12_1").token == " b"
    assert f.scores is not None and f.scores.replacement == 0.75 and f.scores.completeness == 0.9
    assert f.transcoders.kind == "per-layer" and f.transcoders.n_features == [16, 16]
    assert f.transcoders.model_extra == {"site": "mlp_in"}
    assert f.target.description == "the logits of ' young', ' old'"
    assert GraphFile.model_validate_json(f.dump_text()) == f


def test_neuronpedia_takes_the_engines_graph_directly():
    data = to_neuronpedia(_graph())
    assert {n["node_id"] for n in data["nodes"]} == {n.id for n in graph_file(_graph()).nodes}
    assert len(data["links"]) == 6 and data["metadata"]["prompt_tokens"] == ["a", " b", " c"]
    assert [n["activation"] for n in data["nodes"] if "activation" in n] == [2.0, 0.5]  # features only


def test_a_task_graph_is_laid_out_from_its_read_out_position():
    nodes = (Node("feature", 0, -1, 3, 1.0), Node("token", -1, -2, token=4), Node("token", -1, 0, token=6),
             Node("target", 2, 0, token=-1, label="logit(' young') - logit(' old')"))
    adj = torch.zeros(4, 4)
    adj[0, 1], adj[3, 0] = 1.0, 2.0
    g = AttributionGraph(nodes=nodes, adjacency=adj, bias=torch.zeros(4), model="tiny", n_layers=2,
                         prompts=("x y", "p q r"), tokens=((1, 2), (4, 5, 6)),
                         token_strs=(("x", " y"), ("p", " q", " r")),
                         targets="metric", transcoders={}, dtype="float32", positions="relative")
    f = graph_file(g)
    # The longest prompt ends at the read-out position (relative 0 is its last token).
    assert f.tokens == ["p", " q", " r"] and [n.pos for n in f.nodes] == [1, 0, 2, 2]
    assert [n.id for n in f.nodes] == ["0_3_1", "E_4_0", "E_6_2", "3_-1_2"]
    assert f.nodes[3].token == "metric" and f.nodes[3].label.startswith("logit(")
    assert f.target.mode == "metric" and "relative" in f.notes[0]
    to_neuronpedia(f)


def test_a_role_aligned_task_graph_has_a_column_per_role_label():
    # Two nodes at the same offset from the answer but under different roles stay two nodes (two columns).
    nodes = (Node("feature", 0, -3, 3, 1.0), Node("feature", 0, -3, 3, 0.5), Node("token", -1, -3),
             Node("token", -1, -3), Node("target", 2, 0, token=-1, label="metric (correct − incorrect)"))
    adj = torch.zeros(5, 5)
    adj[0, 2], adj[1, 3], adj[4, 0], adj[4, 1] = 1.0, 0.5, 2.0, -1.0
    g = AttributionGraph(nodes=nodes, adjacency=adj, bias=torch.zeros(5), model="tiny", n_layers=2,
                         prompts=("x y z w", "p q r s"), tokens=((1, 2, 3, 4), (5, 6, 7, 8)),
                         token_strs=(("x", " y", " z", " w"), ("p", " q", " r", " s")), targets="metric",
                         transcoders={}, dtype="float32", positions="relative",
                         meta={"position_labels": ["ADJ+1", "N1", "ADJ+1", "N1", "0"], "align": "role"})
    f = graph_file(g)
    assert f.tokens == ["ADJ+1", "N1", "0"] and f.token_ids == [-1, -1, -1]
    assert [n.id for n in f.nodes] == ["0_3_0", "0_3_1", "E_-1_0", "E_-1_1", "3_-1_2"]
    assert "aligned by role" in f.notes[0]
    to_neuronpedia(f)


def test_role_labels_of_another_length_are_refused():
    import pytest

    from circuitwise.errors import ConfigError

    g = _graph().with_(positions="relative", meta={"position_labels": ["ADJ", "N1"]})
    with pytest.raises(ConfigError, match="has 2 labels for its 8 nodes"):
        graph_file(g)


def test_every_logit_clerp_carries_its_share_as_neuronpedias_viewer_reads_it():
    # Neuronpedia's viewer takes a logit's share from "(p=…)" in its clerp and weighs logits by token_prob.
    nodes = (Node("feature", 0, 1, 3, 1.0), Node("token", -1, 0, token=4), Node("token", -1, 1, token=6),
             Node("target", 2, 1, token=-1, label="logit(' young') - logit(' old')"))
    adj = torch.zeros(4, 4)
    adj[0, 1], adj[3, 0] = 1.0, 2.0
    g = AttributionGraph(nodes=nodes, adjacency=adj, bias=torch.zeros(4), model="tiny", n_layers=2,
                         prompts=("x y",), tokens=((4, 6),), token_strs=(("x", " y"),), targets="metric",
                         transcoders={}, dtype="float32")
    data = to_neuronpedia(g)
    (metric,) = [n for n in data["nodes"] if n["feature_type"] == "logit"]
    assert metric["clerp"] == """Output "logit(' young') - logit(' old')" (p=1.000)""" and metric["token_prob"] == 1.0
    for n in to_neuronpedia(_graph())["nodes"]:
        if n["feature_type"] == "logit":
            assert float(n["clerp"].split("(p=")[1].split(")")[0]) == pytest.approx(n["token_prob"], abs=5e-4)
    from circuitwise.features.export import from_neuronpedia

    back = from_neuronpedia(data)
    (m,) = [n for n in back.nodes if n.kind == "logit"]
    assert m.token == "metric" and m.label == "logit(' young') - logit(' old')" and m.id == "3_-1_1"
