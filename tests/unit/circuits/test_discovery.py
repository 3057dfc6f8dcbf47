"""EAP-IG against exact edge patching, the registries, and their errors."""

from __future__ import annotations

from typing import get_args

import pytest
import torch

from circuitwise.circuits import METHODS, MethodName, eap, eap_ig, exact_edge_scores, score_edges
from circuitwise.errors import ConfigError, DegenerateMetricError, TaskError
from circuitwise.evaluation import spearman
from circuitwise.evaluation.faithfulness import faithfulness_of_masks


@pytest.fixture(scope="module")
def exact_small(small_model, small_tok):
    return exact_edge_scores(small_model, small_tok, direction="noise")


def test_eap_ig_correlates_with_exact_edge_patching(small_model, small_tok, exact_small):
    ig = eap_ig(small_model, small_tok, steps=5)
    rho = spearman(ig.scores, exact_small.scores)
    assert rho >= 0.9, rho


def test_eap_matches_exact_patching_in_its_direction_to_first_order(small_model, small_tok, exact_small):
    # at the clean run EAP linearises noising, at the corrupted run denoising
    assert spearman(eap(small_model, small_tok, gradient="clean").scores, exact_small.scores) >= 0.9
    den = exact_edge_scores(small_model, small_tok, direction="denoise")
    assert spearman(eap(small_model, small_tok, gradient="corrupted").scores, den.scores) >= 0.9


def test_exact_scores_are_single_edge_patches(small_model, small_tok, exact_small):
    g = exact_small.graph
    idx = int(exact_small.ranking()[0])
    keep = torch.ones(g.n_edges, dtype=torch.bool)
    keep[idx] = False
    f = faithfulness_of_masks(small_model, small_tok, keep)[0]
    assert float(exact_small.scores[idx]) == pytest.approx(f.clean_metric - f.circuit_metric, abs=1e-5)


def test_shortlist_scoring_leaves_the_rest_nan(small_model, small_tok, exact_small):
    ids = exact_small.ranking()[:5]
    part = exact_edge_scores(small_model, small_tok, edges=ids)
    torch.testing.assert_close(part.scores[ids], exact_small.scores[ids], atol=1e-6, rtol=0)
    assert int((~part.scores.isnan()).sum()) == 5


def test_batching_does_not_change_scores(small_model, small_tok):
    a = eap_ig(small_model, small_tok, steps=3, batch_size=1)
    b = eap_ig(small_model, small_tok, steps=3, batch_size=6)
    torch.testing.assert_close(a.scores, b.scores, atol=1e-5, rtol=1e-4)


def test_scores_are_labelled_and_serialisable(tiny_model, tiny_tok):
    s = score_edges(tiny_model, tiny_tok, "eap-ig", steps=2)
    lab = s.labelled()
    assert lab.axes == ("edge",) and len(lab.labels["edge"]) == s.graph.n_edges
    j = s.to_json()
    assert j["method"] == "eap-ig" and j["config"]["steps"] == 2 and len(j["scores"]) == s.graph.n_edges
    assert j["config"]["quadrature"] == "left"  # MIB's convention lands in scores.json / circuit.json
    assert s.dense().shape == (len(s.graph.senders), len(s.graph.receivers))


def test_registry_and_bad_options(tiny_model, tiny_tok):
    assert get_args(MethodName) == tuple(METHODS)
    assert {"eap", "eap-ig", "eap-ig-activations", "exact"} <= set(METHODS)
    with pytest.raises(ConfigError, match="Choose one of"):
        score_edges(tiny_model, tiny_tok, "path-patching")
    with pytest.raises(ConfigError, match="no option 'steps'.*gradient"):
        score_edges(tiny_model, tiny_tok, "eap", steps=3)
    with pytest.raises(ConfigError, match="no option 'gradient'.*steps, quadrature"):
        score_edges(tiny_model, tiny_tok, "eap-ig", gradient="clean")
    with pytest.raises(ConfigError, match="quadrature"):
        score_edges(tiny_model, tiny_tok, "eap-ig-activations", quadrature="simpson")
    with pytest.raises(ConfigError, match="gradient"):
        eap(tiny_model, tiny_tok, gradient="both")
    for bad in (0, -2, 2.5, True):
        with pytest.raises(ConfigError, match="steps"):
            eap_ig(tiny_model, tiny_tok, steps=bad)
    with pytest.raises(ConfigError, match="batch_size"):
        eap(tiny_model, tiny_tok, batch_size=0)
    with pytest.raises(ConfigError, match="direction"):
        exact_edge_scores(tiny_model, tiny_tok, direction="sideways")


def test_task_without_corrupted_prompts_is_refused(tiny_model, seed_task):
    import circuitwise as cw

    tok, _ = cw.tokenize_task(tiny_model, cw.Task("plain", (cw.Example("Ice is", " cold", " hot"),)))
    with pytest.raises(TaskError, match="corrupted"):
        eap(tiny_model, tok)


def test_identical_clean_and_corrupted_is_degenerate(tiny_model):
    import circuitwise as cw
    from circuitwise.circuits import select_circuit

    ex = cw.Example("A rock is hard, but, a sponge is", " soft", " hard", "A rock is hard, but, a sponge is")
    tok, _ = cw.tokenize_task(tiny_model, cw.Task("same", (ex,)), need_corrupted=True)
    scores = eap(tiny_model, tok)
    assert float(scores.scores.abs().max()) == 0.0
    with pytest.raises(DegenerateMetricError, match="corruption"):
        select_circuit(scores, "target", model=tiny_model, tok=tok)
