"""EAP-IG graph files: round trips, EAP-IG's layout built independently, a hand-written file, bad files."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from circuitwise.circuits import Circuit, find_circuit
from circuitwise.circuits.interop import (
    circuit_from_eap_ig,
    export_eap_ig,
    read_graph_file,
    to_eap_ig_json,
)
from circuitwise.cli import _register, app
from circuitwise.errors import ConfigError
from circuitwise.tasks.io import write_jsonl
from tests.unit.circuits.known_circuit import PLANTED, known_circuit_task

DATA = Path(__file__).parent / "data"
_register()


@pytest.fixture(scope="module")
def found(known_model, known_tok):
    return find_circuit(known_model, known_tok, method="eap", selection="top-n", n=6)


def load(path: Path, model):
    kind, graph = read_graph_file(path)
    assert kind == "eap-ig"
    return circuit_from_eap_ig(graph, model, source=str(path))


@pytest.mark.parametrize("suffix", [".json", ".pt"])
def test_round_trip_is_identical(found, known_model, tmp_path, suffix):
    c = found.circuit
    path = export_eap_ig(c, tmp_path / f"graph{suffix}")
    back = load(path, known_model)
    assert torch.equal(back.edges, c.edges)
    assert torch.equal(back.scores, c.scores)  # float32 scores survive JSON exactly
    assert back.selection["format"] == f"eap-ig-{suffix[1:]}"
    again = export_eap_ig(back, tmp_path / f"again{suffix}")
    if suffix == ".json":
        assert json.loads(again.read_text()) == json.loads(path.read_text())


def test_json_has_eap_igs_names(found):
    g = found.circuit.graph
    d = to_eap_ig_json(found.circuit)
    assert d["cfg"] == {"n_layers": 2, "n_heads": 4, "parallel_attn_mlp": False, "d_model": 64}
    assert list(d["nodes"]) == ["input", "a0.h0", "a0.h1", "a0.h2", "a0.h3", "m0",
                                "a1.h0", "a1.h1", "a1.h2", "a1.h3", "m1", "logits"]
    assert len(d["edges"]) == g.n_edges == 110
    for name in ("input->a0.h0<q>", "input->a0.h3<v>", "a0.h1->m0", "a0.h2->a1.h0<k>", "m0->a1.h3<v>",
                 "a1.h3->m1", "m1->logits", "input->logits"):
        assert name in d["edges"]
    assert "a1.h0->a1.h1<q>" not in d["edges"] and "m1->a1.h0<q>" not in d["edges"]
    for s, r in PLANTED:  # the chosen circuit holds the planted path, named EAP-IG's way
        name = {("input", "L0H0.v"): "input->a0.h0<v>", ("L0H0", "L1H0.v"): "a0.h0->a1.h0<v>",
                ("L1H0", "logits"): "a1.h0->logits"}[(s, r)]
        assert d["edges"][name]["in_graph"] is True
    # EAP-IG's node rule: in the graph with an in-graph edge out and (the input aside) one in
    assert d["nodes"]["a0.h0"]["in_graph"] and d["nodes"]["input"]["in_graph"] and d["nodes"]["logits"]["in_graph"]


def test_pt_built_from_eap_igs_index_formulas(known_model, tmp_path):
    """A .pt laid out by EAP-IG's forward/backward index arithmetic, not by our exporter."""
    L, H = 2, 4
    fwd = lambda n: 0 if n == "input" else (1 + int(n[1]) * (H + 1) + (H if n[0] == "m" else int(n[-1])))  # noqa: E731

    def bwd(n: str, qkv: str | None = None) -> int:
        if n == "logits":
            return L * (3 * H + 1)
        layer = int(n[1])
        return layer * (3 * H + 1) + (3 * H if n[0] == "m" else "qkv".index(qkv) * H + int(n[-1]))

    src = ["input"] + [x for l in range(L) for x in [f"a{l}.h{h}" for h in range(H)] + [f"m{l}"]]
    dst = [x for l in range(L) for x in [f"a{l}.h{h}<{c}>" for c in "qkv" for h in range(H)] + [f"m{l}"]] + ["logits"]
    scores = torch.zeros(len(src), len(dst))
    in_graph = torch.zeros(len(src), len(dst), dtype=torch.bool)
    for (a, b, q), v in {("input", "a0.h0", "v"): 2.5, ("a0.h0", "a1.h0", "v"): 1.75, ("a1.h0", "logits", None): 3.0,
                         ("a0.h2", "m0", None): -0.5}.items():
        scores[fwd(a), bwd(b, q)] = v
        in_graph[fwd(a), bwd(b, q)] = v > 0
    path = tmp_path / "g.pt"
    torch.save({"cfg": {"n_layers": L, "n_heads": H, "parallel_attn_mlp": False, "d_model": 64}, "src_nodes": src,
                "dst_nodes": dst, "edges_scores": scores, "edges_in_graph": in_graph,
                "nodes_in_graph": torch.zeros(len(src), dtype=torch.bool)}, path)
    c = load(path, known_model)
    assert {(s, r) for s, r, _ in c.edge_list()} == PLANTED
    g = c.graph
    assert float(c.scores[g.edge_id("L0H2", "MLP0")]) == -0.5
    assert float(c.scores[g.edge_id("L1H0", "logits")]) == 3.0
    assert int((c.scores != 0).sum()) == 4


