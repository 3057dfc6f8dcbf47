"""Each edge-score convention equals an independent computation with plain TransformerLens hooks.

The reference (tests/unit/circuits/hook_reference.py) reads senders and receivers at the bridge's
own hook points, replaces the input embedding or a layer node's output with forward hooks, and
takes gradients with backward hooks — nothing of our graph engine. Conventions: EAP at the clean
or the corrupted run, EAP-IG on the input with each quadrature, EAP-IG-activations (EAP-IG's
definition), and node scores.
"""

from __future__ import annotations

import pytest
import torch

from circuitwise.circuits import eap, eap_ig, eap_ig_sign, find_circuit, score_edges, score_nodes
from circuitwise.circuits.gradients import quadrature_points
from circuitwise.evaluation import spearman
from tests.unit.circuits import hook_reference as ref
from tests.unit.circuits.tl_reference import answer_metric, params_require_grad, receiver_name, sender_name

CONVENTIONS = [
    ("eap", {"gradient": "clean"}),
    ("eap", {"gradient": "corrupted"}),
    ("eap-ig", {"steps": 3, "quadrature": "right"}),
    ("eap-ig", {"steps": 3, "quadrature": "left"}),
    ("eap-ig", {"steps": 3, "quadrature": "midpoint"}),
    ("eap-ig", {"steps": 2, "quadrature": "trapezoid"}),
    ("eap-ig-activations", {"steps": 2, "quadrature": "right"}),
]


def reference(model, tok, method, options):
    if method == "eap":
        return ref.ig_inputs(model, tok, [1.0 if options["gradient"] == "clean" else 0.0], [1.0])
    alphas, weights = quadrature_points(options["quadrature"], options["steps"])
    fn = ref.ig_inputs if method == "eap-ig" else ref.ig_activations
    return fn(model, tok, alphas, weights)


@pytest.mark.parametrize(("method", "options"), CONVENTIONS, ids=lambda x: x if isinstance(x, str) else
                         "-".join(map(str, x.values())))
def test_each_convention_equals_plain_transformerlens_hooks(tiny_model, tiny_tok, method, options):
    ours = score_edges(tiny_model, tiny_tok, method, batch_size=4, **options)  # two batches: 4 + 2
    theirs = reference(tiny_model, tiny_tok, method, options)
    torch.testing.assert_close(ref.on_tl_receivers(tiny_model, ours.scores), theirs, atol=1e-6, rtol=1e-4)
    assert theirs.abs().max() > 1e-3  # not trivially zero
    assert {k: ours.config[k] for k in options} == options  # the convention is recorded


def test_eap_at_the_clean_run_is_transformerlens_attribution_with_the_runs_swapped(tiny_model, tiny_tok):
    """TL's ``attribution_patch`` takes ``(clean − corr) · ∇m`` at its corrupted argument: given the
    runs the other way round it is ``(corr − clean) · ∇m`` at the clean run, minus our clean EAP."""
    from transformer_lens.tools.analysis.attribution_patching import EdgeAttributionConfig, attribution_patch

    ours = eap(tiny_model, tiny_tok, gradient="clean")
    g = ours.graph
    swapped = torch.zeros(g.n_edges, dtype=torch.float64)
    with params_require_grad(tiny_model):
        for i in range(len(tiny_tok)):
            res = attribution_patch(tiny_model, tiny_tok.corrupted[i:i + 1], tiny_tok.clean[i:i + 1],
                                    answer_metric(tiny_tok.answers[i]), EdgeAttributionConfig(granularity="edge"))
            for (w, r), v in res.edge_scores.items():
                swapped[g.edge_id(sender_name(w), receiver_name(r))] += v
    torch.testing.assert_close(ours.scores.double(), -swapped / len(tiny_tok), atol=1e-6, rtol=1e-4)


