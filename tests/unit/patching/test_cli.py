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
