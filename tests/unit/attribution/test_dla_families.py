"""DLA, logit lens and baseline on every family, processed and raw, against the model and TL.

The references never use circuitwise's own reading of the norms: a norm's effective weight and
bias are fitted from the run's own ``hook_normalized`` → ``hook_out`` (exact for a per-channel
affine map), and every stack comes from TransformerLens's ``ActivationCache``.
"""

from __future__ import annotations

import pytest
import torch

import circuitwise as cw
from circuitwise.attribution import baseline, direct_logit_attribution

ATOL = 1e-4
_raw: dict[str, object] = {}
_done: dict[int, tuple] = {}


@pytest.fixture(params=["processed", "raw"])
def model(request, family_ckpt, family_model):
    """The family's model with default processing, and with none (``--no-processing``)."""
    if request.param == "processed":
        return family_model
    family, path = family_ckpt
    if family not in _raw:
        _raw[family] = cw.load_model(str(path), device="cpu", processing=False)
    return _raw[family]


def _computed(model):
    """(tok, TL reference, our DLA) for one model, computed once: the models are session-scoped."""
    if id(model) not in _done:
        tok = _tok(model)
        # The model rides along so that its id cannot be reused while the entry exists.
        _done[id(model)] = model, tok, _reference(model, tok), direct_logit_attribution(model, tok, batch_size=3)
    return _done[id(model)][1:]


def _tok(model):
    task = cw.get_task("opposites-seed")
    tok, _ = cw.tokenize_task(model, task.subset(range(4)))
    assert tok.same_length, "the references read position -1; the prompts must be of equal length"
    return tok


def _fit_affine(cache, name):
    """Per-channel (weight, bias) with ``hook_out = hook_normalized * weight + bias`` on this run."""
    x = cache[f"{name}.hook_normalized"].flatten(0, -2).double()
    y = cache[f"{name}.hook_out"].flatten(0, -2).double()
    xm, ym = x.mean(0), y.mean(0)
    w = ((x - xm) * (y - ym)).sum(0) / ((x - xm) ** 2).sum(0)
    b = ym - w * xm
    torch.testing.assert_close(x * w + b, y, atol=1e-5, rtol=0)  # the norm really is affine per channel
    return w.float(), b.float()


def _has_post_attn_norm(model, layer):
    return f"blocks.{layer}.ln1_post.hook_scale" in model.hook_dict


@torch.inference_mode()
def _reference(model, tok):
    logits, cache = model.run_with_cache(tok.clean)
    L, H = model.cfg.n_layers, model.cfg.n_heads
    a = logits[:, -1].gather(-1, tok.answers)
    dirs = model.tokens_to_residual_directions(tok.answers)
    dirs = dirs[:, 0] - dirs[:, 1]
    w, b = _fit_affine(cache, "ln_final")

    def project(stack):  # [component, batch, d_model] -> [batch, component]
        return (cache.apply_ln_to_stack(stack, layer=-1, pos_slice=-1) * w * dirs).sum(-1).T

    heads = cache.stack_head_results(layer=-1, pos_slice=-1).reshape(L, H, len(tok), -1)
    for l in range(L):
        if _has_post_attn_norm(model, l):
            # TL stacks each head's output before its layer's post-attention norm: push it through
            # that norm with the cached scale, as the attention output itself went through it.
            pw, _ = _fit_affine(cache, f"blocks.{l}.ln1_post")
            heads[l] = heads[l] / cache[f"blocks.{l}.ln1_post.hook_scale"][:, -1] * pw
    mid = "blocks.0.hook_resid_mid" in model.hook_dict  # TL's accumulated_resid raises without it
    lens = cache.accumulated_resid(layer=-1, incl_mid=mid, apply_ln=True, pos_slice=-1)
    cap = model.cfg.output_logits_soft_cap
    answer_logits = logits[:, -1].gather(-1, tok.answers).double()
    if cap is not None and cap > 0:
        answer_logits = cap * torch.atanh(answer_logits / cap)  # undo cap·tanh(x/cap)
    return {
        "ld": a[:, 0] - a[:, 1],
        "target": (answer_logits[:, 0] - answer_logits[:, 1]).float(),
        "norm_bias": dirs @ b,
        "final": project(cache["resid_post", L - 1][:, -1][None])[:, 0],
        "heads": project(heads.flatten(0, 1)).reshape(len(tok), L, H),
        "layers": project(cache.decompose_resid(layer=-1, pos_slice=-1)),
        "lens": (lens * dirs).sum(-1).T,
    }


