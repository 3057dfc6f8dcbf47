"""Position-aware (PEAP) edges: scores per (edge, position) and circuits of (edge, position) pairs.

Invariants: the positional scores summed over positions are EAP's / EAP-IG's; with every position
kept a positional circuit is its position-agnostic circuit; all kept is the clean run, none the
corrupted one. Reference: TransformerLens's position-resolved edge attribution and faithfulness.
"""

from __future__ import annotations

import pytest
import torch
from transformer_lens.tools.analysis.attribution_patching import EdgeAttributionConfig, Node, attribution_patch
from transformer_lens.tools.analysis.attribution_patching import faithfulness as tl_faithfulness

import circuitwise as cw
from circuitwise.circuits import graph_of, score_edges
from circuitwise.circuits.positional import OTHER, PositionalEdgeScores, all_positions, position_spec
from circuitwise.circuits.select import select_positional
from circuitwise.errors import ConfigError, TaskError
from circuitwise.evaluation.faithfulness import faithfulness_of_masks, positional_faithfulness_of_masks
from tests.unit.circuits.tl_reference import answer_metric, params_require_grad, receiver_name, sender_name


def roles_task(model, sizes=(1, 2), letters=("A", "B", "C", "D")):
    """Prompts of two lengths (" the X and ... went to" style) with roles S1, S2 and END."""
    examples = []
    for i, n_fill in enumerate(sizes * 3):
        a, b = letters[i % 4], letters[(i + 1) % 4]
        fill = " and then" * n_fill
        clean = f" When {a}{fill} met {b}, {b} gave"
        corrupted = f" When {b}{fill} met {b}, {b} gave"
        roles = {"S1": clean.index(f" {a}") + 1, "S2": clean.index(f" met {b}") + 5,
                 "END": clean.rindex(" gave") + 1}
        examples.append(cw.Example(clean=clean, correct=f" {a}", incorrect=f" {b}", corrupted=corrupted, roles=roles))
    return cw.tokenize_task(model, cw.Task("roles", tuple(examples)), need_corrupted=True)[0]


@pytest.fixture(scope="module")
def roles_tok(tiny_model):
    tok = roles_task(tiny_model)
    assert not tok.same_length  # the point: positions aligned by role, not by index
    return tok


# -- scores ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("method", "opts"), [("eap", {"gradient": "clean"}), ("eap", {"gradient": "corrupted"}),
                                              ("eap-ig", {"steps": 3})])
def test_positional_scores_sum_to_the_position_agnostic_scores(tiny_model, tiny_tok, method, opts):
    plain = score_edges(tiny_model, tiny_tok, method, **opts, batch_size=4)
    pos = score_edges(tiny_model, tiny_tok, method, **opts, positions="tokens", batch_size=4)
    assert isinstance(pos, PositionalEdgeScores)
    assert pos.by_position.shape == (plain.graph.n_edges, tiny_tok.clean.shape[1])
    torch.testing.assert_close(pos.by_position.double().sum(-1), plain.scores.double(), atol=2e-6, rtol=1e-5)
    torch.testing.assert_close(pos.scores, plain.scores, atol=2e-6, rtol=1e-5)
    assert pos.by_position.abs().max() > 1e-3
    assert (pos.clean_metric, pos.corrupted_metric) == pytest.approx((plain.clean_metric, plain.corrupted_metric))
    assert pos.config["positions"] == "tokens" and "positions" not in plain.config


def test_role_columns_sum_to_eap_ig_on_prompts_of_different_lengths(tiny_model, roles_tok):
    plain = score_edges(tiny_model, roles_tok, "eap-ig", steps=2, batch_size=4)
    pos = score_edges(tiny_model, roles_tok, "eap-ig", steps=2, positions="roles", batch_size=4)
    assert pos.positions.labels == ("S1", "S2", "END", OTHER)  # reading order, then the rest
    torch.testing.assert_close(pos.by_position.double().sum(-1), plain.scores.double(), atol=2e-6, rtol=1e-5)
    g = pos.graph
    # The logits receiver reads each prompt's last token, which is the END role.
    logit_edges = [i for i, n in enumerate(g.edge_names) if n.endswith("->logits")]
    assert pos.by_position[logit_edges][:, [0, 1, 3]].abs().max() == 0
    assert pos.by_position[logit_edges][:, 2].abs().max() > 1e-4


