"""EAP and faithfulness equal TransformerLens 4.3's own `attribution_patch` and `faithfulness`.

TransformerLens's graph is per position; one circuitwise edge is that edge at every position, so
EAP scores are TL's edge scores summed over positions, and a circuit is TL's circuit of all
positions' copies of its edges.
"""

from __future__ import annotations

import pytest
import torch
from transformer_lens.tools.analysis.attribution_patching import (
    EdgeAttributionConfig,
    attribution_patch,
)
from transformer_lens.tools.analysis.attribution_patching import faithfulness as tl_faithfulness

from circuitwise.circuits import eap, graph_of
from circuitwise.evaluation.faithfulness import faithfulness_of_masks
from tests.unit.circuits.tl_reference import answer_metric, params_require_grad, receiver_name, sender_name, tl_edges


def test_eap_equals_transformerlens_edge_attribution(tiny_model, tiny_tok):
    ours = eap(tiny_model, tiny_tok, gradient="corrupted", batch_size=4)  # TL: the corrupted run; 4 + 2
    g = ours.graph
    ref = torch.zeros(g.n_edges, dtype=torch.float64)
    with params_require_grad(tiny_model):
        for i in range(len(tiny_tok)):
            res = attribution_patch(tiny_model, tiny_tok.clean[i:i + 1], tiny_tok.corrupted[i:i + 1],
                                    answer_metric(tiny_tok.answers[i]), EdgeAttributionConfig(granularity="edge"))
            for (w, r), v in res.edge_scores.items():
                ref[g.edge_id(sender_name(w), receiver_name(r))] += v
    ref /= len(tiny_tok)
    torch.testing.assert_close(ours.scores.double(), ref, atol=1e-6, rtol=1e-4)
    assert ours.scores.abs().max() > 1e-3  # not trivially zero


@pytest.mark.parametrize("n_edges", [0, 7, 40])
def test_faithfulness_equals_transformerlens(tiny_model, tiny_tok, n_edges):
    g = graph_of(tiny_model)
    gen = torch.Generator().manual_seed(n_edges)
    ids = torch.randperm(g.n_edges, generator=gen)[:n_edges].tolist()
    keep = torch.zeros(g.n_edges, dtype=torch.bool)
    keep[ids] = True
    ours = faithfulness_of_masks(tiny_model, tiny_tok, keep)[0]
    P = tiny_tok.clean.shape[1]
    for i in range(2):
        ref = tl_faithfulness(tiny_model, tiny_tok.clean[i:i + 1], tiny_tok.corrupted[i:i + 1],
                              answer_metric(tiny_tok.answers[i]), tl_edges(g, ids, P))
        tl_metric = ref.corrupt_metric + ref.recovered * (ref.full_metric - ref.corrupt_metric)
        assert float(ours.per_example[i]) == pytest.approx(tl_metric, abs=1e-5)
