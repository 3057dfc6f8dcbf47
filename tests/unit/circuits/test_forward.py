"""Our graph forward equals the bridge's own forward, and patching everything/nothing closes."""

from __future__ import annotations

import types

import pytest
import torch

import circuitwise as cw
from circuitwise.circuits.forward import check_against_bridge, graph_model, run_graph
from circuitwise.errors import ConfigError

ATOL = 1e-5


def test_unpatched_forward_equals_the_bridge(tiny_model, tiny_tok):
    gm = graph_model(tiny_model)
    run = run_graph(gm, gm.embed(tiny_tok.clean), tiny_tok.last, tiny_tok.answers, record=True)
    logits, cache = tiny_model.run_with_cache(tiny_tok.clean)
    ref = logits[torch.arange(len(tiny_tok)), tiny_tok.last].gather(-1, tiny_tok.answers)
    torch.testing.assert_close(run.answer_logits[0], ref, atol=ATOL, rtol=0)
    out, g = run.outputs, gm.graph
    torch.testing.assert_close(out[0], cache["hook_embed"] + cache["hook_pos_embed"], atol=ATOL, rtol=0)
    for l in range(g.n_layers):
        heads = torch.einsum("nphe,hed->hnpd", cache[f"blocks.{l}.attn.hook_z"], tiny_model.W_O[l])
        torch.testing.assert_close(out[g.head_senders(l)], heads, atol=ATOL, rtol=0)
        torch.testing.assert_close(out[g.mlp_sender(l)], cache[f"blocks.{l}.hook_mlp_out"], atol=ATOL, rtol=0)


def test_right_padded_prompts_of_different_lengths(tiny_model):
    task = cw.Task("mixed", (
        cw.Example("A tortoise is old, but a kitten is", " young", " old", "A tortoise is young, but a kitten is"),
        cw.Example("Ice is", " cold", " hot", "Fire is"),
    ))
    tok, _ = cw.tokenize_task(tiny_model, task, need_corrupted=True)
    assert not tok.same_length
    gm = graph_model(tiny_model)
    check_against_bridge(tiny_model, gm, tok.clean, tok.last, tok.answers, atol=1e-5)


def _keep(g, value):
    return torch.full((1, len(g.senders), len(g.receivers)), float(value))


def test_keep_all_is_clean_and_keep_none_is_corrupted(small_model, small_tok):
    gm = graph_model(small_model)
    g = gm.graph
    x_c, x_k = gm.embed(small_tok.clean), gm.embed(small_tok.corrupted)
    a = (small_tok.last, small_tok.answers)
    clean = run_graph(gm, x_c, *a).answer_logits
    corr = run_graph(gm, x_k, *a, record=True)
    both = torch.cat([_keep(g, 1), _keep(g, 0)])
    patched = run_graph(gm, x_c, *a, keep=both, replacement=corr.outputs).answer_logits
    torch.testing.assert_close(patched[0], clean[0], atol=ATOL, rtol=0)
    torch.testing.assert_close(patched[1], corr.answer_logits[0], atol=ATOL, rtol=0)


def test_stacked_masks_equal_one_at_a_time(small_model, small_tok):
    gm = graph_model(small_model)
    g = gm.graph
    gen = torch.Generator().manual_seed(0)
    keep = (torch.rand(3, len(g.senders), len(g.receivers), generator=gen) > 0.5).float()
    x_c = gm.embed(small_tok.clean)
    rep = run_graph(gm, gm.embed(small_tok.corrupted), small_tok.last, small_tok.answers, record=True).outputs
    together = run_graph(gm, x_c, small_tok.last, small_tok.answers, keep=keep, replacement=rep).answer_logits
    for k in range(3):
        alone = run_graph(gm, x_c, small_tok.last, small_tok.answers, keep=keep[k:k + 1], replacement=rep)
        torch.testing.assert_close(together[k], alone.answer_logits[0], atol=ATOL, rtol=0)


def test_unsupported_architecture_is_refused_with_the_fix():
    # Rotary, grouped-query and gated models are supported now; ALiBi and attention-only are not.
    cfg = types.SimpleNamespace(positional_embedding_type="alibi", n_heads=4, n_layers=2, act_fn="gelu")
    with pytest.raises(ConfigError, match="does not support this model: positional embedding 'alibi'"):
        graph_model(types.SimpleNamespace(cfg=cfg))
    cfg = types.SimpleNamespace(positional_embedding_type="standard", attn_only=True, n_heads=8, n_layers=2)
    with pytest.raises(ConfigError, match="attention-only"):
        graph_model(types.SimpleNamespace(cfg=cfg))
