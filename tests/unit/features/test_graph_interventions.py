"""Interventions check the graph.

- the graph's prediction equals the exact change in the frozen replacement (features responding
  with their gates frozen), computed by re-running the frozen model;
- unedited, the unfrozen replacement is the model; the whole graph's faithfulness is 1;
- on a planted-feature model the graph finds token → feature → logit with zero error nodes, and
  ablating that feature in the unfrozen model moves the logit as the graph predicts.
"""

from __future__ import annotations

import pytest
import torch

from circuitwise.errors import ConfigError
from circuitwise.features.attribute import LogitDiff, Tokens, attribution_graph, target_read
from circuitwise.features.interventions import feature_faithfulness, intervene, predict
from circuitwise.features.prune import prune_graph
from circuitwise.features.replacement import clean_run, frozen_forward, live_forward
from tests.unit.features.planted import LAYER, NEURON, TOK_X, TOK_Y, mlp_transcoders, planted_checkpoint
from tests.unit.features.random_transcoders import random_set
from tests.unit.features.test_graph_engine import _sources

PROMPT = "A tortoise is old, but a kitten is"


@pytest.mark.parametrize("kind", ["topk_skip", "clt"])
def test_prediction_is_the_frozen_models_exact_response(tiny_model, kind):
    tcs = random_set(tiny_model, kind)
    g = attribution_graph(tiny_model, tcs, PROMPT, targets=LogitDiff(" young", " old"))
    run = clean_run(tiny_model, tcs, torch.tensor(g.tokens[0]))
    top = g.adjacency[g.target_nodes.start, g.features].abs().argsort(descending=True)[:4].tolist()
    pin = {(g.nodes[i].layer, g.nodes[i].position, g.nodes[i].feature) for i in top}
    active = [a != 0 for a in run.acts]
    acts = [a.clone() for a in run.acts]
    for _ in range(g.n_layers + 1):  # features respond, gates frozen, chosen ones at 0.5×
        for l, p, f in pin:
            acts[l][p, f] = 0.5 * run.acts[l][p, f]
        tc_in, final = frozen_forward(run, tcs, *_sources(run, tcs, [a[None] for a in acts],
                                                            [e[None] for e in run.errors], run.embed[None]))
        acts = [torch.where(active[l], tc_in[l][0] @ t.W_enc + t.b_enc, 0.0) for l, t in enumerate(tcs.transcoders)]
    u, c = target_read(g, run.w, 0)
    exact = float(final[0, -1] @ u + c) - g.nodes[-1].value
    assert predict(g, top, 0.5)[0] == pytest.approx(exact, abs=1e-5, rel=1e-4)
    r = intervene(tiny_model, tcs, g, top, scale=0.5)
    assert r.predicted == pytest.approx(exact, abs=1e-5, rel=1e-4)
    assert r.clean == pytest.approx(g.nodes[-1].value, abs=1e-5)


def test_unedited_live_model_is_the_model_and_the_whole_graph_is_faithful(tiny_model):
    tcs = random_set(tiny_model, "jumprelu")
    g = attribution_graph(tiny_model, tcs, PROMPT, targets=LogitDiff(" young", " old"))
    run = clean_run(tiny_model, tcs, torch.tensor(g.tokens[0]))
    logits = live_forward(run, tcs) @ run.w.W_U + run.w.b_U
    assert torch.allclose(logits, tiny_model(run.tokens[None])[0], atol=1e-5)
    assert torch.allclose(live_forward(run, tcs, freeze_norms=True), live_forward(run, tcs), atol=1e-5)
    f = feature_faithfulness(tiny_model, tcs, g)
    assert f.faithfulness == pytest.approx(1.0, abs=1e-6) and f.n_features == g.features.stop
    with pytest.raises(ConfigError, match="not active"):
        intervene(tiny_model, tcs, g, [(0, 0, 10_000)])


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    import circuitwise as cw

    model = cw.load_model(str(planted_checkpoint(tmp_path_factory.mktemp("planted") / "opt")), device="cpu")
    return model, mlp_transcoders(model)


def test_planted_feature_path_and_its_ablation(planted):
    model, tcs = planted
    tokens = model.to_tokens("The old man saw a" + model.tokenizer.decode([TOK_X]))[0]
    g = attribution_graph(model, tcs, tokens, targets=Tokens((TOK_Y,)))
    last = len(tokens) - 1
    # Error nodes off BOS are zero: the transcoders are the MLPs.
    assert max(n.value for n in g.nodes[g.errors] if n.position > 0) < 1e-4
    row = g.adjacency[g.target_nodes.start]
    top = int(row.abs().argmax())
    assert (g.nodes[top].kind, g.nodes[top].layer, g.nodes[top].position, g.nodes[top].feature) == \
        ("feature", LAYER, last, NEURON)
    assert float(row[top]) > 10 * float(row.abs().sort(descending=True).values[1])
    into = g.adjacency[top]
    src = g.nodes[int(into.abs().argmax())]
    assert (src.kind, src.position, src.token) == ("token", last, TOK_X)
    r = intervene(model, tcs, g, [top], scale=0.0)
    assert r.actual < 0 and r.actual == pytest.approx(r.predicted, rel=0.1)
    pruned = prune_graph(g, 0.8, 0.98)
    assert any(n.kind == "feature" and n.feature == NEURON and n.layer == LAYER for n in pruned.nodes)
    assert pruned.scores["replacement"] > 0.99
    assert feature_faithfulness(model, tcs, pruned).faithfulness == pytest.approx(1.0, abs=0.15)
