"""Transcoder files: every layout round-trips exactly, others' files read as written, bad files are refused."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import load_file, save_file

from circuitwise.errors import TranscoderError
from circuitwise.features.formats import check_model, detect_layout, load_transcoders, save_transcoders
from tests.unit.features.transcoder_sets import random_set, same

KINDS = [dict(activation="relu"), dict(activation="topk", k=3), dict(activation="jumprelu"),
         dict(activation="topk", k=3, skip=True), dict(activation="jumprelu", skip=True, site="resid_mid")]


@pytest.mark.parametrize("kind", KINDS + [dict(activation="relu", cross_layer=True, skip=True),
                                          dict(activation="topk", k=2, cross_layer=True)])
def test_circuitwise_round_trip(tmp_path, kind):
    ts = random_set(n_layers=3, **kind)
    save_transcoders(ts, tmp_path / "out")
    back = load_transcoders(tmp_path / "out")
    same(ts, back)
    assert (back.model, back.fingerprint, back.meta) == (ts.model, ts.fingerprint, ts.meta)
    assert [t.meta for t in back.transcoders] == [t.meta for t in ts.transcoders]


@pytest.mark.parametrize("kind", KINDS)
def test_circuit_tracer_round_trip(tmp_path, kind):
    ts = random_set(**kind)
    save_transcoders(ts, tmp_path / "ct", layout="circuit-tracer")
    assert detect_layout(tmp_path / "ct") == "circuit-tracer"
    back = load_transcoders(tmp_path / "ct")
    same(ts, back)
    assert back.model == "toy" and back.fingerprint == ts.fingerprint


def test_circuit_tracer_files_are_theirs(tmp_path):
    """The keys, transposes and config entries circuit-tracer's load_transcoder / load_transcoder_set read."""
    ts = random_set(d=8, n=12, activation="jumprelu", skip=True)
    save_transcoders(ts, tmp_path, layout="circuit-tracer")
    cfg = yaml.safe_load((tmp_path / "config.yaml").read_text())
    assert cfg["model_kind"] == "transcoder_set" and cfg["model_name"] == "toy"
    assert (cfg["feature_input_hook"], cfg["feature_output_hook"]) == ("ln2.hook_normalized", "hook_mlp_out")
    assert "activation" not in cfg  # JumpReLU is read from the thresholds
    f = load_file(str(tmp_path / "layer_1.safetensors"))
    assert set(f) == {"W_enc", "W_dec", "b_enc", "b_dec", "W_skip", "activation_function.threshold"}
    t = ts[1]
    torch.testing.assert_close(f["W_enc"], t.W_enc.T)  # [n, d]: F.linear(x, W_enc, b_enc)
    torch.testing.assert_close(f["W_dec"], t.W_dec)  # [n, d]
    x = torch.randn(4, 8)
    torch.testing.assert_close(x @ f["W_skip"].T, t.skip(x))  # circuit-tracer's compute_skip
    pre = torch.nn.functional.linear(x, f["W_enc"], f["b_enc"])
    thr = f["activation_function.threshold"]
    torch.testing.assert_close((pre * (pre > thr)) @ f["W_dec"] + f["b_dec"], t.decode(t.encode(x)))

    topk = random_set(activation="topk", k=3)
    save_transcoders(topk, tmp_path / "k", layout="circuit-tracer")
    cfg = yaml.safe_load((tmp_path / "k" / "config.yaml").read_text())
    assert (cfg["activation"], cfg["k"]) == ("topk", 3)
    # k lives in config.yaml only: circuit-tracer 0.5's loader refuses unexpected tensors.
    assert "k" not in load_file(str(tmp_path / "k" / "layer_0.safetensors"))
    back = load_transcoders(tmp_path / "k")
    assert [(t.activation, t.k) for t in back.transcoders] == [("topk", 3)] * len(topk)


