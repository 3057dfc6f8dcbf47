"""`circuitwise patch`: sweeps into OUT/patching.json, resumable, clear errors."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from circuitwise.cli import _register, app


@pytest.fixture(scope="module")
def runner():
    _register()
    return CliRunner()


def test_patch_writes_labelled_results(runner, small_ckpt, tmp_path):
    out = tmp_path / "run"
    args = ["patch", "opposites-seed", "--model", str(small_ckpt), "--device", "cpu", "--out", str(out),
            "--what", "heads", "--what", "resid_pre", "--method", "both"]
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    data = json.loads((out / "patching.json").read_text())
    assert set(data["sweeps"]) == {"heads", "resid_pre"}
    heads = data["sweeps"]["heads"]
    assert heads["exact"]["axes"] == ["layer", "head"]
    assert heads["attribution"]["config"]["method"] == "attribution"
    assert -1.0 <= heads["correlation"] <= 1.0
    assert "Pearson r" in r.output
    # Re-run: the exact sweeps come back from the checkpoints, identical.
    r2 = runner.invoke(app, args)
    assert r2.exit_code == 0, r2.output
    again = json.loads((out / "patching.json").read_text())
    assert again["sweeps"]["resid_pre"]["exact"]["raw"] == data["sweeps"]["resid_pre"]["exact"]["raw"]


def test_patch_rejects_an_unknown_sweep_before_loading_anything(runner, tmp_path):
    from circuitwise.errors import ConfigError

    r = runner.invoke(app, ["patch", "opposites-seed", "--what", "neurons", "--out", str(tmp_path / "x")])
    assert isinstance(r.exception, ConfigError) and "heads_by_pos" in str(r.exception)
    assert not (tmp_path / "x").exists()


def test_a_folder_of_another_checkpoint_under_the_same_name_is_refused_naming_both(runner, tmp_path):
    # The folder's settings name the model by its path, so a checkpoint rewritten at that path passed them;
    # its sweeps were then dropped with a note ("held sweeps of another task or model; they are replaced").
    import shutil

    from circuitwise.errors import OutputError
    from tests.helpers import make_gpt2_checkpoint

    ckpt, out = tmp_path / "model", tmp_path / "p"
    make_gpt2_checkpoint(ckpt, n_layer=1, n_head=2, n_embd=32, seed=1)
    args = ["patch", "opposites-seed", "--model", str(ckpt), "--out", str(out), "--patch", "heads"]
    assert runner.invoke(app, args).exit_code == 0
    before = (out / "patching.json").read_text()
    shutil.rmtree(ckpt)
    make_gpt2_checkpoint(ckpt, n_layer=1, n_head=2, n_embd=32, seed=2)  # same path, other weights
    r = runner.invoke(app, [*args, "--patch", "resid_pre"])
    assert isinstance(r.exception, OutputError), r.output
    said = str(r.exception)
    assert f"computed on model {str(ckpt)!r}, not on the loaded model" in said and "checkpoint weights" in said
    assert "--force" in said and (out / "patching.json").read_text() == before  # nothing lost
    assert not (tmp_path / ".p.partial").exists()  # and no staged folder promising a resume that would fail
    r = runner.invoke(app, [*args, "--patch", "resid_pre", "--force"])
    assert r.exit_code == 0, r.output
    assert set(json.loads((out / "patching.json").read_text())["sweeps"]) == {"heads", "resid_pre"}
