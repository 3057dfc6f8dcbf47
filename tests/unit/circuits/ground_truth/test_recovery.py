"""Every registered discovery method, on every ground-truth construction: recall and precision of
the planted edges.

Parametrized over ``circuitwise.circuits.METHODS``, so a method registered later is measured here
automatically. Two numbers per method and case, from the method's edge ranking (by magnitude):

- recall at the planted size: the share of planted edges among the top ``len(planted)`` edges
  (at that size precision equals recall);
- precision at full recall: ``len(planted) / k`` for the smallest ``k`` whose top-k holds every
  planted edge (1 when they are ranked first).

Every method must recover every construction (both 1, and the planted edges scored positive:
they carry the clean answer) unless ``SHORTFALLS`` says otherwise, with what it gets and why.
"""

from __future__ import annotations

import pytest

from circuitwise.circuits import METHODS, score_edges

# (case, method) -> (planted edges missing from the top len(planted), lowest precision at full
# recall). Measured; each is a limitation of the method, not of the construction (exact edge
# patching recovers all of them).
SHORTFALLS: dict[tuple[str, str], tuple[frozenset[tuple[str, str]], float]] = {
    # Numbers below: scores at each method's defaults (EAP's gradient at the clean run), against
    # exact patching's. EAP at the corrupted run (TransformerLens's convention) misses the same
    # edges by the same mechanisms, with similar numbers.
    #
    # A gated unit is invisible to one gradient taken where it is off. At the clean run MLP1's
    # unit for the corrupted letter is below its threshold (GELU's slope there is about -0.1), so
    # EAP sees only half of the MLP path (L0H0 -> MLP1: 6.3 against 27.7) while L0H0's norm-only
    # effects count at full weight (L0H0 -> logits -4.9, MLP0 -> MLP1 -3.7, through the norms'
    # scale). input -> L0H0.v, the sum of all of them through L0H0, comes out -0.4 against 27.1.
    ("mlp-two-hop", "eap"): (frozenset({("input", "L0H0.v")}), 0.25),
    # The same in the Llama: silu(gate·a)·(up·a) is exactly flat at a = 0, where the corrupted
    # letter's unit sits at the clean run; input -> L0H0.v scores 2.0 against 11.1, 4th behind a
    # norm-only edge (MLP0 -> MLP1, -2.5).
    ("llama-swiglu", "eap"): (frozenset({("input", "L0H0.v")}), 0.75),
    # The induction head's attention is saturated (softmax weight ~1 on the match), so EAP's
    # gradient through its keys is about zero: the k-composition edge L0H1 -> L1H0.k scores 0.4
    # against 5.6, and input -> L0H1.v, which acts only through those keys, -0.4 against 5.7 (the
    # norm-only effects outweigh it). Ranked 4th and 5th, behind L0H1 -> L1H0.v (-1.5).
    ("k-composition", "eap"): (frozenset({("L0H1", "L1H0.k"), ("input", "L0H1.v")}), 0.6),
    # The same saturation on the query side: L0H2 -> L1H1.q scores 0.5 against 5.2, and
    # input -> L0H2.v, which acts only through that query, -0.7 against 5.3 (5th; at the
    # corrupted run -0.9, 3rd by magnitude, so only the query edge is missing there).
    ("q-composition", "eap"): (frozenset({("L0H2", "L1H1.q"), ("input", "L0H2.v")}), 0.4),
    # EAP-IG-activations averages over its five layer nodes' runs, and in the two where attention
    # layer 0 or 1 is the interpolated (constant) node, the path input -> L0Hx.v -> L1 key/query
    # is cut: that first-hop edge scores 0.9 (k) / 0.7 (q) against 5.7 / 5.3 exactly, ranked 4th
    # behind the second hop's value edge (-0.9 / -0.8). The second hop itself is found.
    ("k-composition", "eap-ig-activations"): (frozenset({("input", "L0H1.v")}), 0.75),
    ("q-composition", "eap-ig-activations"): (frozenset({("input", "L0H2.v")}), 0.75),
    # Edge pruning's default budget (5% of the edges, about 6) also keeps the norm-scale path
    # L0H0 -> MLP0 -> MLP1 (MLP0 writes only scratch, but moves the RMSNorm scale MLP1 reads),
    # which helps the masked model match the full one. All five kept masks end at P(z ≠ 0)
    # 0.998–0.9996, and Adam moves every kept log α at about the same rate, so inside the kept
    # set the order is not one of importance: input -> L0H0.v is 5th, 2e-7 behind the 4th. Asked
    # for 3 edges (kept=3, test_edge_pruning.py) it keeps exactly the planted 3.
    ("llama-swiglu", "edge-pruning"): (frozenset({("input", "L0H0.v")}), 0.6),
    # ACDC's default loss is the KL of the whole next-token distribution, not the answer's logits:
    # here L0H1 (random, writing only scratch) moves the final norm's scale and so every logit, and
    # removing input -> L0H1.q raises the KL by 0.0292 nats, just above the planted edges (0.0282,
    # 0.0275), so input -> L1H1.v is 3rd. With the task metric as loss (-O objective=metric) the
    # planted edges lead (12.3, 11.8; next 0.67), as in test_acdc.py.
    ("single-head", "acdc"): (frozenset({("input", "L1H1.v")}), 0.66),
}

_scores: dict[tuple[str, str], object] = {}


def scores_of(booted, case_name: str, method: str):
    if (case_name, method) not in _scores:
        _, model, tok = booted(case_name)
        _scores[case_name, method] = score_edges(model, tok, method)
    return _scores[case_name, method]


def recovery(scores, planted) -> tuple[frozenset, float, dict[str, float]]:
    """Planted edges missing from the top ``len(planted)``, precision at full recall, planted scores."""
    names = scores.graph.edge_names
    ranked = [tuple(names[i].split("->")) for i in scores.ranking("abs").tolist()]
    missing = frozenset(planted) - set(ranked[: len(planted)])
    last = max(ranked.index(e) for e in planted)
    planted_scores = {f"{s}->{r}": float(scores.scores[scores.graph.edge_id(s, r)]) for s, r in planted}
    return missing, len(planted) / (last + 1), planted_scores


@pytest.mark.parametrize("method", list(METHODS))
def test_each_method_recovers_the_planted_edges(booted, case_name, method):
    case, _, _ = booted(case_name)
    missing, precision, planted_scores = recovery(scores_of(booted, case_name, method), case.planted)
    expected_missing, min_precision = SHORTFALLS.get((case_name, method), (frozenset(), 1.0))
    recall = 1 - len(missing) / len(case.planted)
    assert missing == expected_missing, (recall, sorted(missing), planted_scores)
    assert precision >= min_precision, (precision, planted_scores)
    if not expected_missing:
        assert precision == 1.0
        assert all(s > 0 for s in planted_scores.values()), planted_scores


def test_every_shortfall_names_a_registered_method_and_case():
    from tests.unit.circuits.ground_truth.cases import BY_NAME

    for case, method in SHORTFALLS:
        assert case in BY_NAME and method in METHODS, (case, method)
