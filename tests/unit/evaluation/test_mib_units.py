"""MIB's node- and neuron-level curves, CPR and CMD (evaluation.mib_units)."""

from __future__ import annotations

import pytest
import torch

from circuitwise.circuits.neurons import score_neurons
from circuitwise.circuits.patch import normalise, patched_metrics
from circuitwise.circuits.scores import prepare
from circuitwise.errors import ConfigError
from circuitwise.evaluation.mib import MIB_BUDGETS, area_from_1, area_under
from circuitwise.evaluation.mib_units import mib_unit_metrics


@pytest.fixture(scope="module")
def neurons(tiny_model, tiny_tok):
    return score_neurons(tiny_model, tiny_tok, method="eap")


def test_a_node_level_curve_is_edge_patching_of_the_top_nodes_outgoing_edges(tiny_model, tiny_tok, neurons):
    """Independent of the unit engine: each budget's top nodes (by MIB's int(b · S)) kept through the edge
    engine, every edge out of them kept, gives the same faithfulness."""
    r = mib_unit_metrics(tiny_model, tiny_tok, neurons, level="node")
    S = len(neurons.graph.senders)
    assert r.total_units == S and r.signed.n_units == [int(b * S) for b in MIB_BUDGETS]
    prep = prepare(tiny_model, tiny_tok)
    s_idx, _ = prep.gm.graph.edge_index
    node = neurons.node_scores().scores
    for curve, key in ((r.signed, node), (r.absolute, node.abs())):
        order = torch.argsort(key, descending=True, stable=True)
        keep = torch.zeros(len(MIB_BUDGETS), S, dtype=torch.bool)
        for i, n in enumerate(curve.n_units):
            keep[i, order[:n]] = True
        pm = patched_metrics(prep, keep[:, s_idx])
        want = [float(normalise(float(p.double().mean()), float(pm.clean.double().mean()),
                                float(pm.corrupted.double().mean()))) for p in pm.patched]
        assert curve.faithfulness == pytest.approx(want, abs=1e-5)
    assert r.signed.faithfulness[-1] == pytest.approx(1.0, abs=1e-5)
    assert r.cpr == pytest.approx(area_under(r.signed.faithfulness))
    assert r.cmd == pytest.approx(area_from_1(r.absolute.faithfulness))


def test_a_neuron_level_curve_keeps_int_b_times_all_neurons_and_ends_at_one(tiny_model, tiny_tok, neurons):
    r = mib_unit_metrics(tiny_model, tiny_tok, neurons)
    total = neurons.scores.numel()
    assert r.level == "neuron" and r.total_units == total
    assert r.absolute.n_units == [int(b * total) for b in MIB_BUDGETS]
    assert r.absolute.faithfulness[-1] == pytest.approx(1.0, abs=1e-5)
    assert r.full_metric == pytest.approx(neurons.clean_metric, rel=1e-5)
    assert r.empty_metric == pytest.approx(neurons.corrupted_metric, rel=1e-5)
    assert set(r.to_json()["curves"]) == {"signed", "abs"}


def test_unscored_neurons_and_a_wrong_level_are_refused(tiny_model, tiny_tok, neurons):
    import dataclasses

    holes = dataclasses.replace(neurons, scores=neurons.scores.clone().index_fill_(1, torch.tensor([0]), float("nan")))
    with pytest.raises(ConfigError, match="no score"):
        mib_unit_metrics(tiny_model, tiny_tok, holes)
    with pytest.raises(ConfigError, match="level"):
        mib_unit_metrics(tiny_model, tiny_tok, neurons, level="edge")  # type: ignore[arg-type]
