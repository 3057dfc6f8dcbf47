"""DLA, logit lens and baseline equal TransformerLens's own functions on the same model."""

from __future__ import annotations

import pytest
import torch

import circuitwise as cw
from circuitwise.attribution import baseline, direct_logit_attribution

ATOL = 1e-4


@pytest.fixture(scope="module")
def seed_tok(tiny_model):
    tok, _ = cw.tokenize_task(tiny_model, cw.get_task("opposites-seed"))
    return tok


def _tl_reference(model, tok):
    logits, cache = model.run_with_cache(tok.clean)
    ld = logits[:, -1].gather(-1, tok.answers)
    dirs = model.tokens_to_residual_directions(tok.answers)
    dirs = dirs[:, 0] - dirs[:, 1]

    def project(stack):
        return (cache.apply_ln_to_stack(stack, layer=-1, pos_slice=-1) * dirs).sum(-1).mean(-1)

    heads = cache.stack_head_results(layer=-1, pos_slice=-1)
    acc = cache.accumulated_resid(layer=-1, incl_mid=True, apply_ln=True, pos_slice=-1)
    layers = cache.decompose_resid(layer=-1, pos_slice=-1)
    final = cache["resid_post", -1][:, -1]
    return {
        "ld": ld[:, 0] - ld[:, 1],
        "heads": project(heads).reshape(model.cfg.n_layers, model.cfg.n_heads),
        "lens": (acc * dirs).sum(-1).mean(-1),  # each point through ln_final with its own statistics
        "layers": project(layers),
        "final": project(final[None])[0],
    }


def test_seed_prompts_have_equal_length_so_tl_reads_the_same_positions(seed_tok):
    assert seed_tok.same_length


def test_baseline_and_dla_equal_transformerlens(tiny_model, seed_tok):
    ref = _tl_reference(tiny_model, seed_tok)
    bl = baseline(tiny_model, seed_tok)
    dla = direct_logit_attribution(tiny_model, seed_tok, batch_size=4)  # two batches: 4 + 2
    torch.testing.assert_close(bl.logit_diff, ref["ld"], atol=ATOL, rtol=0)
    torch.testing.assert_close(dla.heads.values, ref["heads"], atol=ATOL, rtol=0)
    torch.testing.assert_close(dla.logit_lens.values, ref["lens"], atol=ATOL, rtol=0)
    torch.testing.assert_close(dla.layers.values, ref["layers"], atol=ATOL, rtol=0)
    assert float(dla.final_resid.mean()) == pytest.approx(float(ref["final"]), abs=ATOL)


def test_decomposition_closes(tiny_model, seed_tok):
    """embed + pos_embed + every attn_out and mlp_out = final residual; + unembed bias = logit diff."""
    bl = baseline(tiny_model, seed_tok)
    dla = direct_logit_attribution(tiny_model, seed_tok)
    torch.testing.assert_close(dla.layers.per_example.sum(1), dla.final_resid, atol=ATOL, rtol=0)
    torch.testing.assert_close(dla.final_resid + dla.unembed_bias, bl.logit_diff, atol=ATOL, rtol=0)
    assert dla.logit_lens.values[-1] == pytest.approx(float((dla.final_resid + dla.norm_bias).mean()), abs=ATOL)


def test_prompts_of_different_lengths_are_read_at_their_own_last_token(tiny_model):
    task = cw.Task("mixed", (
        cw.Example("A tortoise is old, but a kitten is", " young", " old"),
        cw.Example("The very old and slow tortoise is old, but the tiny kitten is", " young", " old"),
        cw.Example("Ice is", " cold", " hot"),
    ))
    tok, _ = cw.tokenize_task(tiny_model, task)
    assert not tok.same_length
    together = baseline(tiny_model, tok)
    dla = direct_logit_attribution(tiny_model, tok)
    for i, ex in enumerate(task):
        alone_tok, _ = cw.tokenize_task(tiny_model, cw.Task("one", (ex,)))
        alone = _tl_reference(tiny_model, alone_tok)
        assert float(together.logit_diff[i]) == pytest.approx(float(alone["ld"][0]), abs=ATOL)
        torch.testing.assert_close(dla.heads.per_example[i], alone["heads"], atol=ATOL, rtol=0)
