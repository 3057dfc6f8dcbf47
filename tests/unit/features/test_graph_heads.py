"""Head loadings split each edge exactly: residual + Σ heads = edge, the residual only where s == t,
on GPT-2 (per-layer and cross-layer sets) and on families with grouped heads, post-norms and
parallel blocks."""

import pytest

from circuitwise.errors import ConfigError
from circuitwise.features.attribute import LogitDiff, Salient, attribution_graph
from circuitwise.features.heads import head_loadings
from tests.unit.features.random_transcoders import random_set

PROMPT = "A tortoise is old, but a kitten is"


def _check(g, loadings):
    assert loadings
    for h in loadings:
        scale = 1.0 + abs(h.edge)
        assert abs(h.edge - h.residual - float(h.heads.sum())) < 1e-4 * scale  # float32 sums of many paths
        if g.nodes[h.receiver].position != g.nodes[h.sender].position:
            assert h.residual == 0.0


def _cross_position(g, n=6):
    a = g.adjacency
    pairs = [(i, j) for i, j, _ in g.edges(1e-3) if g.nodes[i].position != g.nodes[j].position]
    pairs.sort(key=lambda e: -abs(float(a[e[0], e[1]])))
    return pairs[:n]


@pytest.mark.parametrize("kind", ["topk_skip", "clt"])
def test_loadings_sum_to_the_edge(tiny_model, kind):
    tcs = random_set(tiny_model, kind)
    g = attribution_graph(tiny_model, tcs, PROMPT, targets=LogitDiff(" young", " old"))
    top = head_loadings(tiny_model, tcs, g, top=8)
    cross = head_loadings(tiny_model, tcs, g, _cross_position(g))
    _check(g, top + cross)
    assert any(float(h.heads.abs().sum()) > 1e-3 for h in cross)
    assert top[0].top(2)[0][0].startswith("L")
    with pytest.raises(ConfigError, match="only features and targets receive"):
        head_loadings(tiny_model, tcs, g, [(g.token_nodes.start, 0)])


@pytest.mark.parametrize("family", ["gemma2", "pythia", "gptj", "llama"])
def test_loadings_sum_to_the_edge_on_other_families(family_model_for, family):
    model = family_model_for(family)
    tcs = random_set(model, "topk_skip", n_features=16)
    tokens = model.to_tokens(PROMPT)[0][:7]
    g = attribution_graph(model, tcs, tokens, targets=Salient(max_n=1))
    _check(g, head_loadings(model, tcs, g, top=4) + head_loadings(model, tcs, g, _cross_position(g, 4)))