def test_circuit_tracer_written_by_hand(tmp_path):
    """Files as circuit-tracer's examples ship them: a relu set, hooks named, W_dec of the first files [d, n]."""
    g = torch.Generator().manual_seed(3)
    d, n = 6, 10
    raw = []
    for i in range(2):
        W_enc, W_dec, b_enc, b_dec = (torch.randn(n, d, generator=g), torch.randn(n, d, generator=g),
                                      torch.randn(n, generator=g), torch.randn(d, generator=g))
        raw.append((W_enc, W_dec, b_enc, b_dec))
        # layer 1 in safety-research/circuit-tracer's first layout: W_dec stored [d_model, n]
        save_file({"W_enc": W_enc, "W_dec": W_dec if i == 0 else W_dec.T.contiguous(), "b_enc": b_enc, "b_dec": b_dec},
                  str(tmp_path / f"layer_{i}.safetensors"))
    (tmp_path / "config.yaml").write_text("model_name: meta-llama/Llama-3.2-1B\nmodel_kind: transcoder_set\n"
                                          "feature_input_hook: hook_resid_mid\nfeature_output_hook: mlp.hook_out\n")
    ts = load_transcoders(tmp_path)
    assert ts.model == "meta-llama/Llama-3.2-1B" and ts[0].site == "resid_mid" and ts[0].activation == "relu"
    x = torch.randn(3, d, generator=g)
    for i, (W_enc, W_dec, b_enc, b_dec) in enumerate(raw):
        want = torch.relu(x @ W_enc.T + b_enc) @ W_dec + b_dec
        torch.testing.assert_close(ts[i].decode(ts[i].encode(x)), want)


@pytest.mark.parametrize("kind", [dict(activation="relu"), dict(activation="jumprelu", skip=True),
                                  dict(activation="topk", k=4)])
def test_clt_round_trip(tmp_path, kind):
    ts = random_set(n_layers=3, cross_layer=True, **kind)
    save_transcoders(ts, tmp_path, layout="circuit-tracer-clt")
    assert detect_layout(tmp_path) == "circuit-tracer-clt"
    same(ts, load_transcoders(tmp_path))
    # circuit-tracer's files: W_enc_i [n, d] beside b_enc_i, b_dec_i; W_dec_i [n, n_layers - i, d]
    enc, dec = load_file(str(tmp_path / "W_enc_1.safetensors")), load_file(str(tmp_path / "W_dec_1.safetensors"))
    assert enc["W_enc_1"].shape == (12, 8) and enc["b_dec_1"].shape == (8,) and dec["W_dec_1"].shape == (12, 2, 8)
    assert yaml.safe_load((tmp_path / "config.yaml").read_text())["model_kind"] == "cross_layer_transcoder"


def test_gemma_scope_round_trip_and_keys(tmp_path):
    ts = random_set(activation="jumprelu")
    save_transcoders(ts, tmp_path, layout="gemma-scope")
    assert detect_layout(tmp_path) == "gemma-scope"
    same(ts, load_transcoders(tmp_path))
    with np.load(tmp_path / "layer_0" / "params.npz", allow_pickle=False) as z:
        assert sorted(z.files) == ["W_dec", "W_enc", "b_dec", "b_enc", "threshold"]
        assert z["W_enc"].shape == (8, 12) and z["W_dec"].shape == (12, 8)  # Gemma Scope's [d_model, n], [n, d_model]


def test_gemma_scope_relu_is_jumprelu_at_zero(tmp_path):
    ts = random_set(activation="relu")
    save_transcoders(ts, tmp_path, layout="gemma-scope")
    back = load_transcoders(tmp_path)
    assert back[0].activation == "jumprelu"
    x = torch.randn(6, 8)
    for l in range(2):
        torch.testing.assert_close(back.mlp_out([x, x], l), ts.mlp_out([x, x], l), rtol=0, atol=0)


