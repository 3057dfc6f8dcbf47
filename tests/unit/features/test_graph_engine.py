"""The replacement model and the attribution graph are exact.

- the frozen replacement with error nodes reproduces the model's logits (every family);
- freezing takes effect: the frozen map is linear in its sources (every family), the model is not;
- every receiver's incoming edges plus the bias-only run sum to its value;
- every adjacency entry equals the change when its source is ablated in the frozen model;
- batched rows equal rows one at a time and a Jacobian of the frozen map.
"""

from __future__ import annotations

import pytest
import torch

from circuitwise.errors import ConfigError, MemoryBudgetError
from circuitwise.features.attribute import LogitDiff, Tokens, attribution_graph, token_id
from circuitwise.features.replacement import clean_run, frozen_forward, replacement_logits
from tests.unit.features.random_transcoders import random_set

PROMPT = "A tortoise is old, but a kitten is"


def _receivers(g):
    return list(range(g.features.stop)) + list(range(g.target_nodes.start, g.target_nodes.stop))


def _sources(run, tcs, acts, errors, emb):
    """Each layer's MLP write less skip, from feature activations, error vectors and embeddings (batched)."""
    writes = []
    for l, t in enumerate(tcs.transcoders):
        wr = acts[l] @ (t.W_dec[:, 0] if t.cross_layer else t.W_dec) + (t.b_dec[0] if t.cross_layer else t.b_dec)
        for s in range(l if tcs.cross_layer else 0):
            wr = wr + acts[s] @ tcs[s].W_dec[:, l - s]
        writes.append(wr + errors[l])
    return emb, writes


def _readouts(run, tcs, g, acts, errors, emb):
    """Every receiver's value in the frozen model with the given sources ``[B, …]``: ``[B, receivers]``."""
    e, writes = _sources(run, tcs, acts, errors, emb)
    tc_in, final = frozen_forward(run, tcs, e, writes)
    w = run.w
    out = []
    for i in _receivers(g):
        n = g.nodes[i]
        if n.kind == "feature":
            t = tcs[n.layer]
            out.append(tc_in[n.layer][:, n.position] @ t.W_enc[:, n.feature] + t.b_enc[n.feature])
        else:
            final_p = final[:, n.position]
            logits = final_p @ w.W_U + (0 if w.b_U is None else w.b_U)
            out.append(logits[:, n.token] - logits.mean(-1) if n.token >= 0 else None)
    return torch.stack(out, 1)


def _ablation_effects(run, tcs, g, senders: list[int]) -> torch.Tensor:
    """``[receivers, senders]``: each receiver's readout less its readout with one sender zeroed (each
    sender ablated in its own stacked copy of the frozen run: feature, error or token embedding)."""
    B = len(senders)
    acts = [a.expand(B, -1, -1).clone() for a in run.acts]
    errs = [e.expand(B, -1, -1).clone() for e in run.errors]
    emb = run.embed.expand(B, -1, -1).clone()
    for b, j in enumerate(senders):
        n = g.nodes[j]
        if n.kind == "feature":
            acts[n.layer][b, n.position, n.feature] = 0
        elif n.kind == "error":
            errs[n.layer][b, n.position] = 0
        else:
            emb[b, n.position] = 0
    full = _readouts(run, tcs, g, [a[None] for a in run.acts], [e[None] for e in run.errors], run.embed[None])
    return (full - _readouts(run, tcs, g, acts, errs, emb)).T


@pytest.mark.parametrize("kind", ["topk_skip", "jumprelu", "clt"])
def test_rows_sum_to_values_and_equal_ablations_in_the_frozen_model(tiny_model, kind):
    tcs = random_set(tiny_model, kind)
    g = attribution_graph(tiny_model, tcs, PROMPT, targets=Tokens((" young", " old")))
    run = clean_run(tiny_model, tcs, torch.tensor(g.tokens[0]))
    recv = _receivers(g)
    vals = g.values.float()
    assert float((g.adjacency[recv].sum(1) + g.bias[recv] - vals[recv]).abs().max()) < 1e-5
    # The replacement reproduces the logits.
    assert float((replacement_logits(run, tcs) - tiny_model(run.tokens[None])[0]).abs().max()) < 1e-5
    # Ablate every sender at once, one per stacked copy: the receivers move by exactly the edge.
    L, T = g.n_layers, len(g.tokens[0])
    senders = list(range(g.token_nodes.stop))
    effect = _ablation_effects(run, tcs, g, senders)  # [receivers, senders]
    assert torch.allclose(effect, g.adjacency[recv][:, senders], atol=2e-5, rtol=1e-4)
    assert g.adjacency[recv][:, senders].abs().max() > 1e-2  # the graph is not empty
    assert L * T == g.errors.stop - g.errors.start


