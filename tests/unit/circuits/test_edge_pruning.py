"""Edge pruning: the masked forward's endpoints, the planted circuits, seeds, budgets and bad options."""

from __future__ import annotations

from typing import get_args

import pytest
import torch

import circuitwise as cw
from circuitwise.circuits import METHODS, score_edges, score_nodes, select_circuit
from circuitwise.circuits.methods import MethodName
from circuitwise.circuits.edge_pruning import (
    EdgePruningOptions, HardConcrete, edge_pruning, learned_circuit, setup_pruning, task_loss,
)
from circuitwise.circuits.patch import patched_metrics
from circuitwise.circuits.prune import prune_dangling
from circuitwise.circuits.scores import EdgeScores, prepare
from circuitwise.errors import ConfigError
from circuitwise.evaluation import faithfulness
from circuitwise.evaluation.faithfulness import faithfulness_of_masks
from tests.unit.circuits import known_circuit, known_circuit_llama


def _edges(graph, mask) -> set[tuple[str, str]]:
    return {tuple(graph.edge_names[i].split("->")) for i in mask.nonzero().flatten().tolist()}


def _endpoints(model, tok, granularity: str, ablation: str = "corrupted") -> None:
    """All masks 1 give the full model's metric, all 0 the fully patched one, through the gradient path."""
    prep = prepare(model, tok, batch_size=len(tok))
    setup = setup_pruning(prep, granularity=granularity, ablation=ablation)
    M = setup.n_masks
    none = patched_metrics(prep, torch.zeros(1, prep.gm.graph.n_edges, dtype=torch.bool), ablation=ablation)
    for value, want in ((1.0, none.clean), (0.0, none.patched[0])):
        z = torch.full((M,), value, requires_grad=True)
        with torch.enable_grad():
            logits = setup.answer_logits(0, z)
            loss = task_loss(setup, "metric", logits, setup.batches[0].full)
            (grad,) = torch.autograd.grad(loss + logits.sum(), z)
        torch.testing.assert_close(prep.metric(logits.detach()).float(), want, atol=1e-4, rtol=0)
        assert grad.abs().max() > 0  # the masks reach the metric
    torch.testing.assert_close(none.clean, prep.metric(setup.batches[0].full).float(), atol=1e-5, rtol=0)
    if ablation == "corrupted":
        assert setup.corrupted_metric == pytest.approx(float(none.corrupted.mean()), abs=1e-4)


@pytest.mark.parametrize("granularity", ["edge", "node"])
@pytest.mark.parametrize("ablation", ["corrupted", "mean"])
def test_all_masks_one_is_the_full_model_and_all_zero_the_ablated_one(known_model, known_tok, granularity, ablation):
    _endpoints(known_model, known_tok, granularity, ablation)


def test_the_mask_gradient_is_the_derivative_of_the_masked_metric(known_model, known_tok):
    prep = prepare(known_model, known_tok, batch_size=len(known_tok))
    setup = setup_pruning(prep)
    z0 = torch.rand(setup.n_masks, generator=torch.Generator().manual_seed(1), dtype=torch.float64).float()
    z = z0.clone().requires_grad_(True)
    with torch.enable_grad():
        (grad,) = torch.autograd.grad(prep.metric(setup.answer_logits(0, z)).mean(), z)
    g = prep.gm.graph
    for e in (g.edge_id("input", "L0H0.v"), g.edge_id("L0H0", "L1H0.v"), g.edge_id("L1H0", "logits")):
        h = 1e-2
        up, down = z0.clone(), z0.clone()
        up[e] += h
        down[e] -= h
        with torch.no_grad():
            m_up, m_down = (prep.metric(setup.answer_logits(0, v)).mean() for v in (up, down))
        fd = (m_up - m_down) / (2 * h)
        assert float(grad[e]) == pytest.approx(float(fd), rel=2e-2, abs=1e-3)
        assert abs(float(grad[e])) > 0.1


def test_the_hard_concrete_puts_mass_on_zero_and_one_and_its_l0_is_the_chance_of_nonzero():
    hc = HardConcrete(2 / 3, -0.1, 1.1)
    u = torch.rand(200_000, generator=torch.Generator().manual_seed(0), dtype=torch.float64).clamp(1e-6, 1 - 1e-6)
    for la in (-2.0, 0.0, 1.5):
        z = hc.sample(torch.tensor(la, dtype=torch.float64), u)
        assert 0 <= float(z.min()) and float(z.max()) <= 1
        assert (z == 0).any() and (z == 1).any()
        assert float((z > 0).double().mean()) == pytest.approx(float(hc.p_nonzero(torch.tensor(la))), abs=5e-3)
    assert float(hc.deterministic(torch.tensor(0.0))) == pytest.approx(0.5)