def test_baseline_is_the_models_own_logit_difference(model):
    tok = _tok(model)
    with torch.inference_mode():
        logits = model(tok.clean)[:, -1]
    a = logits.gather(-1, tok.answers)
    torch.testing.assert_close(baseline(model, tok).logit_diff, a[:, 0] - a[:, 1], atol=ATOL, rtol=0)


def test_final_residual_and_biases_give_the_models_logit_difference(model):
    """final_resid + norm_bias + unembed_bias = the model's logit difference (pre-cap where capped)."""
    tok, ref, dla = _computed(model)  # DLA in two batches (3 + 1)
    assert ref["target"].abs().max() > 0.1, "degenerate fixture: the logit differences are ~0"
    torch.testing.assert_close(dla.final_resid + dla.norm_bias + dla.unembed_bias, ref["target"],
                               atol=ATOL, rtol=0)
    torch.testing.assert_close(dla.logit_diff, ref["target"], atol=ATOL, rtol=0)
    torch.testing.assert_close(dla.final_resid, ref["final"], atol=ATOL, rtol=0)
    torch.testing.assert_close(dla.norm_bias, ref["norm_bias"], atol=ATOL, rtol=0)
    assert dla.closure_error < ATOL
    capped = model.cfg.output_logits_soft_cap is not None and model.cfg.output_logits_soft_cap > 0
    assert dla.target == ("pre_cap_logit_diff" if capped else "logit_diff")
    if not capped:
        torch.testing.assert_close(dla.logit_diff, ref["ld"], atol=ATOL, rtol=0)


def test_layers_sum_to_the_final_residual_and_equal_transformerlens(model):
    tok, ref, dla = _computed(model)  # DLA in two batches (3 + 1)
    torch.testing.assert_close(dla.layers.per_example.sum(1), dla.final_resid, atol=ATOL, rtol=0)
    torch.testing.assert_close(dla.layers.per_example, ref["layers"], atol=ATOL, rtol=0)


def test_heads_equal_transformerlens_stacked_head_results(model):
    tok, ref, dla = _computed(model)  # DLA in two batches (3 + 1)
    assert ref["heads"].abs().max() > 1e-3, "degenerate fixture: every head's DLA is ~0"
    torch.testing.assert_close(dla.heads.per_example, ref["heads"], atol=ATOL, rtol=0)


def test_logit_lens_equals_transformerlens_accumulated_resid(model):
    tok, ref, dla = _computed(model)  # DLA in two batches (3 + 1)
    torch.testing.assert_close(dla.logit_lens.per_example, ref["lens"], atol=ATOL, rtol=0)
    L = model.cfg.n_layers
    labels = dla.logit_lens.labels["point"]
    assert labels[-1] == "final_post" and labels[0] == "0_pre"
    has_mid = "blocks.0.hook_resid_mid" in model.hook_dict
    assert len(labels) == (2 * L if has_mid else L) + 1
    assert any(l.endswith("_mid") for l in labels) == has_mid
    # The lens's last point is the final residual through the real norm: bias included.
    torch.testing.assert_close(dla.logit_lens.per_example[:, -1], dla.final_resid + dla.norm_bias,
                               atol=ATOL, rtol=0)


def test_what_is_not_linear_is_said(model):
    _, _, dla = _computed(model)
    cap = model.cfg.output_logits_soft_cap
    capped = cap is not None and cap > 0
    post = any(_has_post_attn_norm(model, l) for l in range(model.cfg.n_layers))
    assert ("logit_soft_cap" in dla.nonlinear) == capped
    assert ("post_norm" in dla.nonlinear) == post
    assert dla.linear == (not capped and not post)
    if not dla.linear:
        assert len(dla.caveats) >= len(dla.nonlinear)
    js = dla.to_json()
    assert js["linear"] == dla.linear and js["nonlinear"] == list(dla.nonlinear)
    assert js["caveats"] == list(dla.caveats) and js["target"] == dla.target