def test_one_step_quadratures_are_eap_at_each_end(tiny_model, tiny_tok):
    right = eap_ig(tiny_model, tiny_tok, steps=1, quadrature="right")
    left = eap_ig(tiny_model, tiny_tok, steps=1, quadrature="left")
    torch.testing.assert_close(right.scores, eap(tiny_model, tiny_tok, gradient="clean").scores, atol=1e-7, rtol=0)
    torch.testing.assert_close(left.scores, eap(tiny_model, tiny_tok, gradient="corrupted").scores, atol=1e-7, rtol=0)
    assert float((right.scores - left.scores).abs().max()) > 1e-4  # the two ends differ on this model


def test_defaults_are_the_eap_ig_mib_conventions_and_land_in_circuit_json(tiny_model, tiny_tok):
    found = find_circuit(tiny_model, tiny_tok, method="eap-ig", selection="top-n", n=5, prune=False)
    mc = found.circuit.to_json()["selection"]["method_config"]
    assert (mc["method"], mc["steps"], mc["quadrature"], mc["interpolation"]) == ("eap-ig", 5, "left", "input-embedding")
    assert eap(tiny_model, tiny_tok).config == {"gradient": "clean"}


def test_eap_ig_sign_maps_our_scores_onto_eap_igs():
    """EAP-IG multiplies (corrupted − clean) by ∇ of MIB's loss, −logit difference: the same sign as
    ours, (clean − corrupted) · ∇ logit difference; with EAP-IG's raw metric, the opposite."""
    assert eap_ig_sign() == 1 and eap_ig_sign({"gradient": "corrupted"}) == 1
    assert eap_ig_sign(loss_metric=False) == -1


@pytest.mark.parametrize("method", ["eap", "exact"])
def test_node_scores_equal_transformerlens_hooks(tiny_model, tiny_tok, method):
    nodes = score_nodes(tiny_model, tiny_tok, method)
    theirs = ref.node_gradients(tiny_model, tiny_tok) if method == "eap" else ref.node_noising(tiny_model, tiny_tok)
    assert nodes.names[:2] == ["input", "L0H0"] and nodes.config["granularity"] == "node"
    torch.testing.assert_close(nodes.scores.double(), theirs, atol=1e-6, rtol=1e-4)
    assert theirs.abs().max() > 1e-3


def test_gradient_node_scores_rank_like_exact_node_patching(small_model, small_tok):
    ig = score_nodes(small_model, small_tok, "eap-ig", steps=5)
    exact = score_nodes(small_model, small_tok, "exact")
    assert spearman(ig.scores, exact.scores) >= 0.9
    assert len(ig.to_json()["scores"]) == len(ig.graph.senders)


@pytest.mark.parametrize("family", ["pythia", "llama"])
def test_eap_ig_activations_equals_the_hook_reference_on_other_families(family_model_for, family, seed_task):
    """Parallel attention + MLP with partial rotary positions (Pythia); grouped-query attention,
    RMSNorm and a gated MLP (Llama; TL's k/v hooks are per key/value head, so our query heads'
    receivers are compared summed over each group). Not every family can be checked through
    TransformerLens's hooks (GPT-Neo has no per-head result hook; on Phi and GPT-J, one norm shared
    by attention and MLP, ``hook_mlp_in`` is off the MLP's gradient path); test_families.py checks
    our engine on all of them through autograd of the masked forward."""
    import circuitwise as cw

    model = family_model_for(family)
    tok, _ = cw.tokenize_task(model, seed_task.subset((1, 2, 5)), need_corrupted=True)
    ours = score_edges(model, tok, "eap-ig-activations", steps=2, batch_size=2)
    alphas, weights = quadrature_points("right", 2)
    theirs = ref.ig_activations(model, tok, alphas, weights)
    torch.testing.assert_close(ref.on_tl_receivers(model, ours.scores), theirs, atol=1e-5, rtol=1e-3)
    assert theirs.abs().max() > 1e-4
