"""Node-level circuits from edge scores (circuits.node_select): the edge circuit of a node set is the node
circuit, selections rank node scores, the planted nodes are found, and the random baseline draws node sets."""

from __future__ import annotations

import pytest
import torch

import circuitwise as cw
from circuitwise.circuits import Graph, find_circuit, score_edges, select_circuit
from circuitwise.circuits.neurons import NeuronScores, UnitCircuit, top_units, unit_faithfulness, unit_patched_metrics
from circuitwise.circuits.node_select import node_edge_rows, random_node_rows
from circuitwise.circuits.patch import patched_metrics
from circuitwise.circuits.scores import prepare
from circuitwise.errors import ConfigError
from circuitwise.evaluation import evaluate_circuit, faithfulness
from tests.unit.circuits.known_circuit import PLANTED


def _units(g: Graph, d_model: int, names: list[str]) -> UnitCircuit:
    """The node circuit of ``names`` plus the input, on the neuron engine's own path (whole rows kept)."""
    keep = torch.tensor([s.name in names or s.kind == "input" for s in g.senders])
    return UnitCircuit(g, "node", keep[:, None].expand(-1, d_model).clone())


def _node_sums(scores) -> dict[str, float]:
    """Each node's score recomputed edge by edge from the edge names: the sum of its outgoing edges'."""
    out: dict[str, float] = {}
    for name, v in zip(scores.graph.edge_names, scores.scores.tolist(), strict=True):
        sender = name.split("->")[0]
        out[sender] = out.get(sender, 0.0) + v
    return out


def test_a_node_sets_edges_are_those_from_the_input_or_its_nodes_into_its_nodes_or_the_logits():
    g = Graph(2, 2)
    nodes = torch.tensor([s.name in ("L0H0", "L1H1") for s in g.senders])
    ok = {"input", "L0H0", "L1H1"}
    unpruned = {g.edge_names[i] for i in node_edge_rows(g, nodes, prune=False)[0].nonzero().flatten().tolist()}
    assert unpruned == {e for e in g.edge_names if e.split("->")[0] in ok}
    got = {g.edge_names[i] for i in node_edge_rows(g, nodes)[0].nonzero().flatten().tolist()}
    want = {e for e in g.edge_names if e.split("->")[0] in ok and e.split("->")[1].split(".")[0] in ok | {"logits"}}
    assert got == want and "L0H0->L1H1.v" in got and "input->logits" in got
    # A kept node that reaches nothing kept is pruned away; the input alone keeps input->logits.
    lone = torch.tensor([s.name == "L0H1" for s in g.senders])
    assert {g.edge_names[i] for i in node_edge_rows(g, lone)[0].nonzero().flatten().tolist()} == \
        {"input->L0H1.q", "input->L0H1.k", "input->L0H1.v", "L0H1->logits", "input->logits"}
    # Under a post-attention norm the edges into a dropped head of a kept head's layer stay (its live
    # output scales the kept head's write).
    shared = Graph(2, 2, shared_head_norm=True)
    kept = {shared.edge_names[i] for i in node_edge_rows(shared, nodes)[0].nonzero().flatten().tolist()}
    assert {"input->L0H1.v", "L0H0->L1H0.q"} <= kept and not any(e.startswith(("L0H1", "L1H0")) for e in kept)


