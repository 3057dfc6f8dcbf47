"""GPT-2-small shapes (random weights): our forward and EAP equal TransformerLens's (slow tier)."""

from __future__ import annotations

import pytest
import torch
from transformer_lens.tools.analysis.attribution_patching import EdgeAttributionConfig, attribution_patch

import circuitwise as cw
from circuitwise.circuits import eap
from circuitwise.circuits.forward import check_against_bridge, graph_model
from tests.helpers import gpt2_small_checkpoint
from tests.unit.circuits.tl_reference import answer_metric, params_require_grad, receiver_name, sender_name

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def gpt2s(tmp_path_factory):
    model = cw.load_model(str(gpt2_small_checkpoint(tmp_path_factory.mktemp("gpt2s"))), device="cpu")
    tok, _ = cw.tokenize_task(model, cw.get_task("opposites-seed"), need_corrupted=True)
    return model, tok.slice(0, 1)


def test_graph_forward_and_eap_equal_transformerlens(gpt2s):
    model, tok = gpt2s
    check_against_bridge(model, graph_model(model), tok.clean, tok.last, tok.answers, atol=1e-5)
    ours = eap(model, tok, gradient="corrupted")  # TL takes the gradient at the corrupted run
    assert ours.graph.n_edges == 32491
    ref = torch.zeros(ours.graph.n_edges, dtype=torch.float64)
    with params_require_grad(model):
        res = attribution_patch(model, tok.clean, tok.corrupted, answer_metric(tok.answers[0]),
                                EdgeAttributionConfig(granularity="edge"))
    for (w, r), v in res.edge_scores.items():
        ref[ours.graph.edge_id(sender_name(w), receiver_name(r))] += v
    torch.testing.assert_close(ours.scores.double(), ref, atol=1e-5, rtol=1e-4)
