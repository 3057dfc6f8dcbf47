"""Node- and neuron-level scores and circuits (circuits.neurons): identities, end points, ground truth, files."""

from __future__ import annotations

import json

import pytest
import torch

from circuitwise.circuits import score_edges
from circuitwise.circuits.forward import run_graph
from circuitwise.circuits.interop import load_eap_ig_units
from circuitwise.circuits.neurons import (
    NeuronScores,
    UnitCircuit,
    score_neurons,
    top_units,
    unit_faithfulness,
    unit_patched_metrics,
    write_unit_graph,
)
from circuitwise.circuits.patch import patched_metrics
from circuitwise.circuits.scores import prepare
from circuitwise.errors import ConfigError
from circuitwise.metrics import targets_of


@pytest.mark.parametrize("method,opts", [("eap", {}), ("eap-ig", {"steps": 3, "quadrature": "right"})])
def test_neurons_sum_to_the_node_score_which_is_the_sum_of_its_outgoing_edges(tiny_model, tiny_tok, method, opts):
    """A node's score is the sum of its neurons'; scored at its output it is also the sum of its outgoing
    edges' scores, since a sender enters every later receiver's input additively (∂m/∂out = Σ_r ∂m/∂in_r)."""
    neurons = score_neurons(tiny_model, tiny_tok, method=method, **opts)
    edges = score_edges(tiny_model, tiny_tok, method, **opts)
    from_neurons = neurons.scores.double().sum(1)
    assert torch.allclose(neurons.node_scores().scores.double(), from_neurons, atol=1e-6)
    from_edges = edges.node_scores().scores.double()
    scale = float(from_edges.abs().max())
    assert scale > 0
    assert (from_neurons - from_edges).abs().max() <= 1e-5 * scale
    assert neurons.clean_metric == pytest.approx(edges.clean_metric, rel=1e-5)
    assert neurons.corrupted_metric == pytest.approx(edges.corrupted_metric, rel=1e-5)


def test_the_reference_mlp_gradient_changes_only_the_mlp_rows(tiny_model, tiny_tok):
    out = score_neurons(tiny_model, tiny_tok, method="eap")
    ref = score_neurons(tiny_model, tiny_tok, method="eap", mlp_gradient="input")
    mlp = torch.tensor([s.kind == "mlp" for s in out.graph.senders])
    assert torch.equal(out.scores[~mlp], ref.scores[~mlp])
    assert not torch.allclose(out.scores[mlp], ref.scores[mlp])


def test_every_neuron_kept_is_the_clean_run_and_none_the_corrupted(tiny_model, tiny_tok):
    prep = prepare(tiny_model, tiny_tok)
    S, d = len(prep.gm.graph.senders), prep.gm.d_model
    pm = unit_patched_metrics(prep, torch.stack([torch.ones(S, d, dtype=torch.bool),
                                                 torch.zeros(S, d, dtype=torch.bool)]))
    assert torch.allclose(pm.patched[0], pm.clean, atol=1e-5)
    assert torch.allclose(pm.patched[1], pm.corrupted, atol=1e-5)
    assert not torch.allclose(pm.clean, pm.corrupted, atol=1e-3)


def test_a_node_circuit_is_edge_patching_with_every_edge_out_of_its_nodes(tiny_model, tiny_tok):
    """Independent of the dims path: the edge engine, keeping exactly the edges out of the kept nodes."""
    prep = prepare(tiny_model, tiny_tok)
    g = prep.gm.graph
    gen = torch.Generator().manual_seed(0)
    nodes = torch.rand(3, len(g.senders), generator=gen) < 0.5
    s_idx, _ = g.edge_index
    by_edges = patched_metrics(prep, nodes[:, s_idx])
    by_units = unit_patched_metrics(prep, nodes[:, :, None].expand(-1, -1, prep.gm.d_model))
    assert torch.allclose(by_units.patched, by_edges.patched, atol=1e-5)


def test_corrupting_some_input_dimensions_is_running_on_the_mixed_embedding(tiny_model, tiny_tok):
    """A neuron circuit that keeps every dimension but some of the input's: what every reader sees is the
    clean embedding with those dimensions from the corrupted one, so it is the unpatched run on that."""
    prep = prepare(tiny_model, tiny_tok)
    gm, tok = prep.gm, prep.tok
    S, d = len(gm.graph.senders), gm.d_model
    gen = torch.Generator().manual_seed(1)
    cut = torch.rand(d, generator=gen) < 0.5
    keep = torch.ones(S, d, dtype=torch.bool)
    keep[0, cut] = False
    pm = unit_patched_metrics(prep, keep)
    mixed = torch.where(cut, gm.embed(tok.corrupted), gm.embed(tok.clean))
    want = prep.metric(run_graph(gm, mixed, tok.last, targets_of(tok)).answer_logits[0]).float()
    assert torch.allclose(pm.patched[0], want, atol=1e-5)
    assert not torch.allclose(pm.patched[0], pm.clean, atol=1e-4)


