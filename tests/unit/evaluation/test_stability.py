"""Edge stability: group scores add up to the task's score, one prompt a group is the per-prompt
bootstrap, and the planted circuit's edges are chosen in every resample."""

from __future__ import annotations

import pytest
import torch

from circuitwise.circuits import eap_ig, find_circuit, score_edges, select_circuit
from circuitwise.errors import ConfigError
from circuitwise.evaluation.bootstrap import Resampling, resample_indices
from circuitwise.evaluation.stability import edge_stability, group_scores, reselect
from tests.unit.circuits.known_circuit import PLANTED

RS = Resampling(300, 0.95, 2)


@pytest.mark.parametrize("method", ["eap-ig", "eap"])
def test_group_scores_average_to_the_tasks_scores(tiny_model, tiny_tok, method):
    full = score_edges(tiny_model, tiny_tok, method).scores.double()
    S, sizes = group_scores(tiny_model, tiny_tok, method, None, 4)
    assert S.shape == (4, full.numel()) and sizes.sum() == len(tiny_tok)
    mixed = (S.double() * sizes[:, None]).sum(0) / sizes.sum()
    torch.testing.assert_close(mixed, full, atol=1e-5 * float(full.abs().max()), rtol=0)


def test_one_prompt_a_group_is_the_per_prompt_bootstrap(tiny_model, tiny_tok):
    scores = eap_ig(tiny_model, tiny_tok, steps=3)
    circuit = select_circuit(scores, "top-n", n=12, model=tiny_model, tok=tiny_tok)
    n = len(tiny_tok)
    st = edge_stability(tiny_model, tiny_tok, circuit, method="eap-ig", options={"steps": 3}, rs=RS, groups=n)
    assert st.groups == n and st.resamples == RS.resamples
    # by hand: each prompt scored alone, each resample's mean score, the same rule, counted
    per = torch.stack([eap_ig(tiny_model, tiny_tok.slice(i, i + 1), steps=3).scores.double() for i in range(n)])
    means = per[resample_indices(n, RS)].mean(1)
    keep, _ = reselect(circuit, means)
    torch.testing.assert_close(st.frequency, keep.double().mean(0), atol=1e-12, rtol=0)
    assert 0 < len(st.circuit_edges()) == circuit.n_edges
    j = st.to_json()
    assert j["groups"] == n and len(j["edges"]) == circuit.n_edges and "pruned" in j["rule"]
    assert all(0 <= e["frequency"] <= 1 for e in j["edges"] + j["contenders"])


def test_the_planted_circuit_is_chosen_in_every_resample(known_model, known_tok):
    found = find_circuit(known_model, known_tok, method="eap-ig", steps=5, selection="target", target=0.9)
    st = edge_stability(known_model, known_tok, found.circuit, method="eap-ig", options={"steps": 5}, rs=RS,
                        groups=8)
    got = {tuple(name.split("->")): f for name, f in st.circuit_edges()}
    assert set(got) == PLANTED and all(f == 1.0 for f in got.values())
    assert "held" in st.rule  # a target circuit keeps its size; it is not grown again per resample
    assert "3 of 3 circuit edges" in st.summary()


def test_the_threshold_rule_is_reapplied(tiny_model, tiny_tok):
    scores = eap_ig(tiny_model, tiny_tok, steps=3)
    cut = float(scores.scores.abs().sort(descending=True).values[9])
    circuit = select_circuit(scores, "threshold", threshold=cut, prune=False)
    keep, rule = reselect(circuit, scores.scores[None].double())
    assert torch.equal(keep[0], circuit.edges) and "≥" in rule


def test_a_method_without_per_prompt_scores_is_refused(tiny_model, tiny_tok):
    scores = eap_ig(tiny_model, tiny_tok, steps=3)
    circuit = select_circuit(scores, "top-n", n=5)
    with pytest.raises(ConfigError, match="edge-pruning"):
        edge_stability(tiny_model, tiny_tok, circuit, method="edge-pruning", options=None, rs=RS, groups=2)


