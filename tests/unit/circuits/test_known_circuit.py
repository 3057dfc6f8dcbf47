"""Ground truth: on a model whose circuit is planted by hand, discovery returns that circuit."""

from __future__ import annotations

import pytest

from circuitwise.attribution import baseline
from circuitwise.circuits import find_circuit, score_edges
from circuitwise.evaluation import faithfulness
from tests.unit.circuits.known_circuit import PLANTED


def test_the_planted_model_does_the_task(known_model, known_tok):
    ld = baseline(known_model, known_tok).logit_diff
    assert (ld > 0.5).all()


@pytest.mark.parametrize("method", ["eap-ig", "eap", "exact"])
def test_each_method_ranks_the_planted_edges_first(known_model, known_tok, method):
    scores = score_edges(known_model, known_tok, method)
    top = {tuple(name.split("->")) for name, _ in scores.top(3)}
    assert top == PLANTED


def test_discovery_returns_the_planted_circuit_with_faithfulness_over_0_9(known_model, known_tok):
    found = find_circuit(known_model, known_tok, method="eap-ig", steps=5, selection="target", target=0.9)
    c = found.circuit
    assert {(s, r) for s, r, _ in c.edge_list()} == PLANTED
    assert c.selection["reached"] and c.selection["faithfulness"] >= 0.9
    f = faithfulness(known_model, known_tok, c)
    assert f.faithfulness >= 0.9 and f.kept_fraction >= 0.9
    assert c.nodes() == ["input", "L0H0", "L1H0", "logits"]