def _recovers(model, tok, planted, **opts) -> None:
    """Recall and precision 1: asked to keep as many edges as were planted, the learned circuit is
    the planted one, faithful; the ordinary target selection on its scores too."""
    scores = edge_pruning(model, tok, EdgePruningOptions(kept=len(planted), **opts))
    g = scores.graph
    learned = learned_circuit(scores)
    assert _edges(g, learned) == planted
    assert torch.equal(prune_dangling(g, learned), learned)  # a connected circuit, nothing dangling
    assert faithfulness_of_masks(model, tok, learned)[0].faithfulness >= 0.9
    c = select_circuit(scores, "target", model=model, tok=tok, target=0.9)
    assert {(s, r) for s, r, _ in c.edge_list()} == planted
    assert faithfulness(model, tok, c).faithfulness >= 0.9


@pytest.mark.parametrize("kept", [2, 5])
def test_the_learned_circuit_is_the_target_number_of_largest_masks(known_model, known_tok, kept):
    """Exactly ``kept`` masks, those with the largest scores, however many ended with log α > 0."""
    s = edge_pruning(known_model, known_tok, EdgePruningOptions(kept=kept, steps=40))
    inside = learned_circuit(s)
    assert int(inside.sum()) == len(s.config["circuit"]) == kept
    assert s.scores[inside].min() >= s.scores[~inside].max()
    assert 0 <= s.config["positive_log_alpha"] <= s.graph.n_edges


def test_edge_pruning_recovers_the_planted_gpt2_circuit(known_model, known_tok):
    _recovers(known_model, known_tok, known_circuit.PLANTED, steps=300)


def test_edge_pruning_recovers_the_planted_llama_circuit(tmp_path_factory):
    model = cw.load_model(str(known_circuit_llama.make_known_llama_checkpoint(tmp_path_factory.mktemp("ep-llama"))),
                          device="cpu")
    tok = cw.tokenize_task(model, known_circuit_llama.known_circuit_task(), need_corrupted=True)[0]
    _recovers(model, tok, known_circuit_llama.PLANTED, steps=300)


def test_node_granularity_keeps_the_planted_heads_through_the_registry(known_model, known_tok):
    nodes = score_nodes(known_model, known_tok, "edge-pruning", kept=3, steps=300)
    assert nodes.method == "edge-pruning" and nodes.config["granularity"] == "node"
    assert {n for n, _ in nodes.top(3)} == set(nodes.config["circuit"]) == {"input", "L0H0", "L1H0"}
    edges = EdgeScores(nodes.graph, nodes.scores[nodes.graph.edge_index[0]], "edge-pruning", config=nodes.config)
    c = prune_dangling(nodes.graph, learned_circuit(edges))
    kept = {n for e in _edges(nodes.graph, c) for n in (e[0], e[1].split(".")[0])}
    assert kept == {"input", "L0H0", "L1H0", "logits"}
    assert faithfulness_of_masks(known_model, known_tok, c)[0].faithfulness >= 0.9


def test_the_registry_entry_passes_options_and_rejects_unknown_ones(known_model, known_tok):
    assert "edge-pruning" in METHODS and "edge-pruning" in get_args(MethodName)
    s = score_edges(known_model, known_tok, "edge-pruning", steps=3, stretch=[-0.2, 1.2])
    assert s.config["steps_done"] == 3 and s.config["stretch"] == [-0.2, 1.2]
    with pytest.raises(ConfigError, match="no option 'beta'"):
        score_edges(known_model, known_tok, "edge-pruning", beta=0.5)


def test_a_seeded_rerun_gives_identical_masks_and_another_seed_other_ones(known_model, known_tok):
    opts = EdgePruningOptions(steps=25, seed=3)
    a, b = edge_pruning(known_model, known_tok, opts), edge_pruning(known_model, known_tok, opts)
    assert torch.equal(a.scores, b.scores)
    c = edge_pruning(known_model, known_tok, EdgePruningOptions(steps=25, seed=4))
    assert not torch.equal(a.scores, c.scores)


def test_the_step_and_time_budgets_are_respected(known_model, known_tok):
    calls = []
    s = edge_pruning(known_model, known_tok, EdgePruningOptions(steps=7), batch_size=5,
                     progress=lambda done, total, what: calls.append((done, total, what)))
    assert [c[0] for c in calls] == list(range(1, 8)) and {c[1] for c in calls} == {7}
    assert s.config["steps_done"] == 7 and s.config["stopped"] == "steps"
    # A time budget that is over before the first step ends: exactly one step runs.
    s = edge_pruning(known_model, known_tok, EdgePruningOptions(steps=50, max_seconds=1e-9))
    assert s.config["steps_done"] == 1 and s.config["stopped"] == "seconds"


def test_the_kl_objective_runs_and_scores_are_probabilities(known_model, known_tok):
    s = edge_pruning(known_model, known_tok, EdgePruningOptions(steps=20, objective="kl"))
    assert s.method == "edge-pruning" and s.scores.shape == (s.graph.n_edges,)
    assert float(s.scores.min()) >= 0 and float(s.scores.max()) <= 1
    assert s.config["objective"] == "kl" and s.clean_metric > s.corrupted_metric


