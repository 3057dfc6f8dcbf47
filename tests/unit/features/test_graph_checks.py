"""The checks `circuitwise graph` runs on its graph (features.checks): each ablation is the engine's own
intervention, the kept graph's prediction is that graph's, head loadings are of the strongest links
between positions and sum to their links, the heads' totals sum the loadings, and on the planted-feature
model the one feature that carries the answer is ablated as the graph predicts."""

from __future__ import annotations

import pytest
import torch

from circuitwise.features.attribute import LogitDiff, Tokens, attribution_graph
from circuitwise.features.checks import check_graph, checked_target
from circuitwise.features.export import graph_file
from circuitwise.features.interventions import feature_faithfulness, intervene, predict
from circuitwise.features.prune import prune_graph
from circuitwise.schema.graph import CircuitHeads, GraphFile
from tests.unit.features.planted import LAYER, NEURON, TOK_X, TOK_Y
from tests.unit.features.random_transcoders import random_set
from tests.unit.features.test_graph_interventions import planted  # noqa: F401  (a fixture, used by name)

PROMPT = "A tortoise is old, but a kitten is"


@pytest.fixture(scope="module")
def graphs(tiny_model):
    tcs = random_set(tiny_model, "topk_skip")
    full = attribution_graph(tiny_model, tcs, PROMPT, targets=LogitDiff(" young", " old"))
    return tcs, full, prune_graph(full, 0.8, 0.98)


def test_each_check_is_the_engines_own_number(tiny_model, graphs):
    tcs, full, kept = graphs
    c = check_graph(tiny_model, tcs, full, kept, features=4, links=6)
    assert c.target == 0 and len(c.interventions) == min(4, kept.features.stop - kept.features.start)
    # The most influential kept features, in order.
    inf = [float(kept.influence[a.node]) for a in c.interventions]
    assert inf == sorted(inf, reverse=True)
    for a in c.interventions:
        n = kept.nodes[a.node]
        assert (a.layer, a.position, a.feature) == (n.layer, n.position, n.feature)
        want = intervene(tiny_model, tcs, full, [(n.layer, n.position, n.feature)], scale=0.0)
        assert (a.actual, a.predicted, a.predicted_direct) == pytest.approx(
            (want.actual, want.predicted, want.predicted_direct), rel=1e-6, abs=1e-7)
        assert a.predicted_kept == pytest.approx(predict(kept, [a.node], 0.0)[0], rel=1e-9)
    f = feature_faithfulness(tiny_model, tcs, kept)
    assert c.faithfulness is not None and c.faithfulness.faithfulness == pytest.approx(f.faithfulness, rel=1e-6)
    moved = [(a.actual, a.predicted) for a in c.interventions if abs(a.actual) > 1e-6 and abs(a.predicted) > 1e-6]
    assert c.sign_agreement() == pytest.approx(sum((x > 0) == (y > 0) for x, y in moved) / len(moved))


def test_head_loadings_are_of_the_strongest_links_between_positions(tiny_model, graphs):
    tcs, full, kept = graphs
    c = check_graph(tiny_model, tcs, full, kept, features=0, links=5)
    assert not c.interventions and 0 < len(c.loadings) <= 5
    nodes = kept.nodes
    between = sorted((abs(w) for i, j, w in kept.edges()
                      if nodes[i].kind in ("feature", "target") and nodes[i].position != nodes[j].position),
                     reverse=True)
    assert [abs(x.edge) for x in c.loadings] == pytest.approx(between[:len(c.loadings)], rel=1e-6)
    for x in c.loadings:
        # Between positions every path passes through a head: the heads alone make up the link.
        assert x.residual == 0.0 and float(x.heads.sum()) == pytest.approx(x.edge, rel=1e-4, abs=1e-5)
    totals = {h: (s, a) for h, s, a, _ in c.head_totals()}
    stacked = torch.stack([x.heads for x in c.loadings])
    H = stacked.shape[2]
    for (m, h), s in zip([(m, h) for m in range(stacked.shape[1]) for h in range(H)],
                         stacked.sum(0).flatten().tolist(), strict=True):
        if f"L{m}H{h}" in totals:
            assert totals[f"L{m}H{h}"][0] == pytest.approx(s, rel=1e-5, abs=1e-6)
    ranked = [a for _, _, a, _ in c.head_totals()]
    assert ranked == sorted(ranked, reverse=True)


def test_the_file_carries_the_checks_and_marks_a_circuits_heads(tiny_model, graphs):
    tcs, full, kept = graphs
    c = check_graph(tiny_model, tcs, full, kept, features=3, links=4)
    top = c.head_totals()[0][0]
    gf = graph_file(kept, checks=c, circuit=CircuitHeads(source="circuit.json", heads=[top]))
    back = GraphFile.model_validate_json(gf.dump_text())
    assert back.checks is not None and back.checks == gf.checks
    assert [h.in_circuit for h in back.checks.heads] == [h.head == top for h in back.checks.heads]
    with_heads = [e for e in back.edges if e.heads is not None]
    assert len(with_heads) == len(c.loadings)
    ids = {n.id for n in back.nodes}
    assert all(a.node in ids for a in back.checks.interventions)
    assert back.checks.faithfulness == pytest.approx(c.faithfulness.faithfulness)


def test_a_task_graph_gets_no_checks_and_says_why(tiny_model, graphs):
    from circuitwise.features.task_graph import task_graph
    from circuitwise.tasks import get_task

    tcs, _, _ = graphs
    full = task_graph(tiny_model, tcs, get_task("opposites", n=3), max_prompts=2)
    c = check_graph(tiny_model, tcs, full, prune_graph(full))
    assert not c.interventions and not c.loadings and c.faithfulness is None
    assert "need one prompt's graph" in c.notes[0]


def test_the_planted_feature_is_ablated_as_the_graph_predicts(planted):  # noqa: F811
    model, tcs = planted
    tokens = model.to_tokens("The old man saw a" + model.tokenizer.decode([TOK_X]))[0]
    full = attribution_graph(model, tcs, tokens, targets=Tokens((TOK_Y,)))
    kept = prune_graph(full, 0.8, 0.98)
    c = check_graph(model, tcs, full, kept, features=1, links=3)
    assert checked_target(kept) == 0
    (a,) = c.interventions
    # The most influential feature is the planted neuron at the last position; ablating it lowers Y's logit
    # as the graph says it will.
    assert (a.layer, a.position, a.feature) == (LAYER, len(tokens) - 1, NEURON)
    assert a.actual < 0 and a.actual == pytest.approx(a.predicted, rel=0.1)
    assert c.sign_agreement() == 1.0


def test_every_check_reads_one_clean_run(tiny_model, graphs, monkeypatch):
    import circuitwise.features.heads as heads_mod
    import circuitwise.features.interventions as iv

    tcs, full, kept = graphs
    calls = []
    for mod in (iv, heads_mod):
        real = mod.clean_run
        monkeypatch.setattr(mod, "clean_run", lambda *a, _real=real, **k: calls.append(1) or _real(*a, **k))
    c = check_graph(tiny_model, tcs, full, kept, features=3, links=3)
    assert len(c.interventions) == 3 and c.loadings and len(calls) == 1
