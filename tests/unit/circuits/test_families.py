"""Circuit discovery on every family: the graph forward, EAP and faithfulness against TransformerLens.

One 2-layer random checkpoint per family (tests/families.py: grouped keys, sliding windows,
partial rotary, post-norms, soft-caps, randomised norms). TransformerLens's graph is per position;
our edge is its edge at every position, and with grouped-query attention its ``k_input`` /
``v_input`` nodes are per query head, as our ungrouped receivers are.
"""

from __future__ import annotations

import pytest
import torch

import circuitwise as cw
from circuitwise.circuits import eap, graph_of
from circuitwise.circuits.forward import check_against_bridge, graph_model, run_graph
from circuitwise.evaluation.faithfulness import faithfulness_of_masks
from tests.unit.circuits.tl_reference import answer_metric, params_require_grad, receiver_name, sender_name, tl_edges

ATOL = 1e-4


@pytest.fixture(scope="module")
def family_tok(family_model):
    task = cw.get_task("opposites-seed").subset((1, 2, 5))
    tok, _ = cw.tokenize_task(family_model, task, need_corrupted=True)
    return tok


def _ld(model, tokens, tok):
    logits = model(tokens)
    rows = torch.arange(len(tok))
    a = logits[rows, tok.last].gather(-1, tok.answers)
    return a[:, 0] - a[:, 1]


def test_graph_forward_is_the_models_own_and_its_endpoints_are_clean_and_corrupted(family_model, family_tok):
    gm = graph_model(family_model)
    tok = family_tok
    check_against_bridge(family_model, gm, tok.clean, tok.last, tok.answers)
    g = gm.graph
    x_c, x_k = gm.embed(tok.clean), gm.embed(tok.corrupted)
    clean = run_graph(gm, x_c, tok.last, tok.answers, record=True)
    ld = lambda r: r.answer_logits[0, :, 0] - r.answer_logits[0, :, 1]  # noqa: E731
    torch.testing.assert_close(ld(clean), _ld(family_model, tok.clean, tok), atol=ATOL, rtol=0)
    corrupted = run_graph(gm, x_k, tok.last, tok.answers, record=True)
    none = torch.zeros(1, len(g.senders), len(g.receivers))
    # Every edge reading the corrupted senders: the corrupted run, from clean inputs …
    patched = run_graph(gm, x_c, tok.last, tok.answers, keep=none, replacement=corrupted.outputs)
    torch.testing.assert_close(ld(patched), _ld(family_model, tok.corrupted, tok), atol=ATOL, rtol=0)
    # … and the reverse.
    restored = run_graph(gm, x_k, tok.last, tok.answers, keep=none, replacement=clean.outputs)
    torch.testing.assert_close(ld(restored), _ld(family_model, tok.clean, tok), atol=ATOL, rtol=0)


def test_eap_equals_transformerlens_edge_attribution(family_ckpt, family_model, family_tok):
    from transformer_lens.tools.analysis.attribution_patching import EdgeAttributionConfig, attribution_patch

    tok = family_tok
    g = graph_of(family_model)
    ref = torch.zeros(g.n_edges, dtype=torch.float64)
    with params_require_grad(family_model):
        for i in range(len(tok)):
            try:
                res = attribution_patch(family_model, tok.clean[i:i + 1], tok.corrupted[i:i + 1],
                                        answer_metric(tok.answers[i]), EdgeAttributionConfig(granularity="edge"))
            except Exception as e:  # noqa: BLE001 - TL's own limits, named in the skip
                pytest.skip(f"TransformerLens's edge attribution fails on {family_ckpt[0]}: {type(e).__name__}: {e}")
            for (w, r), v in res.edge_scores.items():
                ref[g.edge_id(sender_name(w), receiver_name(r))] += v
    ref /= len(tok)
    ours = eap(family_model, tok, gradient="corrupted", batch_size=2)  # TL: the corrupted run; 2 + 1
    torch.testing.assert_close(ours.scores.double(), ref, atol=1e-5, rtol=1e-3)
    assert ours.scores.abs().max() > 1e-4  # not trivially zero


