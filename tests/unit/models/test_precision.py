"""bfloat16 on every family: against float32 within the documented bound per quantity, and against
TransformerLens's own bfloat16 forward.

The bounds live in :mod:`circuitwise.models.precision` (and the README's "Precision" table):
values in logits (logit difference, DLA, patched and circuit metrics) within
``4 · eps · (1 + max |logit difference|)`` of float32 (eps = 2⁻⁷ for bfloat16; measured: at most
0.8 eps on these fixtures), DLA's closure within its own stated ``rounding``, and the top edges by
|score| shared (8 of 10; measured 9–10). Normalised numbers (patching's restored share,
faithfulness) divide by the clean − corrupted gap, which is small on random weights, so they are
checked through their raw metrics.
"""

from __future__ import annotations

import json

import pytest
import torch

import circuitwise as cw
from circuitwise.errors import CircuitwiseError, ModelLoadError
from circuitwise.models import dtype_of
from circuitwise.models.precision import TOP_EDGES_SHARED, value_bound
from circuitwise.patching import activation_patching, attribution_patching
from tests.families import FAMILIES

# TransformerLens 4.3's OLMo 2 attention bridge multiplies a float32 pattern by half-precision values.
NO_HALF = {"olmo2"}
HALF_FAMILIES = [f for f in FAMILIES if f not in NO_HALF]

_bf16: dict[str, object] = {}


@pytest.fixture(scope="module")
def seed_task():
    return cw.get_task("opposites-seed").subset((1, 2, 5))


def _pair(family, family_model_for, family_path_for, task):
    if family not in _bf16:
        _bf16[family] = cw.load_model(str(family_path_for(family)), device="cpu", dtype="bfloat16")
    m32, m16 = family_model_for(family), _bf16[family]
    tok32, _ = cw.tokenize_task(m32, task, need_corrupted=True)
    tok16, _ = cw.tokenize_task(m16, task, need_corrupted=True)
    return m32, m16, tok32, tok16


def _answer_ld(model, tokens, tok):
    logits = model(tokens)
    rows = torch.arange(len(tok))
    a = logits[rows, tok.last].gather(-1, tok.answers).float()
    return a[:, 0] - a[:, 1]


@pytest.mark.parametrize("family", HALF_FAMILIES)
def test_bfloat16_against_float32_and_transformerlens(family, family_model_for, family_path_for, seed_task):
    m32, m16, tok32, tok16 = _pair(family, family_model_for, family_path_for, seed_task)
    assert m16.W_E.dtype == torch.bfloat16 and dtype_of(m16) == "bfloat16" and dtype_of(m32) == "float32"

    bl32, bl16 = cw.baseline(m32, tok32), cw.baseline(m16, tok16)
    # Our baseline in bf16 is TransformerLens's own bf16 forward, read at each prompt's last token.
    torch.testing.assert_close(bl16.logit_diff.float(), _answer_ld(m16, tok16.clean, tok16), atol=0, rtol=0)
    bound = value_bound(torch.bfloat16, float(bl32.logit_diff.abs().max()), m32.cfg.n_layers)
    assert float((bl16.logit_diff.float() - bl32.logit_diff.float()).abs().max()) <= bound

    d32, d16 = cw.direct_logit_attribution(m32, tok32), cw.direct_logit_attribution(m16, tok16)
    assert d16.dtype == "bfloat16"
    assert d16.closure_error <= d16.rounding, "the decomposition must close to the model's own rounding"
    assert float((d16.heads.values - d32.heads.values).abs().max()) <= bound
    assert float((d16.layers.values - d32.layers.values).abs().max()) <= bound

    p32 = activation_patching(m32, tok32, "heads", normalize=False)
    p16 = activation_patching(m16, tok16, "heads", normalize=False)
    # The fast engine agrees with TL's bf16 forward within the dtype's tolerance, so it is kept.
    assert p16.config["engine"] == p32.config["engine"]
    assert float((p16.raw - p32.raw).abs().max()) <= bound

    a32 = attribution_patching(m32, tok32, "heads", normalize=False)
    a16 = attribution_patching(m16, tok16, "heads", normalize=False)
    assert float((a16.values.float() - a32.values.float()).abs().max()) <= bound