@pytest.mark.parametrize(("method", "options"), [("eap", {}), ("eap-ig", {"steps": 3}), ("relp", {})])
def test_each_circuit_edges_score_on_each_prompt_is_that_prompt_scored_alone(tiny_model, tiny_tok, method, options):
    """The stability pass keeps the circuit edges' per-example terms (circuits.gradients.per_prompt_scores),
    whatever the blocks: each equals the method run on that prompt alone, and their mean the edge's score."""
    scores = score_edges(tiny_model, tiny_tok, method, options)
    circuit = select_circuit(scores, "top-n", n=8, model=tiny_model, tok=tiny_tok)
    st = edge_stability(tiny_model, tiny_tok, circuit, method=method, options=options, rs=RS, groups=3)
    ids = torch.tensor(st.prompt_edges)
    assert sorted(st.prompt_edges) == circuit.edges.nonzero().flatten().tolist()  # fewer than PROMPT_SCORE_EDGES
    n = len(tiny_tok)
    assert st.prompt_scores is not None and st.prompt_scores.shape == (len(ids), n)
    alone = torch.stack([score_edges(tiny_model, tiny_tok.slice(i, i + 1), method, options).scores.double()[ids]
                         for i in range(n)], 1)
    scale = float(alone.abs().max())  # float32 terms that cancel: batched and alone differ by ~3e-5 of the largest
    torch.testing.assert_close(st.prompt_scores, alone, atol=1e-4 * scale, rtol=0)
    torch.testing.assert_close(st.prompt_scores.mean(1), scores.scores.double()[ids], atol=1e-4 * scale, rtol=0)
    assert float((alone - alone.mean(1, keepdim=True)).abs().max()) > 1e-2 * scale  # prompts differ: not a mean copied
    by_name = {f"{e['sender']}->{e['receiver']}": e["prompt_scores"] for e in st.to_json()["edges"]}
    names = [circuit.graph.edge_names[i] for i in ids.tolist()]
    assert [by_name[nm] for nm in names] == st.prompt_scores.tolist()


def test_a_method_outside_the_gradient_engine_keeps_blocks_only(tiny_model, tiny_tok):
    """eap-ig-activations scores through its own loop: no per-prompt part, so no per-prompt scores (blocks stay)."""
    scores = score_edges(tiny_model, tiny_tok, "eap-ig-activations", {"steps": 2})
    circuit = select_circuit(scores, "top-n", n=6, model=tiny_model, tok=tiny_tok)
    st = edge_stability(tiny_model, tiny_tok, circuit, method="eap-ig-activations", options={"steps": 2}, rs=RS,
                        groups=2)
    assert st.prompt_scores is None and st.group_scores is not None
    assert all("prompt_scores" not in e and len(e["scores"]) == 2 for e in st.to_json()["edges"])


def test_per_prompt_scores_are_kept_for_the_strongest_circuit_edges_only(tiny_model, tiny_tok, monkeypatch):
    """A large circuit keeps per-prompt scores for its PROMPT_SCORE_EDGES strongest edges; the rest per block."""
    from circuitwise.evaluation import stability

    monkeypatch.setattr(stability, "PROMPT_SCORE_EDGES", 3)
    scores = score_edges(tiny_model, tiny_tok, "eap")
    circuit = select_circuit(scores, "top-n", n=8, model=tiny_model, tok=tiny_tok)
    st = edge_stability(tiny_model, tiny_tok, circuit, method="eap", options={}, rs=RS, groups=2)
    ids = circuit.edges.nonzero().flatten()
    strongest = ids[scores.scores[ids].abs().argsort(descending=True)][:3].tolist()
    assert st.prompt_edges == strongest and st.prompt_scores.shape == (3, len(tiny_tok))
    edges = st.to_json()["edges"]
    kept = {circuit.graph.edge_names[i] for i in strongest}
    assert {f"{e['sender']}->{e['receiver']}" for e in edges if "prompt_scores" in e} == kept
    assert all(len(e["scores"]) == 2 for e in edges)