def test_top_units_take_the_strongest_neurons_or_nodes(tiny_model, tiny_tok):
    ns = score_neurons(tiny_model, tiny_tok, method="eap")
    c = top_units(ns, 10)
    assert c.n_units == 10
    kept = ns.scores[c.neurons].abs()
    assert float(kept.min()) >= float(ns.scores[~c.neurons].abs().max())
    signed = top_units(ns, 10, by="signed")
    assert float(ns.scores[signed.neurons].min()) >= float(ns.scores[~signed.neurons].max())
    nodes = top_units(ns, 2, "node")
    assert nodes.n_units == 2 and bool(nodes.neurons[nodes.nodes].all())
    assert set(nodes.node_names()) == {n for n, _ in ns.node_scores().top(2)}
    with pytest.raises(ConfigError, match="between 0 and"):
        top_units(ns, ns.scores.numel() + 1)
    with pytest.raises(ConfigError, match="level"):
        top_units(ns, 1, "edge")  # type: ignore[arg-type]


def test_unknown_options_are_refused_before_any_work(tiny_model, tiny_tok):
    with pytest.raises(ConfigError, match="no option 'step'"):
        score_neurons(tiny_model, tiny_tok, step=3)
    with pytest.raises(ConfigError, match="mlp_gradient"):
        score_neurons(tiny_model, tiny_tok, mlp_gradient="middle")


@pytest.mark.parametrize("method", ["eap", "eap-ig"])
def test_the_planted_neurons_are_found(known_model, known_tok, method):
    """known_circuit.py: the letter lives in the input's dims 0–7, L0H0 copies it to 32–39, L1H0 to 40–47."""
    ns = score_neurons(known_model, known_tok, method=method)
    planted = torch.zeros_like(ns.scores, dtype=torch.bool)
    names = ns.names
    planted[names.index("input"), 0:8] = True
    planted[names.index("L0H0"), 32:40] = True
    planted[names.index("L1H0"), 40:48] = True
    top = top_units(ns, 12)
    assert bool(planted[top.neurons].all())
    nodes = top_units(ns, 3, "node")
    assert set(nodes.node_names()) == {"input", "L0H0", "L1H0"}
    f_planted, f_nodes, f_all, f_none = unit_faithfulness(
        known_model, known_tok, [UnitCircuit(ns.graph, "neuron", planted), nodes,
                                 top_units(ns, ns.scores.numel()), top_units(ns, 0)])
    assert f_planted >= 0.99 and f_nodes >= 0.99
    assert f_all == pytest.approx(1.0, abs=1e-5) and f_none == pytest.approx(0.0, abs=1e-5)


@pytest.mark.parametrize("suffix", [".json", ".pt"])
def test_graph_files_round_trip(tiny_model, tiny_tok, tmp_path, suffix):
    ns = score_neurons(tiny_model, tiny_tok, method="eap")
    c = top_units(ns, 7)
    back = load_eap_ig_units(write_unit_graph(tmp_path / f"n{suffix}", ns, circuit=c))
    assert back.neuron_scores is not None and back.neurons is not None
    assert torch.equal(back.neuron_scores, ns.scores.float())
    assert torch.equal(back.neurons, c.neurons) and torch.equal(back.nodes, c.nodes)
    assert back.cfg["d_model"] == ns.d_model
    node = load_eap_ig_units(write_unit_graph(tmp_path / f"m{suffix}", ns, level="node",
                                              circuit=top_units(ns, 2, "node")))
    assert node.node_scores is not None and node.neuron_scores is None
    assert torch.allclose(node.node_scores, ns.node_scores().scores, atol=0)
    assert int(node.nodes.sum()) == 2