def test_hand_written_fixture_evaluates(known_ckpt, tmp_path):
    task = tmp_path / "copy.jsonl"
    write_jsonl(known_circuit_task(), task)
    r = CliRunner().invoke(app, ["evaluate", str(DATA / "known_circuit_eap_ig.json"), str(task), "--model",
                                 str(known_ckpt), "--json", "--random-samples", "3"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    ev = json.loads(r.stdout)
    assert ev["faithfulness"]["n_edges"] == 3 and ev["faithfulness"]["faithfulness"] > 0.9
    assert ev["mib"] is None  # the file scores 9 of 110 edges: no ranking of the whole graph
    assert "records no model: only its shapes were checked" in " ".join(r.stderr.split())  # never silent


def bad(tmp_path: Path, content: bytes | str, name: str = "bad.json") -> str:
    p = tmp_path / name
    p.write_bytes(content.encode() if isinstance(content, str) else content)
    with pytest.raises(ConfigError) as e:
        read_graph_file(p)
    return str(e.value)


class NotATensor:
    pass


def test_bad_files_are_refused_clearly(tmp_path, known_model):
    assert "neither a circuitwise circuit.json" in bad(tmp_path, '{"hello": 1}')
    assert "EAP-IG graph" in bad(tmp_path, "[1, 2]")
    fixture = json.loads((DATA / "known_circuit_eap_ig.json").read_text())
    wrong = {**fixture, "edges": {"a1.h0->a0.h1<q>": {"score": 1.0, "in_graph": True}}}
    assert "not an edge" in bad(tmp_path, json.dumps(wrong))
    wrong = {**fixture, "edges": {"input->a0.h0<v>": {"score": "big", "in_graph": True}}}
    assert "must be a number" in bad(tmp_path, json.dumps(wrong))
    assert "n_heads" in bad(tmp_path, json.dumps({**fixture, "cfg": {"n_layers": 2}}))
    assert "not valid JSON" in bad(tmp_path, b"\x00\x01garbage")
    # a .pt holding an arbitrary object is never unpickled
    evil = tmp_path / "evil.pt"
    torch.save({"cfg": NotATensor()}, evil)
    assert "never unpickles" in bad(tmp_path, evil.read_bytes(), "evil.pt")
    raw = tmp_path / "raw.pt"
    raw.write_bytes(pickle.dumps({"cfg": NotATensor()}, protocol=2))
    msg = bad(tmp_path, raw.read_bytes(), "raw.pt")  # a bare pickle: refused before any object is built
    assert "never unpickles" in msg or "readable torch file" in msg
    keys = tmp_path / "keys.pt"
    torch.save({"cfg": {"n_layers": 2, "n_heads": 4}}, keys)
    assert "needs the keys" in bad(tmp_path, keys.read_bytes(), "keys.pt")
    # a graph of another shape does not fit the model
    other = json.loads(json.dumps(fixture))
    other["cfg"]["n_heads"] = 8
    p = tmp_path / "other.json"
    p.write_text(json.dumps({**other, "edges": {}}))
    with pytest.raises(ConfigError, match="2 layers × 8 heads"):
        load(p, known_model)


def test_export_needs_every_score_and_a_known_suffix(found, tmp_path):
    c = found.circuit
    with pytest.raises(ConfigError, match=".json or .pt"):
        export_eap_ig(c, tmp_path / "graph.txt")
    partial = Circuit(c.graph, c.edges, torch.where(c.edges, c.scores, torch.tensor(float("nan"))), c.method)
    with pytest.raises(ConfigError, match="no score"):
        export_eap_ig(partial, tmp_path / "graph.json")
    assert not (tmp_path / "graph.json").exists()


def test_cli_exports_and_evaluates_the_file(known_ckpt, known_model, tmp_path):
    task = tmp_path / "copy.jsonl"
    write_jsonl(known_circuit_task(), task)
    runner = CliRunner()
    r = runner.invoke(app, ["circuit", str(task), "--model", str(known_ckpt), "--method", "eap", "--selection", "top-n",
                            "--edges", "5", "--random-samples", "0", "--shortlist", "0", "--out", str(tmp_path / "s"),
                            "--export-eap-ig", str(tmp_path / "graph.pt")], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    saved = Circuit.load(tmp_path / "s" / "circuit.json", known_model)
    pt = load(tmp_path / "graph.pt", known_model)
    assert torch.equal(pt.edges, saved.edges)
    r = runner.invoke(app, ["evaluate", str(tmp_path / "graph.pt"), str(task), "--model", str(known_ckpt), "--json",
                            "--random-samples", "0", "--out", str(tmp_path / "ev")], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    ev = json.loads(r.stdout)
    study = json.loads((tmp_path / "s" / "evaluation.json").read_text())
    assert ev["faithfulness"]["faithfulness"] == pytest.approx(study["faithfulness"]["faithfulness"], abs=1e-6)
    assert ev["mib"]["cpr"] == pytest.approx(study["mib"]["cpr"], abs=1e-6)  # the file scores every edge
    converted = Circuit.load(tmp_path / "ev" / "circuit.json", known_model)  # --out gets a circuit.json of it
    assert torch.equal(converted.edges, saved.edges) and converted.selection["format"] == "eap-ig-pt"
