"""Figures and the written study folder: self-contained HTML, JSON that re-loads."""

from __future__ import annotations

import json
import re

import pytest

from circuitwise.circuits import Circuit, find_circuit
from circuitwise.evaluation import agreement_figure, evaluate_circuit, faithfulness_curve_figure
from circuitwise.reports.study import write_outputs


@pytest.fixture(scope="module")
def study(known_model, known_tok):
    found = find_circuit(known_model, known_tok, method="eap", selection="target", target=0.9)
    ev = evaluate_circuit(known_model, known_tok, found.circuit, scores=found.scores, random_samples=3, shortlist=8)
    return found, ev


def test_curve_figure_marks_the_circuit_and_random(study):
    found, ev = study
    fig = faithfulness_curve_figure(ev.curve, circuit_edges=found.circuit.n_edges,
                                    circuit_faithfulness=ev.faithfulness.faithfulness, target=0.9)
    names = {t.name for t in fig.data}
    assert {"chosen circuit", "random circuits"} <= names
    assert fig.layout.xaxis.type == "log"
    assert agreement_figure(ev.agreement).data[0].x is not None


def test_write_outputs(known_model, study, tmp_path):
    found, ev = study
    paths = write_outputs(tmp_path / "out", found.circuit, ev, found.scores)
    html = paths["html"].read_text()
    assert re.search(r"<script[^>]*\bsrc=", html) is None  # nothing loaded from a CDN
    assert html.count("Plotly.newPlot") == 3  # curve, MIB budgets, agreement
    assert html.count("window.cwExplorer(") == 1  # the circuit itself, in the explorer
    assert "MIB" in html and "CPR" in html
    ev_json = json.loads(paths["evaluation"].read_text())
    assert ev_json["faithfulness"]["faithfulness"] >= 0.9
    saved = json.loads(paths["circuit"].read_text())
    assert saved["mib"]["cpr"] == pytest.approx(ev.mib.cpr) and ev_json["mib"]["cmd"] == pytest.approx(ev.mib.cmd)
    assert len(saved["mib"]["curves"]["signed"]["faithfulness"]) == 10
    back = Circuit.load(paths["circuit"], known_model)
    assert back.n_edges == found.circuit.n_edges
    assert len(json.loads(paths["scores"].read_text())["scores"]) == found.circuit.graph.n_edges


def test_evaluate_never_rewrites_its_input_circuit(study, tmp_path):
    """`evaluate C --out <folder of C>` keeps C byte for byte (fields circuitwise does not know included)."""
    found, ev = study
    out = tmp_path / "study"
    write_outputs(out, found.circuit, ev, found.scores)
    circ = out / "circuit.json"
    data = json.loads(circ.read_text())
    data["note"] = "kept by hand"
    circ.write_text(json.dumps(data))
    before = circ.read_bytes()
    write_outputs(out, found.circuit, ev, source=circ)
    assert circ.read_bytes() == before and (out / "scores.json").exists()
    elsewhere = tmp_path / "other"
    write_outputs(elsewhere, found.circuit, ev, source=circ)
    assert (elsewhere / "circuit.json").read_bytes() == before and not (elsewhere / "scores.json").exists()


def test_the_summary_gives_no_share_of_a_clean_metric_of_zero(study):
    # KL to the clean run is 0 there by definition: the share "kept" is undefined, and the summary
    # printed "keeps nan% of the clean metric"; it now gives the three metrics alone.
    import dataclasses

    from circuitwise.evaluation.outputs import summary_lines

    _, ev = study
    kept = next(s for s in summary_lines(ev) if s.startswith("faithfulness"))
    assert f"keeps {ev.faithfulness.kept_fraction:.1%} of the clean metric" in kept
    at_zero = dataclasses.replace(ev.faithfulness, circuit_metric=0.767, clean_metric=0.0, corrupted_metric=15.6)
    line = next(s for s in summary_lines(dataclasses.replace(ev, faithfulness=at_zero))
                if s.startswith("faithfulness"))
    assert "nan" not in line and "keeps" not in line
    assert line.endswith("metric: circuit +0.767, clean +0.000, corrupted +15.600")
