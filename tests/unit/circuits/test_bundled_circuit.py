"""Issue 6's acceptance checks on the bundled model (integration: skipped until the model ships).

- The discovered circuit keeps at least 80% of the clean logit difference with at most 10% of the
  edges, re-measured independently with TransformerLens's own hook-based ``faithfulness``. (The
  issue-11 model reads the adjective with two heads into both MLPs: 5% of its 110 edges, 5
  edges, cannot hold that path; 10% can.)
- EAP-IG's ranking of edges agrees with exact edge patching.
"""

from __future__ import annotations

import pytest
import torch

import circuitwise as cw
from circuitwise.circuits import find_circuit, score_edges
from circuitwise.evaluation import faithfulness, spearman
from tests.unit.circuits.tl_reference import answer_metric, tl_edges

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def bundled():
    from circuitwise.models.bundled import BUNDLED_DIR

    if not (BUNDLED_DIR / "config.json").exists():
        pytest.skip(f"the bundled model is not in {BUNDLED_DIR} yet (scripts/train_bundled.py builds it)")
    model = cw.load_model("bundled", device="cpu")
    tok, _ = cw.tokenize_task(model, cw.get_task("opposites", n=64, corruption="flip", seed=0),
                              need_corrupted=True, on_invalid="drop")
    assert len(tok) >= 32
    return model, tok


def _tl_circuit_metric(model, tok, circuit) -> torch.Tensor:
    from transformer_lens.tools.analysis.attribution_patching import faithfulness as tl_faithfulness

    ids = circuit.edges.nonzero().flatten().tolist()
    out = []
    for i in range(len(tok)):
        n = int(tok.last[i]) + 1  # each pair alone, unpadded
        r = tl_faithfulness(model, tok.clean[i:i + 1, :n], tok.corrupted[i:i + 1, :n],
                            answer_metric(tok.answers[i]), tl_edges(circuit.graph, ids, n))
        out.append(r.corrupt_metric + r.recovered * (r.full_metric - r.corrupt_metric))
    return torch.tensor(out, dtype=torch.float64)


def test_circuit_keeps_80_percent_of_the_logit_difference_with_10_percent_of_the_edges(bundled):
    model, tok = bundled
    E = cw.circuits.graph_of(model).n_edges
    found = find_circuit(model, tok, method="eap-ig", selection="top-n", n=int(0.10 * E))
    c = found.circuit
    assert 0 < c.n_edges <= 0.10 * E
    ours = faithfulness(model, tok, c)
    theirs = _tl_circuit_metric(model, tok, c)
    torch.testing.assert_close(theirs, ours.per_example.double(), atol=1e-4, rtol=1e-4)
    kept = float(theirs.mean()) / ours.clean_metric
    print(f"bundled: {c.n_edges}/{E} edges ({c.edge_fraction:.1%}) keep {kept:.1%} of the logit difference "
          f"(TransformerLens hooks); faithfulness {ours.faithfulness:.3f}; edges {c.edge_list()}")
    assert kept >= 0.8, (kept, c.edge_list())


def test_target_selection_reaches_0_9_with_few_edges(bundled):
    model, tok = bundled
    found = find_circuit(model, tok, method="eap-ig", selection="target", target=0.9)
    c = found.circuit
    assert c.selection["reached"] and c.selection["faithfulness"] >= 0.9
    assert c.edge_fraction <= 0.10, c.edge_fraction


def test_eap_ig_ranks_edges_like_exact_patching(bundled):
    model, tok = bundled
    ig = score_edges(model, tok, "eap-ig", steps=5)
    exact = score_edges(model, tok, "exact", direction="noise")
    # Ranking by magnitude is what selection uses; signed small edges are dominated by
    # nonlinear single-edge effects no gradient sees (see the report of issue 6).
    assert spearman(ig.scores.abs(), exact.scores.abs()) >= 0.9
    top = set(exact.ranking()[:5].tolist())
    assert top <= set(ig.ranking()[:8].tolist())
