"""Position-aware EAP-IG on the bundled model (opposites, prompts of several lengths aligned by role).

The positional scores summed over the role columns are EAP-IG's; the edges of the strongest
(edge, position) pairs are, for the most part, EAP-IG's strongest edges (measured: 19 of 20 edges
for the top 20 pairs, 38 of 40 for the top 50), and keep the clean logit difference with a small
fraction of the pairs.
"""

from __future__ import annotations

import pytest
import torch

import circuitwise as cw
from circuitwise.circuits import score_edges
from circuitwise.circuits.select import select_positional, top_edges
from circuitwise.evaluation.faithfulness import faithfulness

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def bundled():
    from circuitwise.models.bundled import BUNDLED_DIR

    if not (BUNDLED_DIR / "config.json").exists():
        pytest.skip(f"the bundled model is not in {BUNDLED_DIR} yet (scripts/train_bundled.py builds it)")
    model = cw.load_model("bundled", device="cpu")
    tok, _ = cw.tokenize_task(model, cw.get_task("opposites", n=64, corruption="flip", seed=0),
                              need_corrupted=True, on_invalid="drop")
    assert not tok.same_length and tok.roles
    return model, tok


def test_positional_edges_agree_with_eap_ig_top_edges(bundled, record_property):
    model, tok = bundled
    plain = score_edges(model, tok, "eap-ig", steps=5)
    pos = score_edges(model, tok, "eap-ig", steps=5, positions="roles")
    assert pos.positions.labels[-1] == "other" and "END" in pos.positions.labels
    torch.testing.assert_close(pos.scores, plain.scores, atol=1e-4, rtol=1e-5)
    overlaps = {}
    for n_pairs in (20, 50):
        c = select_positional(pos, n=n_pairs, model=model, tok=tok)
        mine = set(c.edges.nonzero().flatten().tolist())
        theirs = set(top_edges(plain, len(mine)).nonzero().flatten().tolist())
        overlaps[n_pairs] = (len(mine & theirs), len(mine))
        assert len(mine & theirs) >= 0.9 * len(mine)
        f = faithfulness(model, tok, c)
        assert f.faithfulness >= 0.9 and f.edge_fraction < 0.1  # of the (edge, position) pairs
    record_property("positional_vs_eap_ig_edge_overlap", overlaps)
    print(f"bundled, opposites by role: overlap (shared edges, edges) per top-n pairs {overlaps}")