@pytest.mark.parametrize(("method", "options"), [("eap", {}), ("eap-ig", {"steps": 3}), ("relp", {})])
def test_every_edges_terms_from_the_discovery_pass_give_the_rescored_stability(tiny_model, tiny_tok, method, options):
    """The discovery pass keeps every edge's per-prompt terms (stability.recording, gradients.every_edge_scores):
    they sum to the pass's scores, and the stability read from them (blocks, resampled selection, per-prompt
    scores) is the stability that scores each block again, without that second pass."""
    from circuitwise.circuits.methods import get_method
    from circuitwise.evaluation import stability

    opts = get_method(method).options(options)
    with stability.recording(tiny_model, tiny_tok, method, opts) as rec:
        scores = score_edges(tiny_model, tiny_tok, method, options)
    assert rec is not None
    every = rec.values(len(tiny_tok))
    plain = score_edges(tiny_model, tiny_tok, method, options)
    scale = float(plain.scores.abs().max())
    torch.testing.assert_close(scores.scores, plain.scores, atol=1e-5 * scale, rtol=0)  # the same pass, summed apart
    torch.testing.assert_close(every.double().mean(1), plain.scores.double(), atol=1e-5 * scale, rtol=0)
    circuit = select_circuit(plain, "top-n", n=8, model=tiny_model, tok=tiny_tok)
    again = edge_stability(tiny_model, tiny_tok, circuit, method=method, options=opts, rs=RS, groups=3)
    read = edge_stability(tiny_model, tiny_tok, circuit, method=method, options=opts, rs=RS, groups=3, every=every)
    torch.testing.assert_close(read.group_scores, again.group_scores, atol=1e-5 * scale, rtol=0)
    torch.testing.assert_close(read.prompt_scores, again.prompt_scores, atol=1e-5 * scale, rtol=0)
    assert torch.equal(read.group_sizes, again.group_sizes) and read.prompt_edges == again.prompt_edges
    torch.testing.assert_close(read.frequency, again.frequency)


def test_terms_over_their_byte_budget_are_not_kept_and_stability_scores_again(tiny_model, tiny_tok, monkeypatch):
    """Every edge's terms (twice: kept, and in flight) are kept only within EVERY_EDGE_BYTES, and only for
    methods whose one pass gives them (position-agnostic gradient methods); otherwise nothing is recorded and
    stability rescoring runs as before."""
    from circuitwise.circuits.methods import get_method
    from circuitwise.evaluation import stability

    eap = get_method("eap").options({})
    monkeypatch.setattr(stability, "EVERY_EDGE_BYTES", 8 * graph_edges(tiny_model) * len(tiny_tok) - 1)
    with stability.recording(tiny_model, tiny_tok, "eap", eap) as rec:
        assert rec is None
    monkeypatch.setattr(stability, "EVERY_EDGE_BYTES", 8 * graph_edges(tiny_model) * len(tiny_tok))
    with stability.recording(tiny_model, tiny_tok, "eap", eap) as rec:
        assert rec is not None
    for method, options in (("edge-pruning", {}), ("eap", {"positions": "tokens"})):
        with stability.recording(tiny_model, tiny_tok, method, get_method(method).options(options)) as rec:
            assert rec is None


def graph_edges(model):
    from circuitwise.circuits import graph_of

    return graph_of(model).n_edges


def test_a_pruned_target_circuits_rule_says_its_size_before_pruning(tiny_model):
    """A target circuit is re-selected at the size the target chose, before pruning: the rule says so rather
    than naming a number that is not the circuit's own edge count."""
    from circuitwise.circuits import graph_of
    from circuitwise.circuits.circuit import Circuit

    g = graph_of(tiny_model)
    edges = torch.zeros(g.n_edges, dtype=torch.bool)
    edges[:5] = True
    scores = torch.linspace(1.0, 0.0, g.n_edges)
    for before, says in ((9, "the top 9 edges by |score| (the target circuit's size before pruning, held)"),
                         (5, "the top 5 edges by |score| (the target circuit's size, held)")):
        sel = {"kind": "target", "by": "abs", "edges_before_pruning": before, "pruned": False}
        _, rule = reselect(Circuit(g, edges, scores, "eap", sel), scores[None])
        assert rule == says