def test_positional_eap_equals_transformerlens_position_resolved_edges(tiny_model, tiny_tok):
    ours = score_edges(tiny_model, tiny_tok, "eap", gradient="corrupted", positions="tokens", batch_size=4)
    g = ours.graph
    ref = torch.zeros(g.n_edges, tiny_tok.clean.shape[1], dtype=torch.float64)
    with params_require_grad(tiny_model):
        for i in range(len(tiny_tok)):
            res = attribution_patch(tiny_model, tiny_tok.clean[i:i + 1], tiny_tok.corrupted[i:i + 1],
                                    answer_metric(tiny_tok.answers[i]), EdgeAttributionConfig(granularity="edge"))
            for (w, r), v in res.edge_scores.items():
                assert w.position == r.position  # TransformerLens's edges, like ours, join one position
                ref[g.edge_id(sender_name(w), receiver_name(r)), w.position] += v
    ref /= len(tiny_tok)
    torch.testing.assert_close(ours.by_position.double(), ref, atol=1e-6, rtol=1e-4)


def test_positions_need_aligned_prompts(tiny_model, tiny_tok, roles_tok):
    with pytest.raises(TaskError, match="defines none"):
        score_edges(tiny_model, tiny_tok, "eap", positions="roles")
    with pytest.raises(TaskError, match="one token length"):
        score_edges(tiny_model, roles_tok, "eap", positions="tokens")
    with pytest.raises(ConfigError, match="positions must be one of"):
        score_edges(tiny_model, tiny_tok, "eap-ig", positions="everywhere")


def test_two_roles_on_one_token_are_refused(tiny_model):
    ex = cw.Example(clean=" When A met B, B gave", correct=" A", incorrect=" B",
                    corrupted=" When B met B, B gave", roles={"S1": 6, "X": 6, "END": 17})
    tok = cw.tokenize_task(tiny_model, cw.Task("clash", (ex,)), need_corrupted=True)[0]
    with pytest.raises(TaskError, match="two roles on one token"):
        position_spec(tok, "roles")


# -- circuits of (edge, position) pairs -----------------------------------------------------------


def test_all_kept_is_clean_and_none_kept_is_corrupted(tiny_model, roles_tok):
    spec = position_spec(roles_tok, "roles")
    E, C = graph_of(tiny_model).n_edges, len(spec.labels)
    keep = torch.stack([torch.ones(E, C, dtype=torch.bool), torch.zeros(E, C, dtype=torch.bool)])
    full, empty = positional_faithfulness_of_masks(tiny_model, roles_tok, keep, spec, batch_size=4)
    torch.testing.assert_close(full.per_example, full.clean_per_example, atol=1e-5, rtol=0)
    torch.testing.assert_close(empty.per_example, empty.corrupted_per_example, atol=1e-5, rtol=0)
    assert full.faithfulness == pytest.approx(1.0, abs=1e-5) and empty.faithfulness == pytest.approx(0.0, abs=1e-5)
    assert full.total_edges == E * C


@pytest.mark.parametrize("tok_name", ["tiny_tok", "roles_tok"])
def test_every_position_kept_is_the_position_agnostic_circuit(tiny_model, tok_name, request):
    tok = request.getfixturevalue(tok_name)
    spec = position_spec(tok, "roles" if tok.roles else "tokens")
    g = graph_of(tiny_model)
    gen = torch.Generator().manual_seed(1)
    masks = torch.rand(3, g.n_edges, generator=gen) < torch.tensor([[0.05], [0.3], [0.8]])
    plain = faithfulness_of_masks(tiny_model, tok, masks, batch_size=4)
    pos = positional_faithfulness_of_masks(tiny_model, tok, torch.stack([all_positions(m, spec) for m in masks]),
                                           spec, batch_size=4)
    for a, b in zip(plain, pos, strict=True):
        torch.testing.assert_close(b.per_example, a.per_example, atol=1e-5, rtol=0)
        assert b.faithfulness == pytest.approx(a.faithfulness, abs=1e-5)


def test_positional_faithfulness_equals_transformerlens(tiny_model, tiny_tok):
    g = graph_of(tiny_model)
    P = tiny_tok.clean.shape[1]
    spec = position_spec(tiny_tok, "tokens")
    gen = torch.Generator().manual_seed(3)
    keep = torch.rand(g.n_edges, P, generator=gen) < 0.4
    ours = positional_faithfulness_of_masks(tiny_model, tiny_tok, keep, spec)[0]
    s_idx, r_idx = g.edge_index
    pairs = []
    for e, p in keep.nonzero().tolist():
        snd = g.senders[int(s_idx[e])].tl_node()
        rec = g.receivers[int(r_idx[e])].tl_node(g.n_layers)
        pairs.append((Node(position=p, **snd), Node(position=p, **rec)))
    for i in range(2):
        ref = tl_faithfulness(tiny_model, tiny_tok.clean[i:i + 1], tiny_tok.corrupted[i:i + 1],
                              answer_metric(tiny_tok.answers[i]), pairs)
        tl_metric = ref.corrupt_metric + ref.recovered * (ref.full_metric - ref.corrupt_metric)
        assert float(ours.per_example[i]) == pytest.approx(tl_metric, abs=1e-5)
    assert 0 < ours.n_edges < ours.total_edges  # neither trivial set