@pytest.mark.parametrize("n_edges", [0, 25])
def test_faithfulness_equals_transformerlens(family_ckpt, family_model, family_tok, n_edges):
    from transformer_lens.tools.analysis.attribution_patching import faithfulness as tl_faithfulness

    tok = family_tok
    g = graph_of(family_model)
    ids = torch.randperm(g.n_edges, generator=torch.Generator().manual_seed(n_edges))[:n_edges].tolist()
    keep = torch.zeros(g.n_edges, dtype=torch.bool)
    keep[ids] = True
    P = tok.clean.shape[1]
    ours = None
    for i in range(2):
        try:
            ref = tl_faithfulness(family_model, tok.clean[i:i + 1], tok.corrupted[i:i + 1],
                                  answer_metric(tok.answers[i]), tl_edges(g, ids, P))
        except Exception as e:  # noqa: BLE001
            pytest.skip(f"TransformerLens's faithfulness fails on {family_ckpt[0]}: {type(e).__name__}: {e}")
        tl_metric = ref.corrupt_metric + ref.recovered * (ref.full_metric - ref.corrupt_metric)
        ours = ours or faithfulness_of_masks(family_model, tok, keep)[0]
        assert float(ours.per_example[i]) == pytest.approx(tl_metric, abs=1e-4)


@pytest.mark.parametrize("gradient", ["corrupted", "clean"])
def test_eap_is_the_derivative_of_the_patched_forward_in_each_edges_mask(family_model, family_tok, gradient):
    """An independent route on every family (TransformerLens's edge attribution runs on GPT-2-style
    and NeoX blocks only): run the ``gradient`` prompts with the other run's senders as
    replacement, so the receiver reads ``live − (1 − keep)·(live − other)``; the metric's
    derivative in edge e's keep-mask at "keep every edge" is (live − other) · ∂m/∂input: EAP's
    score at the corrupted run with a minus, at the clean run as is — here through autograd of
    the per-receiver forward, not EAP's gradient hooks."""
    tok = family_tok
    ours = eap(family_model, tok, gradient=gradient, batch_size=2)
    gm = graph_model(family_model)
    g = gm.graph
    base, other = (tok.corrupted, tok.clean) if gradient == "corrupted" else (tok.clean, tok.corrupted)
    rep = run_graph(gm, gm.embed(other), tok.last, tok.answers, record=True).outputs
    keep = torch.ones(1, len(g.senders), len(g.receivers), dtype=gm.dtype, requires_grad=True)
    with torch.enable_grad():
        run = run_graph(gm, gm.embed(base), tok.last, tok.answers, keep=keep, replacement=rep)
        ld = run.answer_logits[0, :, 0] - run.answer_logits[0, :, 1]
        (grad,) = torch.autograd.grad(ld.mean(), keep)
    ref = (-1 if gradient == "corrupted" else 1) * g.from_dense(grad[0]).float()
    torch.testing.assert_close(ours.scores, ref, atol=1e-5, rtol=1e-3)
    assert ours.scores.abs().max() > 1e-4


def test_eap_ig_discovery_runs_round_trips_and_records_the_architecture(family_model, family_tok, tmp_path):
    from circuitwise.circuits import find_circuit
    from circuitwise.circuits.circuit import Circuit

    # top-n: the target search's many faithfulness runs are tested once, on GPT-2 (test_select.py)
    found = find_circuit(family_model, family_tok, method="eap-ig", steps=2, selection="top-n", n=12,
                         prune=False, batch_size=3)
    c = found.circuit
    assert c.n_edges == 12
    c.save(tmp_path / "circuit.json")
    again = Circuit.load(tmp_path / "circuit.json", family_model)
    assert again.n_edges == c.n_edges
    arch = c.to_json()["model"]["architecture"]
    cfg = family_model.cfg
    assert arch["n_key_value_heads"] == (getattr(cfg, "n_key_value_heads", None) or cfg.n_heads)
    assert arch["parallel_attn_mlp"] == bool(cfg.parallel_attn_mlp)


