"""Top activating contexts: a context's peak is the activation a graph of that text gives the feature
there, contexts come best first, and a feature that never fires in a text gets none from it."""

from __future__ import annotations

import pytest
import torch

from circuitwise.features.attribute import attribution_graph
from circuitwise.features.contexts import feature_contexts, merge_contexts
from circuitwise.features.replacement import clean_run
from tests.unit.features.random_transcoders import random_set

TEXTS = ["A tortoise is old, but a kitten is", "The sky is blue and the grass is", "One two three four"]


def test_peaks_equal_the_graphs_feature_values_and_come_best_first(tiny_model):
    tcs = random_set(tiny_model, "topk_skip", seed=1)
    g = attribution_graph(tiny_model, tcs, TEXTS[0])
    feats = sorted({(n.layer, n.feature) for n in g.nodes if n.kind == "feature"})[:12]
    one = feature_contexts(tiny_model, tcs, TEXTS[:1], feats, k=3)
    for (layer, f), cs in one.items():
        values = {n.position: n.value for n in g.nodes if n.kind == "feature" and (n.layer, n.feature) == (layer, f)}
        assert len(cs) == 1 and cs[0].index == 0 and cs[0].source == "task"
        assert cs[0].activation == pytest.approx(max(values.values()), rel=1e-5, abs=1e-6)
        assert cs[0].activations[cs[0].pos] == pytest.approx(cs[0].activation, abs=1e-5)
        assert cs[0].tokens[0] == "<|endoftext|>" and "".join(cs[0].tokens[1:]) == TEXTS[0]
    every = feature_contexts(tiny_model, tcs, TEXTS, feats, source="corpus", k=2)
    for (layer, f), cs in every.items():
        # Each text's own peak, read directly from its clean run: the best two, best first.
        peaks = []
        for i, text in enumerate(TEXTS):
            acts = clean_run(tiny_model, tcs, tiny_model.to_tokens(text)[0]).acts[layer][:, f]
            if float(acts.max()) > 0:
                peaks.append((float(acts.max()), i))
        want = sorted(peaks, reverse=True)[:2]
        assert [(c.index) for c in cs] == [i for _, i in want]
        assert [c.activation for c in cs] == pytest.approx([v for v, _ in want], rel=1e-5)
        assert all(c.source == "corpus" for c in cs)


def test_a_silent_feature_has_no_context_and_sources_merge_in_order(tiny_model):
    tcs = random_set(tiny_model, "relu", seed=2)
    layer0 = tcs[0]
    # A feature made silent: its encoder bias far below any pre-activation.
    silent = torch.zeros_like(layer0.b_enc)
    silent[5] = -1e6
    from dataclasses import replace

    tcs = type(tcs)((replace(layer0, b_enc=layer0.b_enc + silent), *tcs.transcoders[1:]), model=tcs.model)
    got = feature_contexts(tiny_model, tcs, TEXTS, [(0, 5), (0, 6)], k=5)
    assert got[(0, 5)] == []
    merged = merge_contexts(got, feature_contexts(tiny_model, tcs, TEXTS[:1], [(0, 6)], source="corpus"))
    assert [c.source for c in merged[(0, 6)]][-1] == "corpus" and merged[(0, 5)] == []
    assert feature_contexts(tiny_model, tcs, [], [(0, 6)]) == {(0, 6): []}