def test_batched_rows_equal_single_rows_and_a_jacobian(tiny_model):
    tcs = random_set(tiny_model, "topk_skip", seed=3)
    g = attribution_graph(tiny_model, tcs, PROMPT, targets=LogitDiff(" young", " old"), batch_rows=16)
    one = attribution_graph(tiny_model, tcs, PROMPT, targets=LogitDiff(" young", " old"), batch_rows=1)
    assert torch.allclose(g.adjacency, one.adjacency, atol=1e-5)
    assert g.nodes[-1].label.startswith("logit(' young')")
    run = clean_run(tiny_model, tcs, torch.tensor(g.tokens[0]))
    recv = _receivers(g)
    feats = [g.nodes[i] for i in range(g.features.stop)]

    def f(act_vec, err, emb):
        acts = [torch.zeros_like(a) for a in run.acts]
        for i, n in enumerate(feats):
            acts[n.layer] = acts[n.layer].index_put((torch.tensor(n.position), torch.tensor(n.feature)), act_vec[i])
        tc_in, final = frozen_forward(run, tcs, *_sources(run, tcs, [a[None] for a in acts],
                                                            [e[None] for e in err], emb[None]))
        u = run.w.W_U[:, token_id(tiny_model, " young")] - run.w.W_U[:, token_id(tiny_model, " old")]
        out = [tc_in[n.layer][0, n.position] @ tcs[n.layer].W_enc[:, n.feature] for n in feats]
        return torch.stack(out + [final[0, -1] @ u])

    a0 = torch.tensor([n.value for n in feats])
    err = torch.stack(run.errors)
    J = torch.autograd.functional.jacobian(f, (a0, err, run.embed))
    jf = J[0] * a0
    je = (J[1] * err).sum(-1).flatten(1)  # [recv, L·T] in the graph's (layer, position) order
    jt = (J[2] * run.embed).sum(-1)
    expect = torch.cat([jf, je, jt], 1)
    assert torch.allclose(g.adjacency[recv][:, : g.token_nodes.stop], expect, atol=1e-5)