def test_gemma_scope_as_released(tmp_path):
    """Gemma Scope's repo: layer_i/width_16k/average_l0_N/params.npz; several per layer must be chosen in a config."""
    ts = random_set(activation="jumprelu")
    for l, t in enumerate(ts.transcoders):
        d = tmp_path / "gs" / f"layer_{l}" / "width_16k" / "average_l0_76"
        d.mkdir(parents=True)
        np.savez(d / "params.npz", W_enc=t.W_enc.numpy(), W_dec=t.W_dec.numpy(), b_enc=t.b_enc.numpy(),
                 b_dec=t.b_dec.numpy(), threshold=t.threshold.numpy())
    same(ts, load_transcoders(tmp_path / "gs"))
    (tmp_path / "gs" / "layer_0" / "width_16k" / "average_l0_12").mkdir()
    np.savez(tmp_path / "gs" / "layer_0" / "width_16k" / "average_l0_12" / "params.npz", W_enc=np.zeros(1))
    with pytest.raises(TranscoderError, match="choose one per layer"):
        load_transcoders(tmp_path / "gs")
    # circuit-tracer's Gemma config lists the chosen files
    chosen = [str(tmp_path / "gs" / f"layer_{l}" / "width_16k" / "average_l0_76" / "params.npz") for l in range(2)]
    cfg = {"model_name": "google/gemma-2-2b", "model_kind": "transcoder_set",
           "feature_input_hook": "ln2.hook_normalized", "feature_output_hook": "hook_mlp_out", "transcoders": chosen}
    (tmp_path / "cfg").mkdir()
    (tmp_path / "cfg" / "config.yaml").write_text(yaml.safe_dump(cfg))
    same(ts, load_transcoders(tmp_path / "cfg"))


# -- bad files -----------------------------------------------------------------------------------------

def test_missing_layer(tmp_path):
    save_transcoders(random_set(n_layers=3), tmp_path, layout="circuit-tracer")
    (tmp_path / "layer_1.safetensors").unlink()
    with pytest.raises(TranscoderError, match=r"not for layer\(s\) \[1\]"):
        load_transcoders(tmp_path)


def test_clt_missing_decoder(tmp_path):
    save_transcoders(random_set(cross_layer=True), tmp_path, layout="circuit-tracer-clt")
    (tmp_path / "W_dec_1.safetensors").unlink()
    with pytest.raises(TranscoderError, match="W_dec_1.safetensors is missing"):
        load_transcoders(tmp_path)


def test_wrong_shapes(tmp_path):
    save_transcoders(random_set(), tmp_path, layout="circuit-tracer")
    f = load_file(str(tmp_path / "layer_0.safetensors"))
    f["W_dec"] = torch.zeros(5, 7)
    save_file(f, str(tmp_path / "layer_0.safetensors"))
    with pytest.raises(TranscoderError, match=r"W_dec is \(5, 7\); expected \(12, 8\)"):
        load_transcoders(tmp_path)


def test_missing_key(tmp_path):
    save_transcoders(random_set(), tmp_path, layout="circuit-tracer")
    f = load_file(str(tmp_path / "layer_1.safetensors"))
    del f["b_enc"]
    save_file(f, str(tmp_path / "layer_1.safetensors"))
    with pytest.raises(TranscoderError, match="has no 'b_enc'"):
        load_transcoders(tmp_path)


def test_pickles_refused(tmp_path):
    (tmp_path / "layer_0.pt").write_bytes(pickle.dumps({"W_enc": 1}))
    with pytest.raises(TranscoderError, match="never loads"):
        load_transcoders(tmp_path / "layer_0.pt")
    with pytest.raises(TranscoderError, match="pickled files"):
        load_transcoders(tmp_path)
    d = tmp_path / "gs" / "layer_0"
    d.mkdir(parents=True)
    np.savez(d / "params.npz", W_enc=np.array([{"evil": 1}], dtype=object), W_dec=np.zeros(1), b_enc=np.zeros(1),
             b_dec=np.zeros(1), threshold=np.zeros(1))
    with pytest.raises(TranscoderError, match="pickled"):
        load_transcoders(tmp_path / "gs")