@pytest.mark.parametrize("bad", [
    {"steps": 0}, {"steps": 2.5}, {"seed": -1}, {"sparsity": 1.0}, {"sparsity": -0.1}, {"kept": 0},
    {"sparsity": 0.9, "kept": 3}, {"warmup": 1.5}, {"lr": 0.0}, {"lambda_lr": -1.0}, {"temperature": 0},
    {"stretch": (0.0, 1.1)}, {"stretch": (-0.1, 1.0)}, {"stretch": (-0.1,)}, {"stretch": "wide"}, {"objective": "mse"},
    {"granularity": "head"}, {"ablation": "zero"}, {"max_seconds": 0}, {"init_log_alpha": float("nan")},
])
def test_bad_options_are_config_errors(bad):
    with pytest.raises(ConfigError):
        EdgePruningOptions(**bad)


def test_keeping_more_masks_than_there_are_is_an_error_before_training(known_model, known_tok):
    calls = []
    with pytest.raises(ConfigError, match="only 11"):
        edge_pruning(known_model, known_tok, EdgePruningOptions(granularity="node", kept=12),
                     progress=lambda *a: calls.append(a))
    assert calls == []
    with pytest.raises(ConfigError):
        edge_pruning(known_model, known_tok, {"steps": 3})  # type: ignore[arg-type]


@pytest.mark.parametrize("family", ["pythia", "gemma2"])
def test_edge_pruning_runs_on_other_families_with_the_same_endpoints(family_model_for, family):
    model = family_model_for(family)
    tok, _ = cw.tokenize_task(model, cw.get_task("opposites-seed").subset((1, 2, 5)), need_corrupted=True)
    for granularity in ("edge", "node"):
        _endpoints(model, tok, granularity)
    s = edge_pruning(model, tok, EdgePruningOptions(steps=4, granularity="node"), batch_size=2)
    assert s.config["steps_done"] == 4 and torch.isfinite(s.scores).all()


@pytest.mark.integration
def test_on_the_bundled_model_edge_pruning_is_faithful_with_no_more_edges_than_eap_ig():
    """Issue 13's check: at EAP-IG's circuit size (the fewest top EAP-IG edges reaching
    faithfulness 0.9), edge pruning's own circuit reaches 0.9 too."""
    from circuitwise.circuits import score_edges
    from circuitwise.models.bundled import BUNDLED_DIR

    if not (BUNDLED_DIR / "config.json").exists():
        pytest.skip(f"the bundled model is not in {BUNDLED_DIR}")
    model = cw.load_model("bundled", device="cpu")
    tok, _ = cw.tokenize_task(model, cw.get_task("opposites", n=64, corruption="flip", seed=0),
                              need_corrupted=True, on_invalid="drop")
    ig = select_circuit(score_edges(model, tok, "eap-ig"), "target", model=model, tok=tok, target=0.9)
    assert ig.selection["reached"]
    scores = edge_pruning(model, tok, EdgePruningOptions(kept=ig.n_edges))  # the default steps
    ours = prune_dangling(scores.graph, learned_circuit(scores))
    f = faithfulness_of_masks(model, tok, ours)[0]
    print(f"bundled opposites, {len(tok)} prompts: EAP-IG {ig.n_edges} edges (f {ig.selection['faithfulness']:.3f}); "
          f"edge pruning {int(ours.sum())} edges (f {f.faithfulness:.3f}, {scores.seconds:.1f} s)")
    assert 0 < int(ours.sum()) <= ig.n_edges
    assert f.faithfulness >= 0.9


def test_replacements_recomputed_each_step_give_the_cached_result(known_model, known_tok, monkeypatch):
    import circuitwise.circuits.edge_pruning as ep

    cached = edge_pruning(known_model, known_tok, EdgePruningOptions(steps=6), batch_size=5)
    monkeypatch.setattr(ep, "_CACHE_BYTES", 0)
    assert setup_pruning(prepare(known_model, known_tok, batch_size=5)).batches[0].rep is None
    again = edge_pruning(known_model, known_tok, EdgePruningOptions(steps=6), batch_size=5)
    torch.testing.assert_close(again.scores, cached.scores, atol=1e-6, rtol=0)


def test_a_run_config_passes_edge_pruning_options_but_not_ig_steps():
    from circuitwise.config import RunConfig

    opts = RunConfig(task="opposites", circuit="edge-pruning", circuit_options={"kept": 4, "steps": 50}).method_options()
    assert isinstance(opts, EdgePruningOptions) and (opts.kept, opts.steps) == (4, 50)
    with pytest.raises(ConfigError, match="integrated-gradient"):  # 0.1's ig_steps: 5 must not train 5 steps
        RunConfig(task="opposites", circuit="edge-pruning", ig_steps=5)
