"""Bootstrapped selection: edges ranked by their selection frequency over block resamples of the prompts."""

from __future__ import annotations

import pytest
import torch

import circuitwise as cw
from circuitwise.circuits import score_edges
from circuitwise.circuits.bootstrap import BootstrapOptions, block_resamples, bootstrap_scores, group_scores
from circuitwise.errors import ConfigError


def test_frequency_first_then_magnitude_and_the_base_sign():
    # Edges 0 and 3 (edge 0 negated) always top; edge 1 varies around 0 and competes with the small
    # constant edge 2 for the third place; edge 4 is never chosen.
    S = torch.tensor([[5.0, 1.0, 0.1, -5.0, 0.0], [5.0, -3.0, 0.1, -5.0, 0.0], [5.0, 4.0, 0.1, -5.0, 0.0],
                      [5.0, -4.0, 0.1, -5.0, 0.0]])
    sizes = torch.ones(4, dtype=torch.float64)
    score, freq, mean = bootstrap_scores(S, sizes, resamples=400, top=3, seed=0)
    assert freq[0] == 1 and freq[3] == 1 and freq[4] == 0
    assert 0 < freq[1] < 1 and 0 < freq[2] < 1
    torch.testing.assert_close(freq[1] + freq[2], torch.tensor(1.0, dtype=torch.float64))
    torch.testing.assert_close(mean, S.double().mean(0))
    assert score[0] > 0 > score[3]  # the base method's sign
    assert score[0] > abs(score[1]) and score[0] > score[2] > 0 and score[4] == 0
    # The tie-breaker never outweighs one resample: |score| − freq < 1/resamples.
    assert float((score.abs() - freq).max()) < 1 / 400
    again, _, _ = bootstrap_scores(S, sizes, resamples=400, top=3, seed=0)
    assert torch.equal(score, again)  # seeded


def test_one_block_is_the_base_ranking_at_its_top():
    S = torch.tensor([[3.0, -2.0, 1.0, 0.5]])
    score, freq, _ = bootstrap_scores(S, torch.ones(1, dtype=torch.float64), resamples=10, top=2, seed=3)
    assert freq.tolist() == [1.0, 1.0, 0.0, 0.0]
    assert torch.argsort(score.abs(), descending=True).tolist() == [0, 1, 2, 3]


def test_block_resamples_draw_every_block_count_with_replacement():
    counts = block_resamples(5, 1000, seed=1)
    assert counts.shape == (1000, 5) and bool((counts.sum(1) == 5).all())
    torch.testing.assert_close(counts.mean(0), torch.ones(5, dtype=torch.float64), atol=0.1, rtol=0)


@pytest.mark.parametrize("base", ["eap", "relp"])
def test_the_blocks_average_to_the_base_methods_scores_and_the_method_runs(tiny_model, base):
    tok, _ = cw.tokenize_task(tiny_model, cw.get_task("opposites-seed"), need_corrupted=True)
    whole = score_edges(tiny_model, tok, base).scores.double()
    S, sizes = group_scores(tiny_model, tok, base, None, 3)
    torch.testing.assert_close((sizes @ S.double()) / sizes.sum(), whole, atol=1e-5, rtol=1e-5)
    s = score_edges(tiny_model, tok, "bootstrap", base=base, groups=3, resamples=50, top=5)
    assert s.config["base"] == base and s.config["top"] == 5
    assert float(s.scores.abs().max()) <= 1 + 1 / 51 + 1e-6
    # The edges counted in every resample lead, in the base method's sign.
    lead = s.ranking("abs")[0]
    assert float(s.scores[lead].abs()) >= 1.0 and torch.sign(s.scores[lead]) == torch.sign(whole[lead].float())


@pytest.mark.parametrize("given, said", [
    ({"base": "exact"}, "base must be one of"), ({"resamples": 0}, "resamples is a positive"),
    ({"top": 0}, "top is a positive"),
])
def test_bad_options_say_the_fix(given, said):
    with pytest.raises(ConfigError, match=said):
        BootstrapOptions(**given)
