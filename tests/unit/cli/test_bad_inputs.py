"""Bad inputs found in the acceptance audit of issue 22 (items 5-9): each is refused before any model
loads, with a message that names the flags of the command in hand."""

from __future__ import annotations

import pytest

from tests.unit.cli.conftest import invoke


@pytest.mark.parametrize("command", [["run", "opposites"], ["circuit", "opposites"], ["compare", "opposites"]])
def test_a_circuit_option_that_is_not_key_value_names_the_flag_of_the_command(tmp_path, no_model_loads, command):
    r = invoke(*command, "-O", "justakey", "--out", tmp_path / "o")
    # It said '--option … write e.g. --option steps=10': circuit's old hidden spelling, unknown to run and compare.
    assert r.exit_code == 2 and "--circuit-option 'justakey' is not KEY=VALUE" in r.output, r.output
    assert "--option" not in r.output.replace("--circuit-option", "")
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_a_threshold_that_is_not_finite_is_refused_before_the_model_loads(tmp_path, no_model_loads, value):
    # nan was refused by the selection, after the model loaded and the edges were scored.
    r = invoke("circuit", "opposites", "--selection", "threshold", "--threshold", value, "--out", tmp_path / "o")
    assert r.exit_code == 2 and f"--threshold {float(value)}: give a finite number" in r.output, r.output
    assert not (tmp_path / "o").exists()
