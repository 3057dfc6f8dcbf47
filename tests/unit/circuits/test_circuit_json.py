"""circuit.json: round trip, TransformerLens node fields, and clear errors for files that don't fit."""

from __future__ import annotations

import json

import pytest
import torch

from circuitwise.circuits import Circuit, circuit_figure, eap, select_circuit
from circuitwise.errors import ConfigError


@pytest.fixture(scope="module")
def circuit(tiny_model, tiny_tok):
    return select_circuit(eap(tiny_model, tiny_tok), "top-n", n=10, model=tiny_model, tok=tiny_tok)


def test_round_trip(tiny_model, circuit, tmp_path):
    path = circuit.save(tmp_path / "c" / "circuit.json")
    data = json.loads(path.read_text())
    assert data["format"] == "circuitwise.circuit" and data["n_edges"] == circuit.n_edges
    assert data["model"]["n_layers"] == 2 and data["task"] == "opposites-seed"
    e = data["edges"][0]
    assert set(e) >= {"sender", "receiver", "score", "tl_sender", "tl_receiver"}
    scores = [abs(x["score"]) for x in data["edges"]]
    assert scores == sorted(scores, reverse=True)
    back = Circuit.load(path, tiny_model)
    assert torch.equal(back.edges, circuit.edges)
    torch.testing.assert_close(back.scores[circuit.edges], circuit.scores[circuit.edges])


def test_a_circuit_from_another_model_is_refused(small_model, circuit, tmp_path):
    path = circuit.save(tmp_path / "circuit.json")
    with pytest.raises(ConfigError, match="n_layers=2.*this model has n_layers=4"):
        Circuit.load(path, small_model)


def test_bad_files(tiny_model, circuit, tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        Circuit.load(tmp_path / "missing.json", tiny_model)
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        Circuit.load(bad, tiny_model)
    with pytest.raises(ConfigError, match="not a circuitwise circuit file"):
        Circuit.from_json({"edges": []}, tiny_model)
    data = circuit.to_json()
    data["edges"][0]["receiver"] = "L0H0.q"
    data["edges"][0]["sender"] = "L1H3"
    with pytest.raises(ConfigError, match="edge 0: L1H3->L0H0.q is not an edge"):
        Circuit.from_json(data, tiny_model)
    data = circuit.to_json()
    data["edges"][1] = {"sender": 3}
    with pytest.raises(ConfigError, match="edges.1.sender: Input should be a valid string"):  # the schema names it
        Circuit.from_json(data, tiny_model)


def test_figure(circuit):
    fig = circuit_figure(circuit)
    names = {t.name for t in fig.data if t.name}
    assert {"input", "logits"} <= names
    # One line per edge (hover off), plus the legend's sign samples and the ports' joins (no legend, grey).
    edges = [t for t in fig.data if t.mode == "lines" and t.showlegend is False and t.line.color != "#9e9e9e"]
    widths = [t.line.width for t in edges]
    assert len(widths) == circuit.n_edges and max(widths) > min(widths)
    # Every edge ends in an arrowhead, and every q/k/v port it feeds is drawn and labelled.
    assert len([a for a in fig.layout.annotations if a.showarrow]) == circuit.n_edges
    fed = {r.rsplit(".", 1)[1] for _, r, _ in circuit.edge_list() if "." in r}
    ports = next((t for t in fig.data if t.name == "q / k / v input"), None)
    assert (ports is not None and set(ports.text) == fed) if fed else ports is None
    assert {"positive score", "negative score"} <= names