def test_damaged_files(tmp_path):
    save_transcoders(random_set(), tmp_path / "a")
    with open(tmp_path / "a" / "transcoders.safetensors", "r+b") as f:
        f.seek(200)
        f.write(b"\x00\x01\x02")
    with pytest.raises(TranscoderError, match="checksum"):
        load_transcoders(tmp_path / "a")
    save_transcoders(random_set(), tmp_path / "b", layout="circuit-tracer")
    (tmp_path / "b" / "layer_0.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(TranscoderError, match="not a readable safetensors"):
        load_transcoders(tmp_path / "b")
    save_transcoders(random_set(), tmp_path / "c")
    m = json.loads((tmp_path / "c" / "transcoders.json").read_text())
    m["version"] = 99
    (tmp_path / "c" / "transcoders.json").write_text(json.dumps(m))
    with pytest.raises(TranscoderError, match="version 99"):
        load_transcoders(tmp_path / "c")


def test_unknown_folder_and_hub_paths(tmp_path):
    with pytest.raises(TranscoderError, match="holds no transcoders"):
        load_transcoders(tmp_path)
    with pytest.raises(TranscoderError, match="does not exist"):
        load_transcoders(tmp_path / "nope")
    (tmp_path / "config.yaml").write_text("model_kind: transcoder_set\nfeature_input_hook: hook_resid_mid\n"
                                          "transcoders: ['hf://mntss/x/layer_0.safetensors']\n")
    with pytest.raises(TranscoderError, match="cannot reach"):
        load_transcoders(tmp_path)
    (tmp_path / "config.yaml").write_text("model_kind: transcoder_set\nfeature_input_hook: attn.hook_z\n")
    with pytest.raises(TranscoderError, match="feature_input_hook 'attn.hook_z'"):
        load_transcoders(tmp_path)


def test_save_refusals(tmp_path):
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    with pytest.raises(TranscoderError, match="already holds other files"):
        save_transcoders(random_set(), tmp_path / "busy")
    with pytest.raises(TranscoderError, match="circuit-tracer-clt"):
        save_transcoders(random_set(cross_layer=True), tmp_path / "x", layout="circuit-tracer")
    with pytest.raises(TranscoderError, match="no skip path"):
        save_transcoders(random_set(activation="jumprelu", skip=True), tmp_path / "y", layout="gemma-scope")
    with pytest.raises(TranscoderError, match="unknown transcoder layout"):
        save_transcoders(random_set(), tmp_path / "z", layout="sae-lens")  # type: ignore[arg-type]
    # re-saving over the same set's folder is fine
    save_transcoders(random_set(), tmp_path / "again")
    save_transcoders(random_set(seed=1), tmp_path / "again")
    same(random_set(seed=1), load_transcoders(tmp_path / "again"))


def test_check_model(tiny_model):
    from circuitwise.models.fingerprint import fingerprint

    d = tiny_model.cfg.d_model
    ok = random_set(n_layers=2, d=d, n=16)
    ok = type(ok)(ok.transcoders, model="tiny", fingerprint=fingerprint(tiny_model))
    assert check_model(ok, tiny_model) is None
    with pytest.raises(TranscoderError, match="cover 3 layer"):
        check_model(random_set(n_layers=3, d=d), tiny_model)
    with pytest.raises(TranscoderError, match="d_model is 64"):
        check_model(random_set(n_layers=2, d=8), tiny_model)
    other = dict(fingerprint(tiny_model), weights_hash="0" * 32, checkpoint_hash="0" * 32)
    bad = type(ok)(ok.transcoders, model="other", fingerprint=other)
    with pytest.raises(TranscoderError, match="trained on another model"):
        check_model(bad, tiny_model)
    assert "weights" in (check_model(bad, tiny_model, allow_other=True) or "")
