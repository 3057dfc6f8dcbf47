"""`run` on the families whose blocks DLA once broke on: results.json closes, the report says why."""

from __future__ import annotations

import pytest
from markupsafe import escape

import circuitwise as cw
from circuitwise.config import RunConfig


@pytest.mark.parametrize(("family", "processing"), [
    ("pythia", True),  # parallel blocks: no resid_mid (was a KeyError)
    ("gemma2", True),  # soft-capped logits, post-attention and post-MLP norms
    ("llama", False),  # RMSNorm with its own weight (was centred as a LayerNorm)
    ("gpt2", False),  # LayerNorm with a bias fold_ln did not fold
])
def test_run_writes_a_dla_that_closes_and_a_report_that_names_the_gap(family, processing, tmp_path,
                                                                         family_root, family_model_for):
    from tests.conftest import family_ckpt_for

    path = family_ckpt_for(family, family_root)
    model = family_model_for(family) if processing else None
    cfg = RunConfig(task="opposites-seed", model=str(path), out=tmp_path / "run", processing=processing,
                    patching=(), attribution=False, circuit=None)
    res = cw.run(cfg, model=model).results
    d, bl = res.dla, res.baseline
    assert d.closure_error < 1e-4
    assert sum(d.layers.values) == pytest.approx(d.final_resid, abs=1e-4)
    assert d.final_resid + d.norm_bias + d.unembed_bias == pytest.approx(d.logit_diff, abs=1e-4)
    if d.target == "logit_diff":
        assert d.logit_diff == pytest.approx(bl.logit_diff.mean, abs=1e-4)
    assert ("0_mid" in d.logit_lens.labels) == (family != "pythia")
    html = (tmp_path / "run" / "report.html").read_text()
    assert "the decomposition closes" in html
    assert "float error" not in html and "numerical error" not in html
    for caveat in d.caveats:
        assert str(escape(caveat.split(":")[0])) in html  # as the report's templates escape it
