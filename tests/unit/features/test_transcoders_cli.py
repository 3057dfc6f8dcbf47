"""`circuitwise transcoders train | card | convert` end to end on a tiny model."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from circuitwise.cli import _register, app
from circuitwise.errors import CircuitwiseError, ConfigError, Interrupted
from circuitwise.features.formats import load_transcoders
from tests.unit.features.test_transcoders_train import TEXTS
from tests.unit.features.transcoder_sets import same

_register()
runner = CliRunner()
SMALL = ["--width", "32", "--k", "4", "--tokens", "1536", "--batch-tokens", "256", "--heldout-tokens", "300"]


def invoke(*args):
    try:
        return runner.invoke(app, [str(a) for a in args], catch_exceptions=False), None
    except CircuitwiseError as e:  # main() turns these into their exit status with the message
        return None, e


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    path = tmp_path_factory.mktemp("corpus") / "corpus.txt"
    path.write_text("\n".join(TEXTS) + "\n")
    return path


@pytest.fixture(scope="module")
def trained(tiny_ckpt, corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("tc") / "out"
    r, err = invoke("transcoders", "train", tiny_ckpt, "--corpus", corpus, *SMALL, "--out", out)
    assert err is None and r.exit_code == 0, (err, r and r.output)
    return out, r.output


@pytest.mark.slow
def test_train_writes_a_set_with_its_card(trained):
    out, output = trained
    assert {"transcoders.json", "transcoders.safetensors", "CARD.md", "card.json"} <= {p.name for p in out.iterdir()}
    assert not (out / ".patching").exists()
    ts = load_transcoders(out)
    card = json.loads((out / "card.json").read_text())["card"]
    assert ts.meta["card"] == card and len(card["fvu"]) == 2 and ts[0].k == 4 and ts[0].W_skip is not None
    assert "top-1 agreement" in output and "FVU" in (out / "CARD.md").read_text()


@pytest.mark.slow
def test_card_and_convert(trained, tmp_path):
    out, _ = trained
    r, err = invoke("transcoders", "card", out, "--json")
    assert err is None and r.exit_code == 0
    shown = json.loads(r.output)
    assert shown["card"] == load_transcoders(out).meta["card"] and shown["k"] == 4
    r, err = invoke("transcoders", "convert", out, tmp_path / "ct", "--layout", "circuit-tracer")
    assert err is None and r.exit_code == 0 and (tmp_path / "ct" / "layer_1.safetensors").is_file()
    same(load_transcoders(out), load_transcoders(tmp_path / "ct"))
    r, err = invoke("transcoders", "card", tmp_path / "ct")
    assert err is None and "FVU" in r.output  # the card travels in circuit-tracer's config


@pytest.mark.slow
def test_interrupted_train_resumes(tiny_ckpt, corpus, tmp_path, monkeypatch):
    import circuitwise.features.train as train_mod

    real = train_mod.train_transcoders

    def stopping(*a, progress=None, **kw):
        def stop(step, total, info):
            if step == 3:
                raise KeyboardInterrupt
        return real(*a, progress=stop, **kw)

    out = tmp_path / "out"
    monkeypatch.setattr(train_mod, "train_transcoders", stopping)
    _, err = invoke("transcoders", "train", tiny_ckpt, "--corpus", corpus, *SMALL, "--out", out)
    assert isinstance(err, Interrupted) and not out.exists()
    monkeypatch.setattr(train_mod, "train_transcoders", real)
    r, err = invoke("transcoders", "train", tiny_ckpt, "--corpus", corpus, *SMALL, "--out", out)
    assert err is None and r.exit_code == 0, (err, r and r.output)
    assert load_transcoders(out).meta["training"]["resumed_at"] == 3
    assert "resumed at step 3 from the interrupted run's checkpoint" in " ".join(r.output.split())


def test_bad_input_before_any_work(tmp_path):
    _, err = invoke("transcoders", "train", "bundled", "--corpus", tmp_path / "nope.txt", "--out", tmp_path / "o")
    assert isinstance(err, ConfigError) and "neither a file nor a built-in task" in str(err)
    (tmp_path / "c.jsonl").write_text('{"text": "a"}\n{"nope": 1}\n')
    _, err = invoke("transcoders", "train", "bundled", "--corpus", tmp_path / "c.jsonl", "--out", tmp_path / "o")
    assert isinstance(err, ConfigError) and "line 2" in str(err)
    _, err = invoke("transcoders", "train", "bundled", "--corpus", "opposites", "--activation", "relu")
    assert isinstance(err, ConfigError) and "topk or jumprelu" in str(err)
    _, err = invoke("transcoders", "convert", tmp_path / "none", tmp_path / "x")
    assert err is not None and "does not exist" in str(err)
    assert not (tmp_path / "o").exists()
