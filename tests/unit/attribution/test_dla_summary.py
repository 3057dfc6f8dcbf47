"""The summary's account of the DLA gap: closed, or with its cause named — never 'numerical error'."""

from __future__ import annotations

import pytest

import circuitwise as cw
from circuitwise.attribution import baseline, direct_logit_attribution
from circuitwise.reports.summary import FLOAT_GAP, dla_closure
from circuitwise.schema.results import DLASection

VAGUE = ("numerical error", "float error", "rounding")


def _sentences(model):
    tok, _ = cw.tokenize_task(model, cw.get_task("opposites-seed").subset(range(3)))
    dla = direct_logit_attribution(model, tok).to_json()
    return dla, " ".join(dla_closure(DLASection.model_validate(dla), float(baseline(model, tok).logit_diff.mean())))


def _section(**fields) -> DLASection:
    """A DLA section with the given closure numbers (and a trivial decomposition around them)."""
    base = {"final_resid_per_prompt": [fields["final_resid"]], "logit_lens": {"labels": ["final_post"], "values": [1.0]},
            "layers": {"labels": ["embed"], "values": [1.0]}, "heads": [[0.0]]}
    return DLASection.model_validate({**base, **fields})


@pytest.mark.parametrize("family", ["gpt2", "gemma2", "olmo2"])
def test_summary_says_the_decomposition_closes_and_names_the_soft_cap(family, family_model_for):
    model = family_model_for(family)
    dla, text = _sentences(model)
    assert dla["closure_error"] < FLOAT_GAP
    assert "the decomposition closes" in text
    assert not any(v in text for v in VAGUE)
    assert ("soft-caps its logits" in text) == (family == "gemma2")
    assert ("pre-cap logit difference" in text) == (family == "gemma2")
    assert ("normalised before they join" in text) == (family in ("gemma2", "olmo2"))


def test_an_unfolded_final_norm_bias_is_named(family_ckpt_for_raw_gpt2):
    dla, text = _sentences(family_ckpt_for_raw_gpt2)
    assert abs(dla["norm_bias"]) > 1e-3  # the fixture's LayerNorm bias is random, not folded
    assert "final norm's own bias" in text and "the decomposition closes" in text


@pytest.fixture(scope="module")
def family_ckpt_for_raw_gpt2(family_root):
    from tests.conftest import family_ckpt_for

    return cw.load_model(str(family_ckpt_for("gpt2", family_root)), device="cpu", processing=False)


@pytest.mark.parametrize("gap", [2e-4, 0.05, -0.3])
def test_a_gap_above_float_precision_is_never_called_numerical_error(gap):
    dla = _section(final_resid=1.0, unembed_bias=0.2, norm_bias=0.0, logit_diff=1.2 + gap,
                   closure_error=abs(gap), target="logit_diff", nonlinear=[])
    text = " ".join(dla_closure(dla, 1.2 + gap))
    assert "the decomposition closes" not in text
    assert not any(v in text for v in VAGUE)
    assert "bug" in text  # the cause is named: the norm was misread


def test_a_half_precision_models_rounding_is_named_not_called_a_bug(family_root):
    import torch

    from tests.conftest import family_ckpt_for

    model = cw.load_model(str(family_ckpt_for("llama", family_root)), device="cpu").to(torch.bfloat16)
    dla, text = _sentences(model)
    assert dla["dtype"] == "bfloat16"
    assert FLOAT_GAP <= dla["closure_error"] < dla["rounding"]  # bf16 really does not close to 1e-4
    assert "computes in bfloat16" in text and "bug" not in text
    assert "numerical error" not in text and "float error" not in text  # the cause is named instead


def test_in_float32_rounding_is_far_below_the_float_gap(family_model_for):
    dla, _ = _sentences(family_model_for("llama"))
    assert dla["dtype"] == "float32" and dla["rounding"] < FLOAT_GAP / 10


def test_logits_changed_after_the_unembedding_are_named():
    dla = _section(final_resid=1.0, unembed_bias=0.2, norm_bias=0.0, logit_diff=1.2, closure_error=0.0,
                   target="logit_diff", nonlinear=[], dtype="float32", rounding=1e-7)
    text = " ".join(dla_closure(dla, 1.5))
    assert "the decomposition closes" in text
    assert "something after the unembedding changes its logits by +0.3" in text