def test_shared_prefix_and_last_position_shortcut_change_no_number(family_model, family_tok):
    """The fast path (positions before the first clean/corrupted difference computed once, the last
    layer's queries and MLP at the last position only) equals the full per-position forward."""
    from circuitwise.circuits.forward import first_difference, shared_prefix

    tok = family_tok
    gm = graph_model(family_model)
    g = gm.graph
    x_c, x_k = gm.embed(tok.clean), gm.embed(tok.corrupted)
    corrupted = run_graph(gm, x_k, tok.last, tok.answers, record=True)
    clean = run_graph(gm, x_c, tok.last, tok.answers, record=True)
    start = first_difference(tok.clean, tok.corrupted, tok.last)
    assert 0 < start <= int(tok.last.min())
    # The premise: before the first difference every sender writes the same in both runs.
    torch.testing.assert_close(clean.outputs[:, :, :start], corrupted.outputs[:, :, :start], atol=1e-6, rtol=0)
    gen = torch.Generator().manual_seed(1)
    keep = (torch.rand(4, len(g.senders), len(g.receivers), generator=gen) > 0.4).float()
    full = run_graph(gm, x_c, tok.last, tok.answers, keep=keep, replacement=corrupted.outputs, record=True)
    short = run_graph(gm, x_c, tok.last, tok.answers, keep=keep, replacement=corrupted.outputs)
    prefix = shared_prefix(gm, x_c, start)
    shared = run_graph(gm, x_c[:, start:], tok.last, tok.answers, keep=keep,
                       replacement=corrupted.outputs[:, :, start:], prefix=prefix)
    torch.testing.assert_close(short.answer_logits, full.answer_logits, atol=1e-5, rtol=0)
    torch.testing.assert_close(shared.answer_logits, full.answer_logits, atol=1e-5, rtol=0)
    unpatched = run_graph(gm, x_c, tok.last, tok.answers)
    torch.testing.assert_close(unpatched.answer_logits, clean.answer_logits, atol=1e-5, rtol=0)
    assert (full.answer_logits[:, :, 0] - full.answer_logits[:, :, 1]).std(0).max() > 1e-3  # masks differ


def test_edge_sets_started_at_their_first_patched_layer_change_no_number(family_model, family_tok):
    """Sets whose dropped edges all enter layer 1 or the logits start from the clean run's state
    there (circuits.patch); their metrics equal full patched forwards from the input."""
    from circuitwise.circuits.patch import mean_outputs, patched_metrics
    from circuitwise.circuits.scores import prepare

    prep = prepare(family_model, family_tok)
    gm, tok, g = prep.gm, prep.tok, prep.gm.graph
    prep.gm.memo.clear()
    layer = torch.tensor([g.receivers[int(r)].layer for r in g.edge_index[1]])
    gen = torch.Generator().manual_seed(3)
    masks = torch.ones(6, g.n_edges, dtype=torch.bool)
    for i, (at, n) in enumerate([(1, 1), (1, 5), (2, 1), (2, 3), (1, 40), (0, 2)]):
        pool = (layer == at).nonzero().flatten()  # layer 2: the logits of a 2-layer model
        masks[i, pool[torch.randperm(len(pool), generator=gen)[:n]]] = False
    got = patched_metrics(prep, masks, ablation="corrupted")
    x_c, x_k = gm.embed(tok.clean), gm.embed(tok.corrupted)
    rep = run_graph(gm, x_k, tok.last, tok.answers, record=True).outputs
    keep = g.to_dense(masks.to(gm.dtype), fill=1.0)
    full = prep.metric(run_graph(gm, x_c, tok.last, tok.answers, keep=keep, replacement=rep).answer_logits)
    torch.testing.assert_close(got.patched, full.float(), atol=1e-5, rtol=1e-5)
    assert (got.patched - got.clean).abs().max() > 1e-4  # the dropped edges move the metric
    mean = patched_metrics(prep, masks[:4], ablation="mean")  # mean ablation resumes too
    means = mean_outputs(gm, tok, 64)
    full_m = prep.metric(run_graph(gm, x_c, tok.last, tok.answers, keep=keep[:4],
                                   replacement=means[:, :, : tok.clean.shape[1]]).answer_logits)
    torch.testing.assert_close(mean.patched, full_m.float(), atol=1e-5, rtol=1e-5)