def test_select_positional_keeps_the_strongest_pairs(tiny_model, tiny_tok):
    pos = score_edges(tiny_model, tiny_tok, "eap", positions="tokens", batch_size=4)
    c = select_positional(pos, n=7)
    keep = c.pair_mask()
    assert int(keep.sum()) == 7 and c.positional
    assert pos.by_position.abs()[keep].min() >= pos.by_position.abs()[~keep].max()
    assert {(e, p) for e, p, _ in pos.top_pairs(7)} == set(c.position_pairs())
    assert torch.equal(c.edges, keep.any(-1))


@pytest.mark.parametrize("kv_positions", ["key", "key-query"])
def test_score_buffers_that_do_not_fit_are_refused_before_any_work(tiny_model, tiny_tok, monkeypatch, kv_positions):
    """The buffers are planned from the graph's sizes and the columns: a budget that holds the model and one
    prompt's pass but not them is refused, with the fixes, before the model runs."""
    from circuitwise.circuits import positional
    from circuitwise.errors import MemoryBudgetError
    from circuitwise.models import parallel
    from circuitwise.models.memory import Shapes, estimate

    g = graph_of(tiny_model)
    C = len(position_spec(tiny_tok, "tokens").labels)
    per_copy = len(g.senders) * len(g.receivers) * C * 4
    if kv_positions == "key-query":
        per_copy += len(g.senders) * g.n_layers * 2 * g.n_heads * C * C * 4
    base = estimate("edges", Shapes.from_model(tiny_model), int(tiny_tok.clean.shape[1]), 1, tiny_model.W_E.device)
    monkeypatch.setattr(tiny_model, "circuitwise_max_memory", base + per_copy * (parallel.WORKERS + 2) - 1,
                        raising=False)

    def no_work(*_a, **_k):
        raise AssertionError("the scoring pass started")

    monkeypatch.setattr(positional, "gradient_sums", no_work)
    opts = {"positions": "tokens", "kv_positions": kv_positions}
    fixes = "positions=roles.*" + ("kv_positions=key" if kv_positions == "key-query" else "shorter prompts")
    with pytest.raises(MemoryBudgetError, match=fixes):
        score_edges(tiny_model, tiny_tok, "eap", opts)
    monkeypatch.setattr(tiny_model, "circuitwise_max_memory", base + per_copy * (parallel.WORKERS + 2), raising=False)
    positional.check_column_memory(tiny_model, tiny_tok, position_spec(tiny_tok, "tokens"),
                                   key_query=kv_positions == "key-query")  # exactly enough: accepted


@pytest.mark.parametrize("command", [["run", "opposites"], ["circuit", "opposites"],
                                     ["compare", "opposites", "--model-b", "bundled-llama"]])
def test_positions_the_prompts_cannot_line_up_are_refused_before_any_stage(tmp_path, monkeypatch, command):
    """`-O positions=tokens` on a task of mixed lengths is the method's to refuse (circuits.registry
    check_prompts); every runner asks it as it plans, so no stage runs first (run used to refuse it after
    baseline, DLA and patching)."""
    import importlib

    import circuitwise.pipeline as pipeline
    from tests.unit.cli.conftest import invoke

    compare_run = importlib.import_module("circuitwise.compare.run")  # the package exports a function `run`

    def no_work(*_a, **_k):
        raise AssertionError("a stage ran")

    for mod, name in ((pipeline, "measure_baseline"), (pipeline, "study_circuit"), (compare_run, "measure_baseline")):
        monkeypatch.setattr(mod, name, no_work)
    out = tmp_path / "o"
    r = invoke(*command, "--model", "bundled", "--n", "8", "--circuit", "eap", "-O", "positions=tokens",
               "--out", out)
    assert r.exit_code != 0 and "one token length" in r.output and "positions=roles" in r.output, r.output
    assert "a stage ran" not in r.output and not out.exists()