@pytest.mark.parametrize("family", HALF_FAMILIES)
def test_bfloat16_edge_scores_and_circuit_metric(family, family_model_for, family_path_for, seed_task):
    m32, m16, tok32, tok16 = _pair(family, family_model_for, family_path_for, seed_task)
    f32 = cw.find_circuit(m32, tok32, method="eap-ig", selection="top-n", n=10)
    f16 = cw.find_circuit(m16, tok16, method="eap-ig", selection="top-n", n=10)
    assert f16.scores.scores.dtype == torch.float32, "scores are accumulated in float32"
    k = 10
    top = lambda s: set(s.abs().topk(k).indices.tolist())  # noqa: E731
    assert len(top(f32.scores.scores) & top(f16.scores.scores)) >= TOP_EDGES_SHARED * k
    # The same edge set, evaluated in each dtype: the circuit's raw metric within the value bound.
    e32 = cw.evaluate_circuit(m32, tok32, f32.circuit, random_samples=0, curve=False, mib=False)
    e16 = cw.evaluate_circuit(m16, tok16, cw.circuits.Circuit.from_json(f32.circuit.to_json(), m16),
                              random_samples=0, curve=False, mib=False)
    bound = value_bound(torch.bfloat16, abs(e32.faithfulness.clean_metric), m32.cfg.n_layers)
    assert abs(e16.faithfulness.circuit_metric - e32.faithfulness.circuit_metric) <= bound
    assert abs(e16.faithfulness.clean_metric - e32.faithfulness.clean_metric) <= bound


@pytest.mark.parametrize("family", sorted(NO_HALF))
def test_a_family_transformerlens_cannot_run_in_half_precision_is_refused_before_work(family, family_path_for):
    path = str(family_path_for(family))
    with pytest.raises(ModelLoadError, match="--dtype float32"):
        cw.load_model(path, device="cpu", dtype="bfloat16")
    # auto on a GPU would pick the checkpoint's dtype; where TL cannot run it, float32 instead.
    assert cw.load_model(path, device="cpu", dtype="auto").W_E.dtype == torch.float32


def test_auto_is_float32_on_the_cpu_and_the_checkpoints_dtype_elsewhere(family_path_for, tmp_path):
    import json
    import shutil

    from circuitwise.models.loading import pick_dtype

    src = family_path_for("llama")
    ck = tmp_path / "ck"
    shutil.copytree(src, ck)
    cfg = json.loads((ck / "config.json").read_text())
    cfg.pop("dtype", None)
    cfg["torch_dtype"] = "bfloat16"
    (ck / "config.json").write_text(json.dumps(cfg))
    assert pick_dtype("auto", "cpu", str(ck), True) == torch.float32
    assert pick_dtype(None, "cuda", str(ck), True) == torch.bfloat16
    assert pick_dtype("float16", "cpu", str(ck), True) == torch.float16
    with pytest.raises(ModelLoadError, match="Use auto, float32"):
        pick_dtype("fp8", "cpu", str(ck), True)


def test_every_command_takes_dtype_and_every_output_records_it(tmp_path):
    from typer.testing import CliRunner

    from circuitwise.cli import _register, app

    _register()
    runner = CliRunner()
    out = tmp_path / "run"
    r = runner.invoke(app, ["run", "opposites", "--model", "bundled", "--n", "8", "--dtype", "bfloat16",
                            "--patch", "heads", "--out", str(out)], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    results = json.loads((out / "results.json").read_text())
    assert results["model"]["dtype"] == "bfloat16"
    assert json.loads((out / "circuit.json").read_text())["model"]["dtype"] == "bfloat16"
    assert "dtype: bfloat16" in (out / "config.yaml").read_text()
    r = runner.invoke(app, ["patch", "opposites", "--model", "bundled", "--n", "4", "--dtype", "bfloat16",
                            "--what", "heads", "--out", str(tmp_path / "patch")], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "patch" / "patching.json").read_text())["dtype"] == "bfloat16"
    r = runner.invoke(app, ["compare", "numbers-digits", "numbers-words", "--model", "bundled", "--n", "6",
                            "--dtype", "bfloat16", "--no-patching", "--circuit", "none", "--bootstrap", "100",
                            "--permutations", "100", "--out", str(tmp_path / "cmp")], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    sides = json.loads((tmp_path / "cmp" / "compare.json").read_text())
    assert sides["a"]["model_info"]["dtype"] == sides["b"]["model_info"]["dtype"] == "bfloat16"
    for command in (["run", "opposites"], ["patch", "opposites"], ["circuit", "opposites"],
                    ["benchmark", "opposites"], ["compare", "opposites", "--model-b", "bundled-llama"],
                    ["prompt", "A tortoise is old, but a kitten is", "--answer", "young"]):
        bad = runner.invoke(app, [*command, "--dtype", "fp8", "--out", str(tmp_path / "bad")]
                            if command[0] != "prompt" else [*command, "--dtype", "fp8"])
        # A clean error (what main() prints without a traceback) that names the valid dtypes.
        assert isinstance(bad.exception, CircuitwiseError), (command, repr(bad.exception))
        assert bad.exception.exit_code == 2 and "float32" in str(bad.exception), command
        assert not (tmp_path / "bad").exists(), "nothing is written for a refused option"


def test_wide_sums_fall_back_to_float32_on_mps_only():
    """MPS has no float64: the metrics' wide reductions (logprob, kl) use float32 there, float64 elsewhere."""
    from circuitwise.models.precision import wide_dtype

    assert wide_dtype("mps") == torch.float32
    assert wide_dtype("cpu") == wide_dtype(torch.device("cuda", 1)) == torch.float64