def test_every_family_reproduces_logits_and_freezing_takes_effect(family_model):
    model = family_model
    tcs = random_set(model, "topk_skip", n_features=16)
    tokens = model.to_tokens(PROMPT)[0][:8]
    run = clean_run(model, tcs, tokens)
    # The patterns frozen are the bridge's own (its hook_pattern, read, never edited: OPT, GPT-Neo and
    # GPT-J bridges drop edits there), and the replacement with error nodes gives the model's logits.
    names = [f"blocks.{l}.attn.hook_pattern" for l in range(len(tcs))]
    seen: dict = {}
    with torch.no_grad(), model.hooks(fwd_hooks=[(n, lambda a, hook: seen.__setitem__(hook.name, a)) for n in names]):
        ref = model(tokens[None])[0].to(run.logits.dtype)
    assert max(float((seen[n][0] - run.patterns[l]).abs().max()) for l, n in enumerate(names)) < 1e-5
    assert float((replacement_logits(run, tcs) - ref).abs().max()) <= 1e-5 * max(1.0, float(ref.abs().max()))
    # Linear in all sources together: F(2s) − F(0) = 2 (F(s) − F(0)). The model itself is not (its
    # patterns and norm scales move), so this holds only if they are frozen.
    srcs = [(run.writes[l] + run.errors[l])[None] for l in range(len(tcs))]
    zero = frozen_forward(run, tcs, 0 * run.embed[None], [0 * s for s in srcs])[1]
    one = frozen_forward(run, tcs, run.embed[None], srcs)[1]
    two = frozen_forward(run, tcs, 2 * run.embed[None], [2 * s for s in srcs])[1]
    assert torch.allclose(two - zero, 2 * (one - zero), atol=1e-4, rtol=1e-4)
    with torch.no_grad(), model.hooks(fwd_hooks=[("blocks.0.hook_resid_pre", lambda a, hook: 2 * a)]):
        live = model(tokens[None])[0]
    assert not torch.allclose(live, ref, atol=1e-2)
    # A graph on this family: rows sum to values, chunking changes nothing, entries equal ablations.
    g = attribution_graph(model, tcs, tokens, targets=Salient_top2())
    recv = _receivers(g)
    gap = (g.adjacency[recv].sum(1) + g.bias[recv] - g.values.float()[recv]).abs()
    # Relative to the terms summed: random post-norm families (Gemma 2/3) have edges of 1e4 that cancel.
    scale = g.adjacency[recv].abs().sum(1) + g.bias[recv].abs() + 1.0
    assert float((gap / scale).max()) < 1e-5
    other = attribution_graph(model, tcs, tokens, targets=Salient_top2(), batch_rows=5)
    assert float(((g.adjacency - other.adjacency).abs().amax(1)[recv] / scale).max()) < 1e-5
    senders = list(range(0, g.token_nodes.stop, max(1, g.token_nodes.stop // 12)))
    effect = _ablation_effects(run, tcs, g, senders)
    assert float(((effect - g.adjacency[recv][:, senders]).abs().amax(1) / scale).max()) < 1e-5


def Salient_top2():
    from circuitwise.features.attribute import Salient
    return Salient(max_n=2)


def test_memory_is_planned_and_bad_targets_refused(tiny_model):
    tcs = random_set(tiny_model, "topk_skip")
    with pytest.raises(MemoryBudgetError, match="dense adjacency alone needs"):
        attribution_graph(tiny_model, tcs, PROMPT, budget=10_000)
    with pytest.raises(ConfigError, match="single token"):
        attribution_graph(tiny_model, tcs, PROMPT, targets=Tokens((" tortoiseshellfish",)))


def test_on_a_gpu_the_adjacency_is_planned_against_ram_and_the_rows_against_the_device(monkeypatch):
    """The adjacency is filled on the CPU: a GPU model's graph counts it against free RAM, not the device's budget."""
    from types import SimpleNamespace

    import circuitwise.features.attribute as A

    w = SimpleNamespace(n_layers=2, d_model=64, dtype=torch.float32, device=torch.device("cuda", 0))
    n = 1000 + 2 * 10 + 10 + 1
    adj = 4 * n * n
    monkeypatch.setattr(A, "default_budget", lambda device="cpu", loaded=0: 10 * adj)  # the host's RAM
    plan = A.plan_graph(None, w, 10, 1000, 1, 64, budget=adj // 2)  # the device: less than the adjacency
    assert plan.adjacency_bytes == adj and plan.batch_rows == min(64, (adj // 2) // plan.row_bytes)
    monkeypatch.setattr(A, "default_budget", lambda device="cpu", loaded=0: adj - 1)
    with pytest.raises(MemoryBudgetError, match="of RAM"):
        A.plan_graph(None, w, 10, 1000, 1, 64, budget=10 * adj)
    cpu = SimpleNamespace(**{**vars(w), "device": torch.device("cpu")})  # one pool: the adjacency and the rows
    with pytest.raises(MemoryBudgetError, match="dense adjacency alone needs"):
        A.plan_graph(None, cpu, 10, 1000, 1, 64, budget=adj // 2)


def test_a_bfloat16_model_is_attributed_in_float32(tiny_ckpt, tiny_model):
    import circuitwise as cw

    bf16 = cw.load_model(str(tiny_ckpt), device="cpu", dtype="bfloat16")
    tcs = random_set(tiny_model, "topk_skip")
    g = attribution_graph(bf16, tcs, PROMPT, targets=LogitDiff(" young", " old"))
    g32 = attribution_graph(tiny_model, tcs, PROMPT, targets=LogitDiff(" young", " old"))
    assert g.dtype == "float32"
    recv = _receivers(g)
    assert float((g.adjacency[recv].sum(1) + g.bias[recv] - g.values.float()[recv]).abs().max()) < 1e-5
    # The same graph as the float32 model's, to bfloat16's rounding of the weights.
    assert g.nodes[-1].value == pytest.approx(g32.nodes[-1].value, abs=0.02)
    run = clean_run(bf16, tcs, torch.tensor(g.tokens[0]))
    ref = bf16(run.tokens[None])[0].float()
    assert float((replacement_logits(run, tcs) - ref).abs().max()) < 0.02 * float(ref.abs().max())


def test_a_graph_that_cannot_fit_is_refused_before_any_forward(tiny_model, monkeypatch):
    import circuitwise.features.attribute as A

    def no_forward(*a, **k):
        raise AssertionError("the clean run started")

    monkeypatch.setattr(A, "clean_run", no_forward)
    with pytest.raises(MemoryBudgetError, match="Fixes: a shorter prompt"):
        attribution_graph(tiny_model, random_set(tiny_model, "topk_skip"), PROMPT, budget=1000)


@pytest.mark.parametrize("family", ["gpt2", "pythia", "gptj", "gemma2"])
@pytest.mark.parametrize("kind,site", [("topk_skip", "mlp_in"), ("clt", "mlp_in"), ("topk_skip", "resid_mid")])
def test_the_transposed_pass_equals_autograd(family_model_for, family, kind, site):
    from circuitwise.features.replacement import pullback

    model = family_model_for(family)
    tcs = random_set(model, kind, site=site)
    tokens = model.to_tokens(PROMPT)[0][:7]
    run = clean_run(model, tcs, tokens)
    L, T, d = len(tcs), len(tokens), model.cfg.d_model
    g = torch.Generator().manual_seed(0)
    for sites in ([L, 1, 0, L], [1, 0], [0]):  # targets and features; features only (the pass stops early)
        reads = [(s, int(torch.randint(0, T, (1,), generator=g)), torch.randn(d, generator=g)) for s in sites]
        with torch.enable_grad():
            e = run.embed.expand(len(reads), -1, -1).clone().requires_grad_(True)
            ws = [(run.writes[l] + run.errors[l]).expand_as(e).clone().requires_grad_(True) for l in range(L)]
            probes = [torch.zeros_like(e, requires_grad=True) for _ in range(L)]
            tc_in, final = frozen_forward(run, tcs, e, ws, probes)
            sites_ = tc_in + [final]
            out = sum(sites_[s][b, p] @ u for b, (s, p, u) in enumerate(reads))
            ref = torch.autograd.grad(out, [e, *ws, *probes], allow_unused=True)
        ref = [torch.zeros_like(e) if r is None else r for r in ref]
        ge, gw, ga = pullback(run, tcs, reads)
        scale = 1.0 + float(ref[0].abs().max())
        for got, want in zip([ge, *gw, *ga], ref, strict=True):
            assert float((got - want).abs().max()) <= 1e-5 * scale


def test_the_guard_refuses_an_engine_or_a_freezing_that_does_not_hold(tiny_model):
    """attribution_graph checks, on every call, that the engine's clean run gives the bridge's logits and
    that every target's edges plus its bias-only value make its value (freezing took effect); the 15
    families pass it (test above), a wrong engine or a broken decomposition is refused."""
    from circuitwise.features.attribute import check_clean_run, check_closure

    tcs = random_set(tiny_model, "topk_skip")
    g = attribution_graph(tiny_model, tcs, PROMPT, targets=LogitDiff(" young", " old"))
    guard = g.meta["guard"]
    assert guard["bridge_logits_max_diff"] < 1e-5 and guard["target_closure_max_err"] < 1e-6
    run = clean_run(tiny_model, tcs, torch.tensor(g.tokens[0]))
    assert check_clean_run(tiny_model, run) == pytest.approx(guard["bridge_logits_max_diff"], abs=1e-7)
    with pytest.raises(ConfigError, match="does not reproduce this model's logits"):
        check_clean_run(lambda tokens: run.logits[None] + 0.05 * torch.randn_like(run.logits[None]), run)
    broken = g.with_(bias=g.bias + 1.0)
    with pytest.raises(ConfigError, match="freezing did not take effect"):
        check_closure(broken)
