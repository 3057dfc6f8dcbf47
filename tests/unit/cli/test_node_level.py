"""`circuitwise circuit --level node`: a node circuit end to end on the bundled model, re-checked by
`evaluate`; its options refused before any model loads."""

from __future__ import annotations

import json

import pytest

from tests.unit.cli.conftest import invoke


def test_a_node_circuit_is_written_and_evaluate_reproduces_it(tmp_path):
    out = tmp_path / "node"
    r = invoke("circuit", "opposites", "--model", "bundled", "--n", "12", "--circuit", "eap", "--level", "node",
               "--selection", "top-n", "--nodes", "3", "--random-samples", "3", "--shortlist", "0", "--out", out)
    assert r.exit_code == 0, r.output
    data = json.loads((out / "circuit.json").read_text())
    sel = data["selection"]
    assert sel["level"] == "node" and sel["kind"] == "top-n" and len(sel["nodes"]) == 3
    # Every kept node is a head or an MLP, and the file's edges are the edge circuit of those nodes and the input.
    assert set(sel["nodes"]) <= set(data["nodes"]) and "input" not in sel["nodes"]
    assert all(e["sender"] in {"input", *sel["nodes"]} for e in data["edges"])
    assert all(e["receiver"] == "logits" or e["receiver"].split(".")[0] in sel["nodes"] for e in data["edges"])
    assert "3 of 10 nodes" in r.output and all(n in r.output for n in sel["nodes"])
    assert "random node sets of the same size" in r.output
    saved = json.loads((out / "evaluation.json").read_text())
    assert saved["random_baseline"]["null"] == "node-set"

    again = invoke("evaluate", out / "circuit.json", "opposites", "--n", "12", "--random-samples", "3",
                   "--shortlist", "0", "--out", tmp_path / "again")
    assert again.exit_code == 0, again.output
    ev = json.loads((tmp_path / "again" / "evaluation.json").read_text())
    assert ev["faithfulness"]["faithfulness"] == pytest.approx(saved["faithfulness"]["faithfulness"], abs=1e-6)
    # The same random node sets (seeded alike) measure the same.
    assert ev["random_baseline"]["random_faithfulness"] == pytest.approx(
        saved["random_baseline"]["random_faithfulness"], abs=1e-6)


@pytest.mark.parametrize("args,says", [
    (["--level", "neuron"], "circuitwise mib --level neuron"),
    (["--level", "heads"], "Unknown circuit level"),
    (["--level", "node", "--selection", "top-n"], "needs --nodes N"),
    (["--level", "node", "--selection", "top-n", "--edges", "4"], "at --level node give --nodes N"),
    (["--selection", "top-n", "--nodes", "4"], "add --level node"),
])
def test_level_options_are_refused_before_any_model_loads(no_model_loads, tmp_path, args, says):
    r = invoke("circuit", "opposites", "--model", "bundled", "--out", tmp_path / "x", *args)
    assert r.exit_code != 0 and says in r.output, r.output
    assert not (tmp_path / "x").exists()


def test_run_takes_the_level_from_its_options_and_config(tmp_path):
    out = tmp_path / "run"
    r = invoke("run", "opposites", "--model", "bundled", "--n", "12", "--circuit", "eap", "--circuit-level", "node",
               "--patch", "none", "--no-attribution", "--out", out)
    assert r.exit_code == 0, r.output
    circuit = json.loads((out / "results.json").read_text())["circuit"]
    sel = circuit["selection"]
    assert sel["level"] == "node" and sel["kind"] == "target" and sel["reached"] and sel["faithfulness"] >= 0.9
    assert any("nodes (heads and MLPs" in line for line in circuit["summary"])
    assert "circuit_level: node" in (out / "config.yaml").read_text()
    assert json.loads((out / "circuit.json").read_text())["selection"]["nodes"] == sel["nodes"]


def test_run_refuses_the_neuron_level_before_any_model_loads(no_model_loads, tmp_path):
    r = invoke("run", "opposites", "--model", "bundled", "--circuit-level", "neuron", "--out", tmp_path / "x")
    assert r.exit_code != 0 and "circuitwise mib --level neuron" in r.output, r.output
    (tmp_path / "config.yaml").write_text("task: opposites\nmodel: bundled\ncircuit_level: neuron\n")
    r = invoke("run", "--config", tmp_path / "config.yaml", "--out", tmp_path / "y")
    assert r.exit_code != 0 and "circuitwise mib --level neuron" in r.output, r.output


def test_a_runs_folder_settings_name_the_level_only_when_it_is_not_edge():
    from circuitwise.config import RunConfig
    from circuitwise.pipeline import folder_settings

    assert "circuit_level" not in folder_settings(RunConfig.build(task="opposites"))  # earlier folders still match
    assert folder_settings(RunConfig.build(task="opposites", circuit_level="node"))["circuit_level"] == "node"


@pytest.mark.parametrize("command", ["run", "circuit"])
@pytest.mark.parametrize("flag", ["--level", "--circuit-level"])
def test_one_level_flag_in_both_spellings_in_run_and_circuit(no_model_loads, tmp_path, command, flag):
    """One idea, one name in every command: `--level` (as mib says it) and `--circuit-level` (as run's other
    circuit options are named) are the same option in run and in circuit."""
    r = invoke(command, "opposites", "--model", "bundled", flag, "neuron", "--out", tmp_path / "x")
    assert r.exit_code != 0 and "circuitwise mib --level neuron" in r.output, r.output
