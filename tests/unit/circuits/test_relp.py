"""RelP (relevance patching): LRP's rules as kernels, and the method against an independent reference.

The reference is RelP's own recipe (its TransformerLens fork: a norm's scale detached, the
activation replaced by ``x · (act(x)/x).detach()``, a gated product halved into a detached copy)
written here as TransformerLens 4.3 bridge hooks on the model itself — no circuitwise engine code —
and node attribution ``(clean − corrupted) · coefficient`` read at the heads' ``hook_z`` and the
MLPs' outputs. circuitwise's edge scores summed per sender are that node attribution.
"""

from __future__ import annotations

import pytest
import torch

import circuitwise as cw
from circuitwise.circuits import score_edges, score_nodes
from circuitwise.circuits.forward import graph_model, run_graph
from circuitwise.errors import ConfigError
from circuitwise.models import relevance as rel
from circuitwise.models.relevance import Rules, relevance
from circuitwise.models.weights import Norm
from tests.unit.circuits.tl_reference import params_require_grad


def _grad(f, x, dy):
    x = x.clone().requires_grad_(True)
    (f(x) * dy).sum().backward()
    return x.grad


@pytest.mark.parametrize("kind", ["LN", "RMS"])
def test_the_ln_rule_keeps_the_values_and_holds_the_divisor_constant(kind):
    torch.manual_seed(0)
    x, dy = torch.randn(3, 5, 16, dtype=torch.float64), torch.randn(3, 5, 16, dtype=torch.float64)
    w, b = torch.randn(16, dtype=torch.float64), (torch.randn(16, dtype=torch.float64) if kind == "LN" else None)
    norm = Norm(kind, w, b, 1e-5)
    plain = norm(x)
    with relevance(Rules()):
        ruled = norm(x)
        g = _grad(norm, x, dy)
        manual = norm.backward(x, dy.clone())  # the engine's own backward for fused q/k/v inputs
    torch.testing.assert_close(ruled, plain, atol=1e-12, rtol=0)
    xc = x - x.mean(-1, keepdim=True) if kind == "LN" else x
    scale = (xc.pow(2).mean(-1, keepdim=True) + 1e-5).sqrt()
    gw = dy * w
    expected = (gw - gw.mean(-1, keepdim=True) if kind == "LN" else gw) / scale
    torch.testing.assert_close(g, expected, atol=1e-12, rtol=0)
    torch.testing.assert_close(manual, expected, atol=1e-12, rtol=0)
    # Outside the block nothing changed: the true derivative again.
    assert not torch.allclose(_grad(norm, x, dy), expected)


def test_the_identity_half_and_attention_rules():
    torch.manual_seed(1)
    x = torch.randn(4, 8, dtype=torch.float64)
    x[0, 0] = 0.0  # the ratio act(x)/x is kept finite at zero
    act = torch.nn.functional.gelu
    with relevance(Rules()):
        y = rel.activation(x, act(x))
        g = _grad(lambda t: rel.activation(t, act(t)), x, torch.ones_like(x))
    torch.testing.assert_close(y, act(x), atol=1e-9, rtol=0)
    xs = x + ((x == 0).double() + x.sign()) * 1e-6  # the stabiliser RelP's reference uses
    torch.testing.assert_close(g, act(x) / xs, atol=1e-12, rtol=0)
    a, b = torch.randn(5, dtype=torch.float64), torch.randn(5, dtype=torch.float64)
    with relevance(Rules()):
        ga = _grad(lambda t: rel.gate(t * b), a, torch.ones_like(a))
    torch.testing.assert_close(ga, b / 2)
    p = torch.rand(2, 3, requires_grad=True)
    with relevance(Rules(attention=True)):
        assert not rel.pattern(p).requires_grad
    with relevance(Rules()):
        assert rel.pattern(p).requires_grad  # the AH-rule is off by default, as in RelP's reference
    assert rel.activation(x, act(x)) is not None and rel.active() is None


@pytest.fixture(scope="module")
def family_tok(family_model):
    task = cw.get_task("opposites-seed").subset((1, 2, 5))
    tok, _ = cw.tokenize_task(family_model, task, need_corrupted=True)
    return tok


def test_the_rules_leave_every_familys_forward_unchanged(family_model, family_tok):
    gm = graph_model(family_model)
    tok = family_tok
    x = gm.embed(tok.clean)
    plain = run_graph(gm, x, tok.last, tok.answers).answer_logits
    with relevance(Rules(attention=True)):
        ruled = run_graph(gm, x, tok.last, tok.answers).answer_logits
    torch.testing.assert_close(ruled, plain, atol=1e-5, rtol=1e-5)


