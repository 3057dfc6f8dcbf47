"""Every command shows the processing notes once on stderr, and takes --processing/--no-processing."""

from __future__ import annotations

import json

import click
import typer
from typer.testing import CliRunner

from circuitwise.cli import _register, app

_register()
runner = CliRunner()
PROMPT = "A tortoise is old, but a kitten is"


def _notes(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("note: processing step")]


def test_prompt_json_stays_json_and_notes_go_to_stderr(family_path_for, family_model_for):
    path = family_path_for("gemma2")
    r = runner.invoke(app, ["prompt", PROMPT, "-a", " young", "--model", str(path), "--json"])
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)  # nothing but the JSON object on stdout
    assert data["prepend_bos"] is True
    expected = family_model_for("gemma2").circuitwise_processing.notes()
    assert len(expected) == 3
    # Shown once each, one line each (rich must not wrap them).
    assert [n.removeprefix("note: ") for n in _notes(r.stderr)] == expected


def test_gpt2_shows_no_processing_note(family_path_for):
    r = runner.invoke(app, ["prompt", PROMPT, "-a", " young", "--model", str(family_path_for("gpt2"))])
    assert r.exit_code == 0, r.output
    assert _notes(r.stderr) == []


def test_run_records_the_steps_in_results_and_report(family_path_for, family_model_for, tmp_path):
    out = tmp_path / "run"
    r = runner.invoke(app, ["run", "opposites", "--model", str(family_path_for("gemma2")), "--n", "4",
                            "--patch", "none", "--circuit", "none", "--no-attribution", "--out", str(out)])
    assert r.exit_code == 0, r.output
    rec = family_model_for("gemma2").circuitwise_processing
    assert len(_notes(r.stderr)) == len(rec.notes()) == 3
    results = json.loads((out / "results.json").read_text())
    assert results["model"]["processing"] == json.loads(json.dumps(rec.to_json()))
    html = (out / "report.html").read_text()
    assert "center_unembed skipped: the logits are soft-capped" in html
    assert "weight processing: fold_ln." in html  # Gemma 2's attention has no value biases to fold
    assert "nothing to do" not in html


def _model_commands() -> dict[str, click.Command]:
    group = typer.main.get_command(app)
    return {name: cmd for name, cmd in group.commands.items()
            if any("--model" in p.opts for p in cmd.params) and name != "tasks"}


def test_every_command_that_loads_a_model_has_the_switch():
    cmds = _model_commands()
    assert {"prompt", "run", "patch", "circuit", "evaluate"} <= set(cmds)
    for name, cmd in cmds.items():
        flags = {o for p in cmd.params for o in (*p.opts, *p.secondary_opts)}
        assert {"--processing", "--no-processing"} <= flags, name


def test_no_processing_is_honoured_by_every_command(family_path_for, tmp_path):
    model = str(family_path_for("gpt2"))
    common = ["--model", model, "--no-processing"]
    r = runner.invoke(app, ["prompt", PROMPT, "-a", " young", "--json", *common])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["answer_tokens"] == [" young"]
    assert [n for n in r.stderr.splitlines() if n.startswith("note:")] == [
        "note: weight processing off (--no-processing): analysing the raw Hugging Face weights"]

    run_out = tmp_path / "run"
    r = runner.invoke(app, ["run", "opposites", "--n", "3", "--patch", "none", "--circuit", "none",
                            "--no-attribution", "--out", str(run_out), *common])
    assert r.exit_code == 0, r.output
    assert json.loads((run_out / "results.json").read_text())["model"]["processing"]["requested"] is False

    r = runner.invoke(app, ["patch", "opposites-seed", "--what", "resid_pre", "--out", str(tmp_path / "p"), *common])
    assert r.exit_code == 0, r.output

    circ = tmp_path / "c"
    r = runner.invoke(app, ["circuit", "opposites-seed", "--method", "eap", "--random-samples", "0",
                            "--shortlist", "0", "--out", str(circ), *common])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["evaluate", str(circ / "circuit.json"), "opposites-seed", "--random-samples", "0",
                            "--json", *common])
    assert r.exit_code == 0, r.output
    json.loads(r.stdout)


def test_circuit_json_records_the_processing(family_model_for):
    from circuitwise.circuits.circuit import model_info

    m = family_model_for("pythia")
    assert model_info(m)["processing"] == m.circuitwise_processing.to_json()
