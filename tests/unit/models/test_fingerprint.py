"""The model fingerprint: stable per checkpoint, different per weights and dtype; `evaluate` refuses another model."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from circuitwise.cli import _register, app
from circuitwise.errors import ConfigError
from circuitwise.models.fingerprint import check_same_model, fingerprint
from tests.helpers import make_gpt2_checkpoint

_register()
runner = CliRunner()

# The tiny fixture's shapes (tests/conftest.py), with another seed: same shapes, other weights.
SHAPES = dict(n_layer=2, n_head=4, n_embd=64)


@pytest.fixture(scope="module")
def twin_ckpt(tmp_path_factory):
    return make_gpt2_checkpoint(tmp_path_factory.mktemp("twin"), **SHAPES, seed=7)


@pytest.fixture(scope="module")
def circuit_json(tiny_model, tmp_path_factory):
    """A small circuit.json found (here: chosen) on the tiny checkpoint, as `circuit` writes it."""
    from circuitwise.circuits.circuit import Circuit, model_info
    from circuitwise.circuits.graph import graph_of

    graph = graph_of(tiny_model)
    edges = torch.zeros(graph.n_edges, dtype=torch.bool)
    edges[:5] = True
    return Circuit(graph, edges, model=model_info(tiny_model), task="opposites-seed").save(
        tmp_path_factory.mktemp("circ") / "circuit.json")


def test_stable_across_loads_and_changes_with_dtype(tiny_ckpt, tiny_model):
    import circuitwise as cw

    fp = fingerprint(tiny_model)
    assert fp == fingerprint(cw.load_model(str(tiny_ckpt), device="cpu"))
    assert fp["architecture"] == "GPT2LMHeadModel"
    assert (fp["n_layers"], fp["d_model"], fp["n_heads"], fp["n_kv_heads"], fp["d_head"], fp["d_mlp"],
            fp["d_vocab"]) == (2, 64, 4, 4, 16, 256, 50257)
    assert fp["processing"] and "fold_ln" in fp["processing"]
    other = fingerprint(cw.load_model(str(tiny_ckpt), device="cpu", dtype="bfloat16"))
    assert other["dtype"] != fp["dtype"] and other["weights_hash"] != fp["weights_hash"]
    raw = fingerprint(cw.load_model(str(tiny_ckpt), device="cpu", processing=False))
    assert raw["processing"] == [] and raw["weights_hash"] != fp["weights_hash"]


def test_another_seed_differs_only_in_the_weights(tiny_model, twin_ckpt):
    import circuitwise as cw

    a, b = fingerprint(tiny_model), fingerprint(cw.load_model(str(twin_ckpt), device="cpu"))
    assert {k for k in a if a[k] != b[k]} == {"weights_hash", "checkpoint_hash"}
    with pytest.raises(ConfigError, match="weights"):
        check_same_model({"name": "a", "fingerprint": a}, cw.load_model(str(twin_ckpt), device="cpu"),
                         what="circuit.json", loaded_name="b", fix="")


def test_cached_until_a_weight_changes(tiny_ckpt):
    import circuitwise as cw

    m = cw.load_model(str(tiny_ckpt), device="cpu")
    before = fingerprint(m)
    with torch.no_grad():
        next(m.parameters()).add_(1.0)
    assert fingerprint(m)["weights_hash"] != before["weights_hash"]


def test_files_record_it(circuit_json, tiny_model):
    from circuitwise.schema import CircuitFile

    assert CircuitFile.load(circuit_json).model.fingerprint.weights_hash == fingerprint(tiny_model)["weights_hash"]


def test_evaluate_refuses_a_circuit_of_another_model_naming_both(circuit_json, tiny_ckpt, twin_ckpt):
    r = runner.invoke(app, ["evaluate", str(circuit_json), "opposites-seed", "--model", str(twin_ckpt), "--n", "4",
                            "--random-samples", "0", "--shortlist", "0"])
    # main() turns the error into its exit status (2) and message; the runner returns it raised.
    assert isinstance(r.exception, ConfigError) and r.exception.exit_code == 2, r.output
    msg = str(r.exception)
    assert str(tiny_ckpt) in msg and str(twin_ckpt) in msg and "weights (hash)" in msg
    assert "--ignore-fingerprint" in msg
    # The escape hatch evaluates anyway, with a warning.
    r = runner.invoke(app, ["evaluate", str(circuit_json), "opposites-seed", "--model", str(twin_ckpt), "--n", "4",
                            "--random-samples", "0", "--shortlist", "0", "--json", "--ignore-fingerprint"])
    assert r.exit_code == 0, r.output
    assert "warning:" in r.stderr and "Used anyway" in r.stderr


def test_evaluate_accepts_the_same_checkpoint(circuit_json, tiny_ckpt):
    r = runner.invoke(app, ["evaluate", str(circuit_json), "opposites-seed", "--model", str(tiny_ckpt), "--n", "4",
                            "--random-samples", "0", "--shortlist", "0", "--json"])
    assert r.exit_code == 0, r.output
    assert "warning:" not in r.stderr
    json.loads(r.stdout)


def test_evaluate_in_another_dtype_names_the_dtype_it_was_found_in(circuit_json, tiny_ckpt):
    # The refusal told the user to use "the model it was found on (--model X)", the very model given;
    # the fix is the circuit's --dtype.
    r = runner.invoke(app, ["evaluate", str(circuit_json), "opposites-seed", "--model", str(tiny_ckpt), "--n", "4",
                            "--random-samples", "0", "--shortlist", "0", "--dtype", "bfloat16"])
    assert isinstance(r.exception, ConfigError), r.output
    assert "dtype float32 vs bfloat16" in str(r.exception)
    assert "It was found in float32: add --dtype float32. Otherwise evaluate it" in str(r.exception)
    r = runner.invoke(app, ["evaluate", str(circuit_json), "opposites-seed", "--model", str(tiny_ckpt), "--n", "4",
                            "--random-samples", "0", "--shortlist", "0", "--dtype", "float32", "--json"])
    assert r.exit_code == 0, r.output


def test_evaluate_with_other_processing_names_the_processing_flag(circuit_json, tiny_ckpt, tmp_path):
    # The refusal sent the user to "the model it was found on (--model X)", the very model given;
    # the fix is the processing the circuit was found with.
    args = ["opposites-seed", "--model", str(tiny_ckpt), "--n", "4", "--random-samples", "0", "--shortlist", "0"]
    r = runner.invoke(app, ["evaluate", str(circuit_json), *args, "--no-processing"])
    assert isinstance(r.exception, ConfigError), r.output
    assert "It was found with the weight processing: drop --no-processing. Otherwise evaluate it" in str(r.exception)
    data = json.loads(circuit_json.read_text())
    data["model"]["fingerprint"]["processing"] = []  # as `circuit --no-processing` records it
    raw = tmp_path / "circuit.json"
    raw.write_text(json.dumps(data))
    r = runner.invoke(app, ["evaluate", str(raw), *args])
    assert isinstance(r.exception, ConfigError), r.output
    assert "It was found without weight processing: add --no-processing. Otherwise evaluate it" in str(r.exception)


def test_an_older_circuit_without_fingerprint_is_warned_about(circuit_json, twin_ckpt, tmp_path):
    data = json.loads(circuit_json.read_text())
    del data["model"]["fingerprint"]
    old = tmp_path / "circuit.json"
    old.write_text(json.dumps(data))
    r = runner.invoke(app, ["evaluate", str(old), "opposites-seed", "--model", str(twin_ckpt), "--n", "4",
                            "--random-samples", "0", "--shortlist", "0", "--json"])
    assert r.exit_code == 0, r.output
    assert "warning:" in r.stderr and "no model fingerprint" in r.stderr


def test_patching_resume_keys_on_the_weights(tiny_model, twin_ckpt):
    import circuitwise as cw
    from circuitwise.patching.resume import model_identity

    twin = cw.load_model(str(twin_ckpt), device="cpu")
    a, b = model_identity(tiny_model), model_identity(twin)
    assert a["fingerprint"]["weights_hash"] != b["fingerprint"]["weights_hash"]


def test_the_same_whatever_torch_threads_processed_it():
    # Each command picks its torch threads from how busy the cores are; a product split over two
    # threads rounds differently from one over one, and the bundled model's processed attention weights
    # differed by ~1e-6, so `evaluate` refused the circuit `circuit` had just found on the same model.
    import circuitwise as cw

    threads = torch.get_num_threads()
    try:
        hashes = set()
        for n in (1, 2):
            torch.set_num_threads(n)
            hashes.add(fingerprint(cw.load_model("bundled", device="cpu"))["weights_hash"])
            assert torch.get_num_threads() == n  # the user's thread count is left as it was
    finally:
        torch.set_num_threads(threads)
    assert len(hashes) == 1


def test_the_same_checkpoint_processed_elsewhere_is_the_same_model(tiny_ckpt, twin_ckpt):
    """Processed weights carry the rounding of where they were processed (a GPU's products round otherwise
    than the CPU's), so the model is identified by the checkpoint's weights as loaded, before processing,
    and the processing steps: a circuit found on the CPU is accepted where processing rounded differently;
    another checkpoint is still refused; a file without the checkpoint hash is compared as before."""
    import circuitwise as cw
    from circuitwise.models.fingerprint import differences

    recorded = fingerprint(cw.load_model(str(tiny_ckpt), device="cpu"))
    elsewhere = cw.load_model(str(tiny_ckpt), device="cpu")
    with torch.no_grad():  # the last bits of every processed weight, as another device's products give them
        for p in elsewhere.parameters():
            p.copy_(torch.nextafter(p, torch.full_like(p, float("inf"))))
    now = fingerprint(elsewhere)
    assert now["weights_hash"] != recorded["weights_hash"] and now["checkpoint_hash"] == recorded["checkpoint_hash"]
    assert differences(recorded, now) == []
    check_same_model({"name": "tiny", "fingerprint": recorded}, elsewhere, what="circuit.json", loaded_name="tiny",
                     fix="")
    twin = fingerprint(cw.load_model(str(twin_ckpt), device="cpu"))
    assert differences(recorded, twin) == [f"checkpoint weights (hash) {recorded['checkpoint_hash']} vs "
                                           f"{twin['checkpoint_hash']}"]
    older = {k: v for k, v in recorded.items() if k != "checkpoint_hash"}  # a file from before the key
    assert differences(older, now) == [f"weights (hash) {recorded['weights_hash']} vs {now['weights_hash']}"]
