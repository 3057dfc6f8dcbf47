"""The processing record says, per family, which steps were applied — and it is true of the weights."""

from __future__ import annotations

import json

import pytest
import torch

import circuitwise as cw
from circuitwise.models import Processing, ProcessingStep
from circuitwise.models.processing import NOTHING, STEP_NAMES


def _identity_norms(model) -> bool:
    """Every norm that reads the residual has identity weight (1, or 0 for Gemma's 1+w) and no bias."""
    offset = bool(getattr(model.cfg, "rmsnorm_uses_offset", False))
    mods = [getattr(b, n) for b in model.blocks for n in ("ln1", "ln2") if n in b._modules] + [model.ln_final]
    for m in mods:
        w = getattr(m, "weight", None)
        if w is not None and not torch.allclose(w.float(), torch.full_like(w.float(), 0.0 if offset else 1.0)):
            return False
        b = getattr(m, "bias", None)
        if b is not None and not torch.allclose(b.float(), torch.zeros_like(b.float())):
            return False
    return True


def test_record_is_true_of_the_weights(family_ckpt, family_model):
    family, _ = family_ckpt
    rec = family_model.circuitwise_processing
    cfg = family_model.cfg
    assert isinstance(rec, Processing) and rec.requested
    assert [s.name for s in rec.steps] == list(STEP_NAMES)
    # Skipped exactly where the architecture forbids it, each with its reason.
    rotary = cfg.positional_embedding_type == "rotary"
    assert rec.applied("refactor_factored_attn_matrices") is not rotary
    softcap = (cfg.output_logits_soft_cap or -1) > 0
    assert rec.applied("center_unembed") is not softcap
    layer_norm = cfg.normalization_type in ("LN", "LNPre")
    assert rec.applied("center_writing_weights") is layer_norm
    for s in rec.steps:
        assert s.applied or s.reason, f"{family}: {s.name} skipped without a reason"
    # And the record matches what TransformerLens really did to the weights.
    w_u = family_model.W_U.float()
    centred = bool(w_u.mean(-1).abs().max() < 1e-5 * w_u.abs().max())
    assert centred is rec.applied("center_unembed")
    if rec.applied("fold_ln") and rec.step("fold_ln").reason is None:
        assert _identity_norms(family_model)
    b_v = [b.attn.b_V for b in family_model.blocks if getattr(b.attn, "b_V", None) is not None]
    assert rec.applied("fold_value_biases") is bool(b_v)
    assert all(bool((b == 0).all()) for b in b_v)
    if rec.applied("refactor_factored_attn_matrices"):
        w_o = family_model.blocks[-1].attn.W_O.float()
        torch.testing.assert_close(w_o @ w_o.transpose(-1, -2), torch.eye(w_o.shape[-2]).expand(w_o.shape[0], -1, -1),
                                   atol=1e-4, rtol=0)
    if rec.applied("center_writing_weights"):
        w_o = family_model.blocks[0].attn.W_O.float()
        assert w_o.mean(-1).abs().max() < 1e-5 * w_o.abs().max()


def test_a_step_with_nothing_to_act_on_is_recorded_but_not_a_note(family_model_for):
    rec = family_model_for("llama").circuitwise_processing  # Llama's attention has no biases
    step = rec.step("fold_value_biases")
    assert not step.applied and step.reason.startswith(NOTHING)
    assert not any("fold_value_biases" in n for n in rec.notes())


def test_gpt2_gets_all_of_the_seeds_processing(family_model_for):
    rec = family_model_for("gpt2").circuitwise_processing
    assert all(s.applied and s.reason is None for s in rec.steps)
    assert rec.notes() == []


def test_rotary_skips_the_refactor_with_the_reason(family_model_for):
    step = family_model_for("pythia").circuitwise_processing.step("refactor_factored_attn_matrices")
    assert not step.applied and "rotary" in step.reason


def test_soft_cap_skips_centring_the_unembedding(family_model_for):
    rec = family_model_for("gemma2").circuitwise_processing
    assert not rec.applied("center_unembed") and "soft-capped" in rec.step("center_unembed").reason
    assert not rec.applied("center_writing_weights") and "RMSNorm" in rec.step("center_writing_weights").reason
    assert any("center_unembed skipped" in n for n in rec.notes())


def test_olmo2_post_norms_are_not_folded_and_the_record_says_so(family_model_for):
    # TL's OLMo 2 adapter refuses fold_ln (its norms follow attention/MLP); ln_final keeps its weight.
    m = family_model_for("olmo2")
    step = m.circuitwise_processing.step("fold_ln")
    assert not step.applied and "ln_final" in step.reason
    assert not torch.allclose(m.ln_final.weight.float(), torch.ones_like(m.ln_final.weight.float()))


def test_json_round_trip_and_one_note_per_skip(family_model_for):
    rec = family_model_for("gemma2").circuitwise_processing
    data = json.loads(json.dumps(rec.to_json()))
    assert Processing.from_json(data) == rec
    assert data["steps"][0] == {"name": "fold_ln", "applied": True, "reason": None}
    assert len(rec.notes()) == sum(1 for s in rec.steps if s.reason and not s.reason.startswith(NOTHING))
    assert all("\n" not in n for n in rec.notes())


def test_no_processing_is_recorded(family_path_for):
    m = cw.load_model(str(family_path_for("llama")), device="cpu", processing=False)
    rec = m.circuitwise_processing
    assert not rec.requested and not any(s.applied for s in rec.steps)
    assert rec.notes() == [rec.notes()[0]] and "off" in rec.notes()[0]


def test_public_api_exports_the_record():
    from circuitwise import models

    assert {"Processing", "ProcessingStep"} <= set(models.__all__)
    assert ProcessingStep("fold_ln", True).reason is None