def test_eap_ig_over_the_shared_prefix_equals_plain_transformerlens_hooks(family_ckpt, family_model, family_tok):
    """EAP-IG's gradient runs start after the prompts' shared prefix (those positions add nothing):
    on every family the scores still equal the hook reference's, computed over every position."""
    from circuitwise.circuits import eap_ig
    from circuitwise.circuits.forward import first_difference
    from circuitwise.circuits.gradients import quadrature_points
    from tests.unit.circuits import hook_reference as ref

    tok = family_tok
    family = family_ckpt[0]
    if family in ("gemma2", "gemma3", "olmo2", "phi"):
        # The reference's senders are TL's attn.hook_result, before a post-attention norm (Gemma 2/3,
        # OLMo 2), and its hook_mlp_in is off the MLP's gradient path where attention and MLP share
        # one norm (Phi); test_eap_is_the_derivative... checks our engine there through autograd (and the code before the prefix gave the same
        # scores to 7e-8 on these four, measured 2026-12-02).
        pytest.skip(f"the hook reference does not define edges as our graph does on {family}")
    assert first_difference(tok.clean, tok.corrupted, tok.last) > 0  # the prefix is really skipped
    ours = eap_ig(family_model, tok, steps=2, batch_size=3)
    try:
        theirs = ref.ig_inputs(family_model, tok, *quadrature_points(ours.config["quadrature"], 2))
    except Exception as e:  # noqa: BLE001 - TL's own limits, named in the skip
        pytest.skip(f"the hook reference does not run on this family: {type(e).__name__}: {e}")
    torch.testing.assert_close(ref.on_tl_receivers(family_model, ours.scores), theirs, atol=1e-5, rtol=1e-3)
    assert theirs.abs().max() > 1e-4


def test_pruning_dangling_edges_changes_no_number(family_model, family_tok):
    """patched_metrics drops dangling edges (circuits.prune) before it runs an edge set; sparse random
    sets, mostly dangling, give the unpruned forward's metrics on every family. With post-norms
    (Gemma 2/3, OLMo 2) a layer's heads share the norm's live scale, so an edge into a head that
    reaches the logits only through that scale is not dangling."""
    from circuitwise.circuits.patch import patched_metrics
    from circuitwise.circuits.prune import prune_rows
    from circuitwise.circuits.scores import prepare

    prep = prepare(family_model, family_tok)
    gm, tok, g = prep.gm, prep.tok, prep.gm.graph
    gm.memo.clear()
    gen = torch.Generator().manual_seed(11)
    masks = torch.rand(8, g.n_edges, generator=gen) < torch.tensor([0.02, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6])[:, None]
    assert (prune_rows(g, masks) != masks).any(1).sum() >= 4  # most sets have dangling edges
    got = patched_metrics(prep, masks, ablation="corrupted")
    rep = run_graph(gm, gm.embed(tok.corrupted), tok.last, tok.answers, record=True).outputs
    keep = g.to_dense(masks.to(gm.dtype), fill=1.0)
    full = prep.metric(run_graph(gm, gm.embed(tok.clean), tok.last, tok.answers, keep=keep,
                                 replacement=rep).answer_logits)
    torch.testing.assert_close(got.patched, full.float(), atol=1e-5, rtol=1e-5)