@pytest.fixture(scope="module")
def tightly_capped_gemma2(tmp_path_factory):
    """Gemma 2 with a logit soft-cap of 2: the fixture's default cap (30) is far above its logits."""
    import json

    from tests.families import make_family_checkpoint

    path = make_family_checkpoint("gemma2", tmp_path_factory.mktemp("gemma2-cap2"))
    cfg = json.loads((path / "config.json").read_text())
    cfg["final_logit_softcapping"] = 2.0
    (path / "config.json").write_text(json.dumps(cfg))
    return cw.load_model(str(path), device="cpu")


def test_with_a_soft_cap_the_attribution_is_of_the_pre_cap_logit_difference(tightly_capped_gemma2):
    model = tightly_capped_gemma2
    assert model.cfg.output_logits_soft_cap == 2.0
    tok, ref, dla = _computed(model)  # DLA in two batches (3 + 1)
    assert (ref["target"] - ref["ld"]).abs().max() > 1e-2, "the cap must matter for this test to mean anything"
    assert dla.target == "pre_cap_logit_diff" and not dla.linear and "logit_soft_cap" in dla.nonlinear
    torch.testing.assert_close(dla.final_resid + dla.norm_bias + dla.unembed_bias, ref["target"], atol=ATOL, rtol=0)
    torch.testing.assert_close(dla.layers.per_example.sum(1), dla.final_resid, atol=ATOL, rtol=0)
    torch.testing.assert_close(baseline(model, tok).logit_diff, ref["ld"], atol=ATOL, rtol=0)


def test_prompts_of_different_lengths_are_read_at_their_own_last_token(family_model):
    """Right padding (and sliding windows, rotary offsets) must not change a prompt's attribution."""
    model = family_model
    task = cw.Task("mixed", (
        cw.Example("A tortoise is old, but a kitten is", " young", " old"),
        cw.Example("The very old and slow tortoise is old, but the tiny kitten is", " young", " old"),
        cw.Example("Ice is", " cold", " hot"),
    ))
    tok, _ = cw.tokenize_task(model, task)
    assert not tok.same_length
    together = direct_logit_attribution(model, tok)
    for i, ex in enumerate(task):
        alone_tok, _ = cw.tokenize_task(model, cw.Task("one", (ex,)))
        alone = direct_logit_attribution(model, alone_tok)
        torch.testing.assert_close(together.heads.per_example[i], alone.heads.per_example[0], atol=ATOL, rtol=0)
        torch.testing.assert_close(together.logit_lens.per_example[i], alone.logit_lens.per_example[0],
                                   atol=ATOL, rtol=0)
        torch.testing.assert_close(together.logit_diff[i], alone.logit_diff[0], atol=ATOL, rtol=0)


def test_equals_transformerlens_own_dla_tool_where_it_runs(model):
    """TL's ``tools.analysis.direct_logit_attribution``, on the models it accepts."""
    from transformer_lens.tools.analysis.direct_logit_attribution import direct_logit_attribution as tl_dla

    tok, _, dla = _computed(model)
    correct, incorrect = tok.answers[:, 0], tok.answers[:, 1]
    try:
        with torch.inference_mode():
            comps = tl_dla(model, tok.clean, correct, incorrect, unit="component")
    except ValueError as e:
        assert "identity final norm" in str(e)
        pytest.skip(f"TL's DLA tool refuses a final norm that fold_ln did not fold ({e}); ours applies it, "
                    "checked above against the model's own logits")
    torch.testing.assert_close(dla.layers.per_example, comps.attribution.T, atol=ATOL, rtol=0)
    if any(_has_post_attn_norm(model, l) for l in range(model.cfg.n_layers)):
        pytest.skip("TL's head DLA projects each head's output as if it joined the residual directly, "
                    "skipping the post-attention norm it goes through; ours is checked against TL's stacked "
                    "head results pushed through that norm (test_heads_equal_transformerlens_stacked_head_results)")
    L, H = model.cfg.n_layers, model.cfg.n_heads
    with torch.inference_mode():
        heads = tl_dla(model, tok.clean, correct, incorrect, unit="head")
    assert heads.labels[: L * H] == [f"L{l}H{h}" for l in range(L) for h in range(H)]
    torch.testing.assert_close(dla.heads.per_example, heads.attribution[: L * H].T.reshape(-1, L, H),
                               atol=ATOL, rtol=0)
