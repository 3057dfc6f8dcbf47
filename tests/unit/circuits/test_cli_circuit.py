"""`circuitwise circuit` and `circuitwise evaluate`, end to end on the known-circuit model."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from circuitwise.cli import _register, app
from circuitwise.tasks.io import write_jsonl
from tests.unit.circuits.known_circuit import PLANTED, known_circuit_task

_register()
runner = CliRunner()


def invoke(*args: str):
    from circuitwise.errors import CircuitwiseError

    try:
        return runner.invoke(app, [str(a) for a in args], catch_exceptions=False), None
    except CircuitwiseError as e:  # main() turns these into exit status 2 with the message
        return None, e


@pytest.fixture(scope="module")
def task_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("task") / "copy.jsonl"
    write_jsonl(known_circuit_task(), path)
    return path


@pytest.fixture(scope="module")
def study(known_ckpt, task_file, tmp_path_factory):
    out = tmp_path_factory.mktemp("study") / "out"
    r, err = invoke("circuit", task_file, "--model", known_ckpt, "--method", "eap-ig", "--steps", "3",
                    "--out", out, "--random-samples", "4", "--shortlist", "10")
    assert err is None and r.exit_code == 0, (err, r and r.output)
    return out, r.output


def test_circuit_command_writes_the_known_circuit(study):
    out, output = study
    assert {p.name for p in out.iterdir()} == {"circuit.json", "scores.json", "evaluation.json", "circuit.html",
                                               ".circuitwise.json"}  # the marker: which command wrote it, how
    data = json.loads((out / "circuit.json").read_text())
    assert {(e["sender"], e["receiver"]) for e in data["edges"]} == PLANTED
    assert data["method"] == "eap-ig" and data["selection"]["method_config"]["steps"] == 3
    assert "faithfulness" in output and "3 of 110 edges" in output


def test_circuit_json_and_page_carry_the_edge_stability(study):
    out, output = study
    st = json.loads((out / "circuit.json").read_text())["stability"]
    # the planted edges carry the task on every prompt: every resample chooses them again
    assert {(e["sender"], e["receiver"]) for e in st["edges"]} == PLANTED
    assert all(e["frequency"] == 1.0 for e in st["edges"]) and st["resamples"] == 1000
    assert json.loads((out / "evaluation.json").read_text())["stability"] == st
    page = (out / "circuit.html").read_text()
    assert "Edge stability" in page and "100.0%" in page
    assert "edge stability over 1000 bootstrap resamples" in output.replace("\n", " ")


def test_evaluate_rechecks_circuit_json(study, known_ckpt, task_file):
    out, _ = study
    r, err = invoke("evaluate", out / "circuit.json", task_file, "--model", known_ckpt, "--json",
                    "--random-samples", "3")
    assert err is None and r.exit_code == 0
    ev = json.loads(r.stdout)
    assert ev["faithfulness"]["faithfulness"] >= 0.9
    saved = json.loads((out / "evaluation.json").read_text())
    assert ev["faithfulness"]["faithfulness"] == pytest.approx(saved["faithfulness"]["faithfulness"], abs=1e-6)


def test_evaluate_measures_with_the_circuits_own_ablation(known_ckpt, task_file, tmp_path):
    # A mean-ablation circuit was re-measured with the corrupted run by default (evaluate's --ablation
    # defaulted to corrupted, unlike its --metric), so evaluate did not give the faithfulness circuit printed.
    out = tmp_path / "mean"
    r, err = invoke("circuit", task_file, "--model", known_ckpt, "--circuit", "eap", "--ablation", "mean",
                    "--out", out, "--random-samples", "0", "--shortlist", "0")
    assert err is None and r.exit_code == 0, (err, r and r.output)
    saved = json.loads((out / "evaluation.json").read_text())["faithfulness"]
    assert saved["ablation"] == "mean"
    found = {}
    for given in ((), ("--ablation", "corrupted")):
        r, err = invoke("evaluate", out / "circuit.json", task_file, "--model", known_ckpt, "--json",
                        "--random-samples", "0", "--shortlist", "0", *given)
        assert err is None and r.exit_code == 0
        found[given] = json.loads(r.stdout)["faithfulness"]
    assert found[()]["ablation"] == "mean"
    assert found[()]["faithfulness"] == pytest.approx(saved["faithfulness"], abs=1e-6)
    assert found["--ablation", "corrupted"]["ablation"] == "corrupted"  # asked for, it still applies


def test_evaluate_with_the_wrong_model_says_so(study, task_file, small_ckpt, known_ckpt):
    out, _ = study
    r, err = invoke("evaluate", out / "circuit.json", task_file, "--model", small_ckpt)
    # The fingerprint check names both models and each difference (recorded vs loaded).
    assert err is not None and "n_layers 2 vs 4" in str(err)
    assert str(known_ckpt) in str(err) and str(small_ckpt) in str(err)


def test_bad_options_fail_before_any_work(task_file, known_ckpt, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("keep me")
    _, err = invoke("circuit", task_file, "--model", known_ckpt, "--out", blocker)
    assert err is not None and "is a file" in str(err)
    assert blocker.read_text() == "keep me"
    _, err = invoke("circuit", task_file, "--model", known_ckpt, "--method", "magic", "--out", tmp_path / "o")
    assert err is not None and "Choose one of" in str(err)
    _, err = invoke("circuit", task_file, "--model", known_ckpt, "--selection", "top-n", "--out", tmp_path / "o")
    assert err is not None and "--edges" in str(err)
    # an option of another method is refused, naming this method's options, before loading anything
    _, err = invoke("circuit", task_file, "--model", known_ckpt, "--method", "eap", "--steps", "3", "--out", tmp_path / "o")
    assert err is not None and "no option 'steps'" in str(err) and "gradient" in str(err)
    _, err = invoke("circuit", task_file, "--model", known_ckpt, "--quadrature", "simpson", "--out", tmp_path / "o")
    assert err is not None and "quadrature must be one of right, left, midpoint, trapezoid" in str(err)
    _, err = invoke("circuit", task_file, "--model", known_ckpt, "-O", "steps=0", "--out", tmp_path / "o")
    assert err is not None and "positive whole number of steps" in str(err)
    _, err = invoke("circuit", task_file, "--model", known_ckpt, "-O", "steps", "--out", tmp_path / "o")
    assert err is not None and "KEY=VALUE" in str(err)
    assert not (tmp_path / "o").exists()
    _, err = invoke("circuit", task_file, "--model", known_ckpt, "-O", "steps=0", "--out", tmp_path / "o")
    assert err is not None and "positive whole number of steps" in str(err)
    _, err = invoke("circuit", task_file, "--model", known_ckpt, "-O", "steps", "--out", tmp_path / "o")
    assert err is not None and "KEY=VALUE" in str(err)
    assert not (tmp_path / "o").exists()
    _, err = invoke("evaluate", tmp_path / "nope.json", task_file, "--model", known_ckpt)
    assert err is not None and "does not exist" in str(err)


def test_task_without_corruptions_is_refused(known_ckpt, tmp_path):
    path = tmp_path / "plain.jsonl"
    path.write_text(json.dumps({"clean": " A and then", "correct": " A", "incorrect": " B"}) + "\n")
    _, err = invoke("circuit", path, "--model", known_ckpt, "--out", tmp_path / "o")
    assert err is not None and "corrupted" in str(err)


@pytest.mark.parametrize("level, flag, count, unit", [("edge", "--edges", 110, "edge"), ("node", "--nodes", 10, "node")])
def test_top_n_beyond_the_graph_keeps_every_unit_and_says_so(known_ckpt, task_file, tmp_path, level, flag, count,
                                                             unit):
    out = tmp_path / level
    r, err = invoke("circuit", task_file, "--model", known_ckpt, "--circuit", "eap", "--selection", "top-n",
                    "--level", level, flag, "5000", "--out", out, "--random-samples", "0", "--shortlist", "0")
    assert err is None and r.exit_code == 0, (err, r and r.output)
    said = " ".join(r.output.split())
    assert f"{flag} 5,000 is more than the {count} {unit}s there are to choose from: every {unit} was kept" in said
    sel = json.loads((out / "circuit.json").read_text())["selection"]
    assert sel["available"] == count and sel["n"] == 5000
    # Within the graph: nothing to say.
    r, err = invoke("circuit", task_file, "--model", known_ckpt, "--circuit", "eap", "--selection", "top-n",
                    "--level", level, flag, "3", "--out", out, "--random-samples", "0", "--shortlist", "0", "--force")
    assert err is None and r.exit_code == 0 and "there are to choose from" not in r.output