@pytest.mark.parametrize("family", ["gpt2", "llama", "gemma2"])
def test_a_node_circuit_patches_as_the_unit_circuit_of_its_nodes(family_model_for, family):
    """The edge circuit of the kept nodes, pruned, is the node circuit: its per-prompt metrics equal those of
    the neuron engine's node circuit (top_units of the same nodes and the input), on plain, grouped-query and
    post-norm blocks (gemma2: heads under one post-attention norm)."""
    model = family_model_for(family)
    tok, _ = cw.tokenize_task(model, cw.get_task("opposites-seed").subset((1, 2, 5)), need_corrupted=True)
    scores = score_edges(model, tok, "eap")
    prep = prepare(model, tok)
    g, d = prep.gm.graph, prep.gm.d_model
    ks = (1, 3, len(g.senders) // 2)
    circuits = [select_circuit(scores, "top-n", level="node", n=k) for k in ks]
    # MIB's top_units on node scores equal to the edges' (the input ranked first: a node circuit keeps it).
    node = scores.node_scores().scores
    rows = torch.zeros(len(g.senders), d)
    rows[:, 0] = node
    rows[0, 0] = float(node.abs().max()) + 1
    ns = NeuronScores(graph=g, scores=rows, method="eap")
    units = [top_units(ns, k + 1, "node") for k in ks]
    for c, u in zip(circuits, units, strict=True):
        assert c.selection["level"] == "node" and len(c.selection["nodes"]) == c.selection["n"]
        assert u.node_names() == ["input", *(s.name for s in g.senders if s.name in c.selection["nodes"])]
    by_edges = patched_metrics(prep, torch.stack([c.edges for c in circuits]))
    by_units = unit_patched_metrics(prep, torch.stack([u.neurons for u in units]))
    assert torch.allclose(by_edges.patched, by_units.patched, atol=1e-4)
    assert not torch.allclose(by_edges.patched[0], by_edges.clean, atol=1e-3)  # a real intervention


def test_top_n_ranks_nodes_by_the_sum_of_their_outgoing_edges(tiny_model, tiny_tok):
    scores = score_edges(tiny_model, tiny_tok, "eap")
    sums = {n: v for n, v in _node_sums(scores).items() if n != "input"}
    for by, key in (("abs", abs), ("signed", lambda v: v)):
        want = sorted(sums, key=lambda n: -key(sums[n]))[:4]
        c = select_circuit(scores, "top-n", level="node", n=4, by=by, prune=False)
        assert set(c.selection["nodes"]) == set(want)
        for n in want:
            assert c.selection["node_scores"][n] == pytest.approx(sums[n], rel=1e-4, abs=1e-6)
    t = sorted(abs(v) for v in sums.values())[-5]
    c = select_circuit(scores, "threshold", level="node", threshold=t)
    assert set(c.selection["nodes"]) == {n for n, v in sums.items() if abs(v) >= t} and len(c.selection["nodes"]) == 5


def test_the_planted_nodes_are_found_and_the_target_reached_with_the_fewest(known_model, known_tok):
    planted = sorted({s for s, _ in PLANTED} - {"input"})
    found = find_circuit(known_model, known_tok, method="eap-ig", steps=5, selection="top-n", level="node",
                         n=len(planted))
    assert sorted(found.circuit.selection["nodes"]) == planted == ["L0H0", "L1H0"]
    assert PLANTED <= {(s, r) for s, r, _ in found.circuit.edge_list()}

    c = select_circuit(found.scores, "target", level="node", target=0.9, model=known_model, tok=known_tok)
    sel = c.selection
    assert sel["reached"] and sel["faithfulness"] >= 0.9 and len(sel["nodes"]) == sel["top"]
    # Checked on the neuron engine: the circuit's faithfulness, and no fewer top nodes reaching 0.9.
    g, d = c.graph, int(known_model.cfg.d_model)
    ranked = [n for n, _ in sorted(sel["node_scores"].items(), key=lambda kv: -abs(kv[1]))]
    assert set(ranked) == set(sel["nodes"])
    order = [n for n, _ in found.scores.node_scores().top(len(g.senders))
             if n != "input"]
    smaller = [_units(g, d, order[:k]) for k in range(1, sel["top"])]
    f = unit_faithfulness(known_model, known_tok, [_units(g, d, sel["nodes"]), *smaller])
    assert f[0] == pytest.approx(sel["faithfulness"], abs=1e-5)
    assert f[0] == pytest.approx(faithfulness(known_model, known_tok, c).faithfulness, abs=1e-5)
    assert all(x < 0.9 for x in f[1:])


def test_the_random_baseline_of_a_node_circuit_is_random_node_sets(known_model, known_tok):
    scores = score_edges(known_model, known_tok, "eap")
    c = select_circuit(scores, "top-n", level="node", n=3)
    ev = evaluate_circuit(known_model, known_tok, c, random_samples=6, curve=False, mib=False, seed=3)
    assert ev.random is not None and ev.random.null == "node-set"
    # The same draws (evaluate_circuit's generator draws them first), measured on the neuron engine.
    rows = random_node_rows(c.graph, 3, 6, torch.Generator().manual_seed(3))
    assert (rows.sum(1) == 3).all() and not rows[:, 0].any()
    g, d = c.graph, int(known_model.cfg.d_model)
    names = [[s.name for s, k in zip(g.senders, r.tolist(), strict=True) if k] for r in rows]
    want = unit_faithfulness(known_model, known_tok, [_units(g, d, n) for n in names])
    assert ev.random.random_faithfulness == pytest.approx(want, abs=1e-5)
    assert ev.faithfulness.faithfulness == pytest.approx(
        unit_faithfulness(known_model, known_tok, _units(g, d, c.selection["nodes"]))[0], abs=1e-5)


def test_neuron_level_and_unknown_levels_are_refused_before_scoring(tiny_model, tiny_tok):
    with pytest.raises(ConfigError, match="circuitwise mib --level neuron"):
        find_circuit(tiny_model, tiny_tok, method="exact", level="neuron")
    with pytest.raises(ConfigError, match="Unknown circuit level"):
        select_circuit(score_edges(tiny_model, tiny_tok, "eap"), "top-n", level="head", n=2)
    with pytest.raises(ConfigError, match="number of nodes"):
        select_circuit(score_edges(tiny_model, tiny_tok, "eap"), "top-n", level="node")


def test_edge_stability_reapplies_the_node_rule(tiny_model, tiny_tok, known_model, known_tok):
    from circuitwise.evaluation.bootstrap import Resampling
    from circuitwise.evaluation.stability import edge_stability, reselect

    scores = score_edges(tiny_model, tiny_tok, "eap")
    for kind, opts in (("top-n", {"n": 4}), ("threshold", {"threshold": 0.0})):
        c = select_circuit(scores, kind, level="node", **opts)
        keep, rule = reselect(c, scores.scores[None].double())
        assert torch.equal(keep[0], c.edges) and "nodes" in rule and "edge circuit" in rule
    found = find_circuit(known_model, known_tok, method="eap", selection="top-n", level="node", n=2)
    st = edge_stability(known_model, known_tok, found.circuit, method="eap", options=None,
                        rs=Resampling(100, 0.95, 2), groups=8)
    assert "top 2 nodes" in st.rule and all(f == 1.0 for _, f in st.circuit_edges())
