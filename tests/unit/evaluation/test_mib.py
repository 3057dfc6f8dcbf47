"""MIB metrics: budgets, rankings and pruning as MIB's, CPR/CMD against an independent computation."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from circuitwise.attribution import baseline
from circuitwise.circuits import EdgeScores, eap_ig, graph_of
from circuitwise.errors import ConfigError
from circuitwise.evaluation.faithfulness import faithfulness_of_masks
from circuitwise.evaluation.mib import MIB_BUDGETS, mib_masks, mib_metrics


@pytest.fixture(scope="module")
def scores(small_model, small_tok):
    return eap_ig(small_model, small_tok, steps=3)


@pytest.fixture(scope="module")
def result(small_model, small_tok, scores):
    return mib_metrics(small_model, small_tok, scores)


def mib_prune(graph, keep: torch.Tensor) -> torch.Tensor:
    """EAP-IG's ``Graph.prune``, written from its description: repeatedly drop nodes lacking an
    incoming (the input excepted) or outgoing edge, then edges whose parent or child was dropped."""
    s_idx, r_idx = graph.edge_index
    owner = []  # receiver -> the forward node it belongs to; the logits are never dropped
    for rec in graph.receivers:
        name = rec.node
        owner.append(-1 if name == "logits" else [s.name for s in graph.senders].index(name))
    owner = torch.tensor(owner)
    edges = keep.clone()
    S = len(graph.senders)
    while True:
        out = torch.zeros(S, dtype=torch.bool)
        inc = torch.zeros(S, dtype=torch.bool)
        out[s_idx[edges]] = True
        tgt = owner[r_idx[edges]]
        inc[tgt[tgt >= 0]] = True
        inc[0] = True
        alive = out & inc
        child_alive = torch.where(owner[r_idx] >= 0, alive[owner[r_idx].clamp_min(0)], torch.ones_like(edges))
        new = edges & alive[s_idx] & child_alive
        if torch.equal(new, edges):
            return new
        edges = new


def test_budgets_rankings_and_pruning_are_mibs(scores):
    E = scores.graph.n_edges
    masks, tops, counts = mib_masks(scores)
    assert tops == [int(b * E) for b in (.001, .002, .005, .01, .02, .05, .1, .2, .5, 1)]
    assert not masks[0].any()  # the empty circuit comes first
    for r, key in enumerate((scores.scores, scores.scores.abs())):  # signed, then absolute
        order = torch.argsort(key, descending=True, stable=True)
        for i, k in enumerate(tops):
            top = torch.zeros(E, dtype=torch.bool)
            top[order[:k]] = True
            want = mib_prune(scores.graph, top)
            got = masks[1 + r * len(tops) + i]
            assert torch.equal(got, want)
            assert counts[r][i] == int(want.sum())
    assert torch.equal(masks[len(tops)], torch.ones(E, dtype=torch.bool))  # 100 %: nothing to prune


def test_cpr_cmd_equal_an_independent_computation_on_the_saved_curve(result):
    saved = json.loads(json.dumps(result.to_json()))  # what circuit.json holds
    x = np.array(saved["budgets"])
    assert list(x) == list(MIB_BUDGETS)
    f_signed = np.array(saved["curves"]["signed"]["faithfulness"])
    f_abs = np.array(saved["curves"]["abs"]["faithfulness"])
    assert saved["cpr"] == pytest.approx(np.trapezoid(f_signed, x), rel=1e-12, abs=1e-12)
    assert saved["cmd"] == pytest.approx(np.trapezoid(np.abs(1 - f_abs), x), rel=1e-12, abs=1e-12)
    # each curve also carries both areas, as MIB's result files do
    assert saved["curves"]["abs"]["area_under"] == pytest.approx(np.trapezoid(f_abs, x), abs=1e-12)
    assert saved["curves"]["signed"]["area_from_1"] == pytest.approx(np.trapezoid(np.abs(1 - f_signed), x), abs=1e-12)
    assert "m(empty)" in saved["conventions"] and saved["ablation"] == "corrupted"


def test_endpoints_and_each_budget_equal_the_unbatched_measurement(small_model, small_tok, scores, result):
    ld = float(baseline(small_model, small_tok).logit_diff.mean())
    assert result.full_metric == pytest.approx(ld, abs=1e-5)
    masks, _, _ = mib_masks(scores)
    empty = faithfulness_of_masks(small_model, small_tok, masks[0])[0]
    assert result.empty_metric == pytest.approx(empty.corrupted_metric, abs=1e-5)  # m(∅) is the corrupted run
    for curve in (result.signed, result.absolute):
        assert curve.faithfulness[-1] == pytest.approx(1.0, abs=1e-5)
    n = len(MIB_BUDGETS)
    for j in (1, 5, n + 3, 2 * n - 1):  # a few budgets, one mask at a time
        one = faithfulness_of_masks(small_model, small_tok, masks[j])[0]
        curve = result.signed if j <= n else result.absolute
        assert curve.faithfulness[(j - 1) % n] == pytest.approx(one.faithfulness, abs=1e-5)


def test_invariants(small_model, result):
    E = graph_of(small_model).n_edges
    assert result.total_edges == E and result.signed.top[-1] == E
    assert result.cmd >= 0
    for c in (result.signed, result.absolute):
        assert all(0 <= n <= t for n, t in zip(c.n_edges, c.top))  # pruning only removes
        assert c.n_edges[-1] == E
        # |1 − f| ≥ 1 − f, so on one curve area_under + area_from_1 ≥ the axis' length 0.999
        j = c.to_json()
        assert j["area_under"] + j["area_from_1"] >= (1 - 0.001) - 1e-12


def test_unscored_edges_are_refused(small_model, small_tok, scores):
    partial = scores.scores.clone()
    partial[:3] = float("nan")
    bad = EdgeScores(scores.graph, partial, "x")
    with pytest.raises(ConfigError, match="no score"):
        mib_metrics(small_model, small_tok, bad)


def test_planted_circuit_scores_high(known_model, known_tok):
    s = eap_ig(known_model, known_tok, steps=5)
    r = mib_metrics(known_model, known_tok, s)
    assert graph_of(known_model).n_edges == r.total_edges
    # the planted path is a handful of edges: by 10 % of the graph the circuit is the model
    i10 = MIB_BUDGETS.index(0.1)
    assert r.signed.faithfulness[i10] > 0.9
    assert r.cpr > 0.85 and r.cmd < 0.15