def _relp_nodes_through_bridge_hooks(model, tok):
    """RelP node attribution by RelP's recipe, on the bridge's own hooks (no circuitwise engine)."""
    L = model.cfg.n_layers
    store: dict[str, torch.Tensor] = {}

    def keep(name):
        def hook(t, hook):
            store[name] = t
            return t
        return hook

    def detach_scale(t, hook):
        return t.detach()

    def remember_pre(l):
        def hook(t, hook):
            store[f"pre{l}"] = t
            return t
        return hook

    def identity_rule(l):
        def hook(post, hook):
            pre = store[f"pre{l}"]
            zp = pre + ((pre == 0).to(pre.dtype) + pre.sign()) * 1e-6
            return zp * (post / zp).detach()
        return hook

    names = [f"blocks.{l}.attn.hook_z" for l in range(L)] + [f"blocks.{l}.hook_mlp_out" for l in range(L)]

    def run(tokens, with_grad):
        fwd = [(n, keep(n)) for n in names]
        if with_grad:
            fwd += [(f"blocks.{l}.{ln}.hook_scale", detach_scale) for l in range(L) for ln in ("ln1", "ln2")]
            fwd += [("ln_final.hook_scale", detach_scale)]
            fwd += [(f"blocks.{l}.mlp.hook_pre", remember_pre(l)) for l in range(L)]
            fwd += [(f"blocks.{l}.mlp.hook_post", identity_rule(l)) for l in range(L)]
        logits = model.run_with_hooks(tokens, fwd_hooks=fwd)
        return logits, {n: store[n] for n in names}

    with torch.no_grad():
        _, corrupted = run(tok.corrupted, False)
    with params_require_grad(model):
        logits, clean = run(tok.clean, True)
        for t in clean.values():
            t.retain_grad()
        rows = torch.arange(len(tok))
        a = logits[rows, tok.last].gather(-1, tok.answers)
        (a[:, 0] - a[:, 1]).sum().backward()  # per prompt; averaged below as EdgeScores are
    out = {}
    for l in range(L):
        z = f"blocks.{l}.attn.hook_z"
        per_head = ((clean[z] - corrupted[z]) * clean[z].grad).sum(dim=(0, 1, 3)) / len(tok)
        for h in range(model.cfg.n_heads):
            out[f"L{l}H{h}"] = float(per_head[h].detach())
        m = f"blocks.{l}.hook_mlp_out"
        out[f"MLP{l}"] = float(((clean[m] - corrupted[m]) * clean[m].grad).sum() / len(tok))
    return out


@pytest.mark.parametrize("family", ["gpt2", "pythia"])
def test_relp_equals_relps_recipe_on_the_bridges_hooks(family, family_model_for):
    model = family_model_for(family)
    tok, _ = cw.tokenize_task(model, cw.get_task("opposites-seed").subset((1, 2, 5)), need_corrupted=True)
    ref = _relp_nodes_through_bridge_hooks(model, tok)
    nodes = score_nodes(model, tok, "relp")
    ours = dict(zip([s.name for s in nodes.graph.senders], nodes.scores.tolist(), strict=True))
    eap = dict(zip([s.name for s in nodes.graph.senders], score_nodes(model, tok, "eap").scores.tolist(), strict=True))
    scale = max(abs(v) for v in ref.values())
    for name, want in ref.items():
        assert abs(ours[name] - want) <= 1e-4 * scale + 1e-6, (name, ours[name], want)
    # … and the rules change the numbers (this is not EAP under another name).
    assert max(abs(ours[n] - eap[n]) for n in ref) > 1e-3 * scale


def test_the_attention_rule_leaves_queries_and_keys_nothing(tiny_model):
    tok, _ = cw.tokenize_task(tiny_model, cw.get_task("opposites-seed"), need_corrupted=True)
    s = score_edges(tiny_model, tok, "relp", attention_rule=True)
    qk = [i for i, name in enumerate(s.graph.edge_names) if name.endswith((".q", ".k"))]
    assert qk and float(s.scores[qk].abs().max()) == 0.0
    assert float(s.scores.abs().max()) > 0


def test_soft_capped_models_are_refused_before_any_work(family_model_for):
    model = family_model_for("gemma2")
    from circuitwise.circuits.relp import cannot_relp

    assert "soft-capped" in (cannot_relp(model) or "")
    tok, _ = cw.tokenize_task(model, cw.get_task("opposites-seed").subset((1,)), need_corrupted=True)
    with pytest.raises(ConfigError, match="relp cannot run on this model: .*soft-capped"):
        score_edges(model, tok, "relp")


def test_kl_at_the_clean_run_is_refused_like_eap():
    from circuitwise.circuits.methods import check_metric, get_method

    with pytest.raises(ConfigError, match="relp with its gradient there scores every edge 0"):
        check_metric("relp", get_method("relp").options(), "kl")
    check_metric("relp", get_method("relp").options(gradient="corrupted"), "kl")


@pytest.mark.parametrize("command", [["run", "opposites-seed", "--patch", "heads"],
                                     ["compare", "opposites-seed", "--model-b", "bundled"]])
def test_run_and_compare_refuse_relp_on_a_soft_capped_model_before_any_work(family_path_for, tmp_path, monkeypatch,
                                                                            command):
    # The refusal came from relp's scoring: `run` and `compare` reached it after the baseline, DLA and
    # patching (compare also after side A's discovery), then offered a resume that would fail again.
    import circuitwise.pipeline as pipeline
    from tests.unit.cli.conftest import invoke

    def no_work(*_a, **_k):
        raise AssertionError("a stage ran before the method's refusal")

    monkeypatch.setattr(pipeline, "baseline", no_work)
    r = invoke(*command, "--model", family_path_for("gemma2"), "--circuit", "relp", "--out", tmp_path / "o")
    assert r.exit_code == 2 and "relp cannot run on this model" in r.output and "soft-capped" in r.output, r.output
    assert not (tmp_path / "o").exists() and not (tmp_path / ".o.partial").exists()
