"""`circuitwise mib --level node|neuron`: MIB's node- and neuron-level importance files and their CPR/CMD."""

from __future__ import annotations

import json

import pytest

from circuitwise.circuits.interop import load_eap_ig_units
from circuitwise.circuits.neurons import NeuronScores, score_neurons
from circuitwise.evaluation.mib_submission import run_pair
from circuitwise.evaluation.mib_units import mib_unit_metrics
from tests.unit.cli.conftest import invoke, no_model_loads  # noqa: F401 (a fixture, used by name)


@pytest.mark.parametrize("level", ["node", "neuron"])
def test_a_pair_writes_its_level_and_reports_the_mib_numbers_of_its_file(tiny_model, tiny_tok, tmp_path, level):
    r = run_pair(tiny_model, tiny_tok, method="eap", task="t", model_name="m", out=tmp_path, level=level)
    path = tmp_path / r.file
    assert path.name == ("importances.pt" if level == "neuron" else "importances.json")
    assert [p.name for p in path.parent.iterdir()] == [path.name]
    units = load_eap_ig_units(path)
    mine = score_neurons(tiny_model, tiny_tok, method="eap")
    if level == "neuron":
        assert units.neuron_scores is not None and units.node_scores is None
        assert units.neuron_scores.tolist() == mine.scores.tolist()
        from_file = NeuronScores(units.graph, units.neuron_scores, "eap")
    else:
        assert units.node_scores is not None and units.neuron_scores is None
        assert units.node_scores.tolist() == mine.node_scores().scores.tolist()
        from_file = mine
    want = mib_unit_metrics(tiny_model, tiny_tok, from_file, level=level)
    assert (r.cpr, r.cmd) == pytest.approx((want.cpr, want.cmd), abs=1e-9)
    assert r.level == level and r.total_units == want.total_units
    assert r.to_json()["level"] == level


def test_the_command_writes_a_neuron_submission(tmp_path):
    out = tmp_path / "sub"
    r = invoke("mib", "--task", "opposites", "--model", "bundled=bundled", "--circuit", "eap", "--level", "neuron",
               "--n", 4, "--out", out)
    assert r.exit_code == 0, r.output
    assert [p.name for p in (out / "eap" / "opposites_bundled").iterdir()] == ["importances.pt"]
    board = json.loads((out / "leaderboard.json").read_text())
    (pair,) = board["pairs"]
    assert pair["level"] == "neuron" and pair["total_units"] == 11 * 128
    assert 0.0 <= board["methods"]["eap"]["opposites_bundled"]["cmd"]


@pytest.mark.usefixtures("no_model_loads")
@pytest.mark.parametrize("args,says", [
    (["--level", "neurons"], "edge, node, neuron"),
    (["--level", "neuron", "--form", "circuits"], "Drop --form circuits"),
    (["--level", "node", "--circuit", "exact"], "exact scores edges only"),
    (["--level", "neuron", "--ablation", "mean"], "drop --ablation"),
])
def test_a_level_that_cannot_apply_is_refused_before_any_model_loads(tmp_path, args, says):
    r = invoke("mib", "--task", "ioi", "--model", "gpt2", "--circuit", "eap", *args, "--out", tmp_path / "o")
    assert r.exit_code == 2 and says in r.output, r.output
