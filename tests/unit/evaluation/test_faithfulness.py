"""Faithfulness invariants, completeness, mean ablation, the curve and the baselines."""

from __future__ import annotations

import pytest
import torch

from circuitwise.attribution import baseline
from circuitwise.circuits import eap_ig, graph_of, select_circuit
from circuitwise.errors import ConfigError, DegenerateMetricError
from circuitwise.evaluation import (
    completeness,
    evaluate_circuit,
    faithfulness,
    faithfulness_curve,
    random_baseline,
    shortlist_agreement,
)
from circuitwise.evaluation.faithfulness import faithfulness_of_masks


@pytest.fixture(scope="module")
def scores(small_model, small_tok):
    # midpoints: with 3 steps on this random model, the top-20 by the right-end rule is no better than chance
    return eap_ig(small_model, small_tok, steps=3, quadrature="midpoint")


@pytest.fixture(scope="module")
def circuit(small_model, small_tok, scores):
    return select_circuit(scores, "top-n", n=20, model=small_model, tok=small_tok)


def test_everything_is_clean_nothing_is_corrupted(small_model, small_tok):
    E = graph_of(small_model).n_edges
    full, empty = faithfulness_of_masks(small_model, small_tok, torch.stack([torch.ones(E), torch.zeros(E)]))
    assert full.faithfulness == pytest.approx(1.0, abs=1e-4)
    assert empty.faithfulness == pytest.approx(0.0, abs=1e-4)
    ld = baseline(small_model, small_tok).logit_diff
    assert full.clean_metric == pytest.approx(float(ld.mean()), abs=1e-5)
    torch.testing.assert_close(full.per_example, ld, atol=1e-5, rtol=0)
    assert full.kept_fraction == pytest.approx(1.0, abs=1e-4)


def test_completeness_is_the_complement_alone(small_model, small_tok, circuit):
    comp = completeness(small_model, small_tok, circuit)
    f = faithfulness_of_masks(small_model, small_tok, ~circuit.edges)[0]
    assert comp.complement.faithfulness == pytest.approx(f.faithfulness, abs=1e-6)
    assert comp.completeness == pytest.approx(1 - f.faithfulness)
    assert comp.complement.n_edges == circuit.graph.n_edges - circuit.n_edges


def test_mean_ablation(small_model, small_tok, circuit):
    E = circuit.graph.n_edges
    full = faithfulness_of_masks(small_model, small_tok, torch.ones(E), ablation="mean")[0]
    assert full.faithfulness == pytest.approx(1.0, abs=1e-4)
    f = faithfulness(small_model, small_tok, circuit, ablation="mean")
    assert f.ablation == "mean" and f.faithfulness == f.faithfulness  # finite
    with pytest.raises(ConfigError, match="ablation"):
        faithfulness(small_model, small_tok, circuit, ablation="zero")


def test_never_clipped(small_model, small_tok, scores):
    # Circuits can overshoot or undershoot; values outside [0, 1] must survive.
    masks = torch.stack([select_circuit(scores, "top-n", n=k).edges for k in range(1, 60, 3)])
    f = [r.faithfulness for r in faithfulness_of_masks(small_model, small_tok, masks)]
    assert min(f) < 0 or max(f) > 1


def test_degenerate_gap(tiny_model):
    import circuitwise as cw

    ex = cw.Example("A rock is hard, but, a sponge is", " soft", " hard", "A rock is hard, but, a sponge is")
    tok, _ = cw.tokenize_task(tiny_model, cw.Task("same", (ex,)), need_corrupted=True)
    with pytest.raises(DegenerateMetricError, match="almost the same metric"):
        faithfulness_of_masks(tiny_model, tok, torch.ones(graph_of(tiny_model).n_edges))


def test_a_circuit_for_another_model(tiny_model, tiny_tok, circuit):
    with pytest.raises(ConfigError, match="4-layer"):
        faithfulness(tiny_model, tiny_tok, circuit)


def test_curve(small_model, small_tok, scores):
    crv = faithfulness_curve(small_model, small_tok, scores, random_samples=3)
    E = scores.graph.n_edges
    assert crv.top[0] == 1 and crv.top[-1] == E and crv.n_edges[-1] == E
    assert crv.faithfulness[-1] == pytest.approx(1.0, abs=1e-4)
    assert crv.n_edges == sorted(crv.n_edges)
    assert len(crv.random_mean) == len(crv.top) and crv.random_mean[-1] == pytest.approx(1.0, abs=1e-4)
    j = crv.to_json()
    assert set(j) >= {"top", "n_edges", "faithfulness", "random_mean"}


def test_random_baseline(small_model, small_tok, circuit):
    rb = random_baseline(small_model, small_tok, circuit, samples=8, seed=1)
    assert len(rb.random_faithfulness) == 8 and rb.n_edges == circuit.n_edges
    assert rb.circuit_faithfulness > rb.mean
    assert 1 / 9 <= rb.p_value <= 1
    assert rb.to_json()["p_value"] == rb.p_value


def test_shortlist_agreement(small_model, small_tok, scores):
    agr = shortlist_agreement(small_model, small_tok, scores, k=25)
    assert len(agr.edges) == 25 and agr.edges[0] == scores.graph.edge_names[int(scores.ranking()[0])]
    assert agr.spearman > 0.5 and agr.sign_agreement > 0.7
    with pytest.raises(ConfigError, match="at least 2"):
        shortlist_agreement(small_model, small_tok, scores, k=1)


def test_evaluate_circuit_bundles_it_all(small_model, small_tok, circuit, scores):
    ev = evaluate_circuit(small_model, small_tok, circuit, scores=scores, random_samples=4, shortlist=10)
    j = ev.to_json()
    assert set(j) == {"faithfulness", "completeness", "random_baseline", "curve", "agreement", "mib"}
    assert j["faithfulness"]["n_edges"] == circuit.n_edges
    figs = ev.figures()
    assert set(figs) == {"circuit", "faithfulness_curve", "agreement", "mib"}
    assert ev.faithfulness.faithfulness == pytest.approx(faithfulness(small_model, small_tok, circuit).faithfulness, abs=1e-5)
