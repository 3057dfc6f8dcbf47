"""evaluation.json, scores.json (`circuitwise circuit` / `evaluate`) and benchmark.json (`circuitwise
benchmark`), as the commands write them on the known-circuit model, validate against the exported
JSON Schema, and the typed models read the same numbers."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
from typer.testing import CliRunner

from circuitwise.cli import _register, app
from circuitwise.errors import SchemaError
from circuitwise.schema import BenchmarkFile, EvaluationFile, ScoresFile
from circuitwise.tasks.io import write_jsonl
from tests.unit.circuits.known_circuit import known_circuit_task, make_known_circuit_checkpoint

ROOT = Path(__file__).resolve().parents[3]
_register()


def invoke(*args) -> str:
    r = CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    return r.output


def _validate(path: Path, name: str) -> dict:
    data = json.loads(path.read_text())
    jsonschema.validate(data, json.loads((ROOT / "schema" / f"{name}.schema.json").read_text()))
    return data


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("study-schema")
    task = root / "copy.jsonl"
    write_jsonl(known_circuit_task(), task)
    return make_known_circuit_checkpoint(root / "model"), task, root


@pytest.fixture(scope="module")
def study(setup):
    ckpt, task, root = setup
    out = root / "study"
    invoke("circuit", task, "--model", ckpt, "--method", "eap", "--out", out, "--random-samples", "2",
           "--shortlist", "3")
    return out


def test_circuit_writes_evaluation_and_scores_that_validate(study):
    ev = _validate(study / "evaluation.json", "evaluation")
    assert ev["format"] == "circuitwise.evaluation" and ev["schema_version"] == 1
    typed = EvaluationFile.load(study)
    assert typed.faithfulness.faithfulness == ev["faithfulness"]["faithfulness"]
    assert typed.n_examples == ev["n_examples"] == 16 and typed.scoring_seconds == ev["scoring_seconds"]
    assert typed.mib is not None and typed.mib.cpr == ev["mib"]["cpr"]  # eap scores every edge
    assert len(typed.random_baseline.random_faithfulness) == 2 and typed.agreement is not None

    sc = _validate(study / "scores.json", "scores")
    assert sc["format"] == "circuitwise.scores" and sc["schema_version"] == 1
    scores = ScoresFile.load(study)
    assert scores.method == "eap" and len(scores.edges) == len(scores.scores) == scores.graph.n_edges == 110
    # the top list is the scores' largest |score|, as written
    assert scores.top[0].score == pytest.approx(max(scores.scores, key=abs))
    circuit = json.loads((study / "circuit.json").read_text())
    assert scores.graph.model_dump() == circuit["graph"]


def test_evaluate_writes_an_evaluation_that_validates(study, setup):
    ckpt, task, root = setup
    out = root / "ev"
    invoke("evaluate", study / "circuit.json", task, "--model", ckpt, "--random-samples", "0", "--out", out)
    ev = _validate(out / "evaluation.json", "evaluation")
    assert ev["random_baseline"] is None and "scoring_seconds" not in ev
    again = _validate(study / "evaluation.json", "evaluation")
    assert ev["faithfulness"]["faithfulness"] == pytest.approx(again["faithfulness"]["faithfulness"], abs=1e-6)


def test_every_study_file_records_the_model_it_was_measured_on(study, setup):
    # circuit.json carried the model's fingerprint, scores.json and evaluation.json none: an evaluation
    # written by `evaluate --out` could not say which model (--ignore-fingerprint lets another one in).
    circuit = json.loads((study / "circuit.json").read_text())["model"]
    assert circuit["fingerprint"]["checkpoint_hash"]
    for name in ("scores", "evaluation"):
        assert _validate(study / f"{name}.json", name)["model"] == circuit
    assert ScoresFile.load(study).model.fingerprint == EvaluationFile.load(study).model.fingerprint
    ckpt, task, root = setup
    out = root / "ev-model"
    invoke("evaluate", study / "circuit.json", task, "--model", ckpt, "--random-samples", "0", "--out", out)
    assert _validate(out / "evaluation.json", "evaluation")["model"]["fingerprint"] == circuit["fingerprint"]


def test_benchmark_writes_a_benchmark_json_that_validates(setup):
    ckpt, task, root = setup
    out = root / "bench"
    invoke("benchmark", task, "--model", ckpt, "--methods", "eap", "--out", out)
    data = _validate(out / "benchmark.json", "benchmark")
    typed = BenchmarkFile.load(out)
    assert typed.format == "circuitwise.benchmark" and typed.version == 1
    assert [m.method for m in typed.methods] == ["eap"] and typed.total_edges == 110
    assert typed.methods[0].cpr == data["methods"][0]["cpr"] == typed.methods[0].mib.cpr


@pytest.mark.parametrize("model,data,match", [
    (EvaluationFile, {"faithfulness": {}}, "has no schema version|not a circuitwise evaluation file"),
    (ScoresFile, {"format": "circuitwise.scores", "schema_version": 2}, "newer than the version 1"),
    (BenchmarkFile, {"format": "circuitwise.benchmark", "version": 1, "task": "t"}, "does not fit"),
])
def test_foreign_or_damaged_files_are_named(tmp_path, model, data, match):
    path = tmp_path / model.FILENAME
    path.write_text(json.dumps(data))
    with pytest.raises(SchemaError, match=match):
        model.load(path)
