"""Edge pruning warm-started from EAP-IG's ranking: the starting log α follows the ranking, and the
planted circuit is still learned."""

from __future__ import annotations

import pytest
import torch

from circuitwise.circuits import score_edges
from circuitwise.circuits.edge_pruning import EdgePruningOptions, learned_circuit, warm_log_alpha
from circuitwise.errors import ConfigError
from tests.unit.circuits.known_circuit import PLANTED


def test_the_warm_start_spreads_log_alpha_by_rank_of_magnitude():
    opts = EdgePruningOptions(init_log_alpha=1.0, warm_spread=0.5, warm_start="eap-ig")
    scores = torch.tensor([0.1, -3.0, 2.0, 0.0, 0.1])
    la = warm_log_alpha(scores, opts)
    assert float(la.max()) == pytest.approx(1.5) and float(la.min()) == pytest.approx(0.5)
    order = torch.argsort(la, descending=True, stable=True).tolist()
    assert order == [1, 2, 0, 4, 3]  # by |score|, ties (0.1, 0.1) in index order


def test_warm_started_pruning_learns_the_planted_circuit(known_model, known_tok):
    s = score_edges(known_model, known_tok, "edge-pruning", kept=3, steps=100, warm_start="eap-ig")
    g = s.graph
    kept = {tuple(g.edge_names[i].split("->")) for i in learned_circuit(s).nonzero().flatten().tolist()}
    assert kept == PLANTED and s.config["warm_start"] == "eap-ig"


@pytest.mark.parametrize("bad", [dict(warm_start="acdc"), dict(warm_spread=-1.0), dict(warm_spread="x")])
def test_bad_warm_start_options_name_what_is_valid(bad):
    with pytest.raises(ConfigError, match="warm"):
        EdgePruningOptions(**bad)