def test_a_neuron_graph_json_is_eap_igs_layout(tiny_model, tiny_tok, tmp_path):
    """What EAP-IG's Graph.from_json reads: a node's "neurons" and "neurons_scores" are d_model long, the
    logits carry no score, every edge has a score and in_graph (bench/neuron_parity.py loads it in EAP-IG)."""
    ns = score_neurons(tiny_model, tiny_tok, method="eap")
    data = json.loads(write_unit_graph(tmp_path / "g.json", ns, circuit=top_units(ns, 5)).read_text())
    assert data["nodes"]["logits"] == {"in_graph": True}
    entry = data["nodes"]["a0.h0"]
    assert len(entry["neurons"]) == len(entry["neurons_scores"]) == ns.d_model
    assert all(set(e) == {"score", "in_graph"} for e in data["edges"].values())
    bad = dict(data, nodes={**data["nodes"], "a0.h0": {**entry, "neurons": [True]}})
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    with pytest.raises(ConfigError, match="d_model"):
        load_eap_ig_units(tmp_path / "bad.json")


def test_neuron_scores_refuse_a_wrong_shape(tiny_model, tiny_tok):
    ns = score_neurons(tiny_model, tiny_tok, method="eap")
    with pytest.raises(ValueError, match="senders"):
        NeuronScores(ns.graph, ns.scores[1:], "eap")


@pytest.mark.parametrize("suffix", [".json", ".pt"])
def test_evaluate_reads_a_node_graph_as_its_edges_unscored_and_refuses_a_neuron_graph(tiny_model, tiny_tok, tmp_path,
                                                                                        suffix):
    from circuitwise.circuits.interop import circuit_from_eap_ig, read_graph_file

    ns = score_neurons(tiny_model, tiny_tok, method="eap")
    nodes = top_units(ns, 3, "node")
    kind, graph = read_graph_file(write_unit_graph(tmp_path / f"node{suffix}", ns, level="node", circuit=nodes))
    assert kind == "eap-ig" and bool(graph.scores.isnan().all())  # EAP-IG's unset edge scores are no ranking
    circ = circuit_from_eap_ig(graph, tiny_model)
    prep = prepare(tiny_model, tiny_tok)
    by_edges = patched_metrics(prep, circ.edges)
    by_units = unit_patched_metrics(prep, nodes.neurons)
    assert torch.allclose(by_edges.patched, by_units.patched, atol=1e-5)  # the file's edges are its node circuit
    with pytest.raises(ConfigError, match="neuron-level"):
        read_graph_file(write_unit_graph(tmp_path / f"neuron{suffix}", ns, circuit=top_units(ns, 9)))


@pytest.mark.parametrize("family", ["llama", "pythia", "gemma2"])
def test_the_identities_hold_on_grouped_parallel_and_post_norm_blocks(family_model_for, family):
    """Grouped-query attention (llama), parallel attention + MLP (pythia), post-norms and soft-caps (gemma2):
    neurons sum to the node's outgoing edges, every neuron kept is the clean run and none the corrupted, and a
    node circuit is the edge circuit of its nodes' outgoing edges."""
    import circuitwise as cw

    model = family_model_for(family)
    tok, _ = cw.tokenize_task(model, cw.get_task("opposites-seed").subset((1, 2, 5)), need_corrupted=True)
    ns = score_neurons(model, tok, method="eap")
    by_edges = score_edges(model, tok, "eap").node_scores().scores.double()
    assert (ns.scores.double().sum(1) - by_edges).abs().max() <= 1e-4 * float(by_edges.abs().max())
    prep = prepare(model, tok)
    S, d = ns.scores.shape
    nodes = top_units(ns, S // 2, "node")
    pm = unit_patched_metrics(prep, torch.stack([torch.ones(S, d, dtype=torch.bool),
                                                 torch.zeros(S, d, dtype=torch.bool), nodes.neurons]))
    assert torch.allclose(pm.patched[0], pm.clean, atol=1e-4)
    assert torch.allclose(pm.patched[1], pm.corrupted, atol=1e-4)
    # The edge forward itself, unpruned (patched_metrics prunes dangling edges; a post-norm's coupled heads
    # count as one node there, tested in test_families).
    g, gm = prep.gm.graph, prep.gm
    s_idx, _ = g.edge_index
    keep = g.to_dense(nodes.nodes[s_idx].to(gm.dtype), fill=1.0)[None]
    rep = run_graph(gm, gm.embed(tok.corrupted), tok.last, targets_of(tok), record=True).outputs
    want = prep.metric(run_graph(gm, gm.embed(tok.clean), tok.last, targets_of(tok), keep=keep,
                                 replacement=rep).answer_logits)[0]
    assert torch.allclose(pm.patched[2], want.float(), atol=1e-4)
