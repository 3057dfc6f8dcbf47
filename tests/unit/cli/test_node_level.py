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
