"""The circuit explorer's data: every number it shows is a number of results.json / circuit.json.

One small run on the tiny model (6 prompts: per-prompt edge scores are exactly per prompt); the
browser side (clicks in Chromium) is tests/unit/reports/test_explorer_browser.py.
"""

from __future__ import annotations

import json
import math
import re

import pytest
import torch

from circuitwise.attribution.attention import attention_patterns
from circuitwise.config import RunConfig
from circuitwise.pipeline import run
from circuitwise.reports.explorer import explorer_data, explorer_html
from circuitwise.schema.circuit import CircuitFile
from circuitwise.schema.results import RunResults


@pytest.fixture(scope="module")
def tiny_run(tiny_model, tmp_path_factory):
    out = tmp_path_factory.mktemp("explorer") / "run"
    run(RunConfig(task="opposites-seed", model="tiny", out=out, top_k=2), model=tiny_model)
    return out


@pytest.fixture(scope="module")
def files(tiny_run):
    results = RunResults.load(tiny_run / "results.json")
    circuit = CircuitFile.load(tiny_run / "circuit.json")
    return results, circuit, explorer_data(results=results, circuit=circuit)


def test_edges_are_circuit_json_s_strongest_first_with_their_per_prompt_scores(files):
    results, circuit, data = files
    assert {(e["s"], e["r"]) for e in data["edges"]} == {(e.sender, e.receiver) for e in circuit.edges}
    mags = [abs(e["score"]) for e in data["edges"]]
    assert mags == sorted(mags, reverse=True)
    stab = results.circuit.evaluation.stability
    assert data["groups"] == {"sizes": [1] * 6, "per_prompt": True, "n_examples": 6}
    for e in data["edges"]:
        exact = next(c.score for c in circuit.edges if (c.sender, c.receiver) == (e["s"], e["r"]))
        assert e["score"] == pytest.approx(exact, rel=1e-5)
        # Invariant: the edge's score is the mean of its per-prompt scores (the method is additive).
        assert sum(e["scores"]) / len(e["scores"]) == pytest.approx(exact, rel=1e-4, abs=1e-7)
        st = next(s for s in stab.edges if (s.sender, s.receiver) == (e["s"], e["r"]))
        assert e["freq"] == st.frequency


def test_node_numbers_are_the_runs(files):
    results, _, data = files
    d = results.dla
    for name, node in data["nodes"].items():
        if node["kind"] != "head":
            continue
        layer, head = map(int, name[1:].split("H"))
        dla = node["dla"]
        assert dla["value"] == d.heads[layer][head] and dla["share"] == d.heads[layer][head] / d.logit_diff
        # Invariant: the per-prompt direct effects average to the mean shown.
        assert sum(dla["per_prompt"]) / len(dla["per_prompt"]) == pytest.approx(dla["value"], rel=1e-4, abs=1e-6)
        sw = results.patching["heads"]
        p = node["patching"]
        assert p["value"] == sw.values[layer][head]
        assert p["per_prompt"] == pytest.approx([ex[layer][head] for ex in sw.per_example], rel=1e-5)
        # The headline is a ratio of means over prompts: recomputed from the raw metric.
        raw = torch.tensor([ex[layer][head] for ex in sw.raw])
        clean, corr = torch.tensor(sw.clean), torch.tensor(sw.corrupted)
        assert p["value"] == pytest.approx(float((raw.mean() - corr.mean()) / (clean.mean() - corr.mean())), rel=1e-5)
    # MLPs, the input and the logits: their per-layer direct effects add up to the logit difference.
    parts = sum(n["dla"]["value"] for k, n in data["nodes"].items() if n["kind"] in ("mlp", "input"))
    assert parts == pytest.approx(sum(v for lab, v in zip(d.layers.labels, d.layers.values, strict=True)
                                      if lab.endswith("mlp_out") and f"MLP{lab.split('_')[0]}" in data["nodes"]
                                      or lab in ("embed", "pos_embed")))
    assert data["nodes"]["logits"]["dla"]["share"] == 1.0


def test_attention_rows_are_the_heads_patterns_on_each_prompt(files, tiny_model):
    from circuitwise.tasks import get_task, tokenize_task

    results, _, data = files
    a = data["attention"]
    assert a["examples"] == list(range(6)) and a["of"] == 6
    tok, _ = tokenize_task(tiny_model, get_task("opposites-seed"))
    for name, rows in a["heads"].items():
        layer, head = map(int, name[1:].split("H"))
        for i in (0, 3):
            ref = attention_patterns(tiny_model, tok, [(layer, head)], example=i).values[0, -1]
            assert rows[i] == pytest.approx(ref.tolist(), abs=1e-6)
            assert sum(rows[i]) == pytest.approx(1.0, abs=1e-5)
            assert len(rows[i]) == len(a["tokens"][i]) == len(results.task.examples[i].tokens)


def test_the_curve_holds_measured_sizes_only(files):
    results, _, data = files
    ev = results.circuit.evaluation
    ns = [p["n"] for p in data["curve"]]
    assert ns == sorted(set(ns))
    for p in data["curve"]:
        if p["from"] == "the circuit itself":
            assert (p["n"], p["f"]) == (ev.faithfulness.n_edges, ev.faithfulness.faithfulness)
        else:
            i = ev.curve.n_edges.index(p["n"])  # the first point that pruned to this size
            assert p["f"] == ev.curve.faithfulness[i]


def test_positions_are_the_position_sweeps(files):
    results, _, data = files
    grids = data["positions"]["grids"]
    for ours, theirs in zip(grids["resid_pre"]["values"], results.patching["resid_pre"].values, strict=True):
        assert ours == pytest.approx(theirs, rel=1e-5)
    for name in (n for n in data["nodes"] if data["nodes"][n]["kind"] == "head"):
        layer, head = map(int, name[1:].split("H"))
        cube = results.patching["heads_by_pos"].values
        assert grids[f"heads_by_pos {name}"]["values"][0] == pytest.approx(
            [cube[layer][p][head] for p in range(len(cube[layer]))], rel=1e-5)


def test_a_prompt_that_closes_the_script_stays_inside_the_json(files):
    results, circuit, _ = files
    evil = "</script><script>alert(1)</script><!--"
    data = results.model_dump(mode="json")
    data["task"]["examples"][0]["tokens"][0] = evil
    data["task"]["examples"][0]["clean"] = evil
    html = explorer_html(explorer_data(results=RunResults.model_validate(data), circuit=circuit), "x-")
    assert evil not in html and "alert(1)" in html
    blob = re.search(r'<script type="application/json" id="x-cwx-data">(.*?)</script>', html, re.S).group(1)
    assert json.loads(blob)["attention"]["prompts"][0] == evil


def test_without_a_run_every_panel_says_what_is_missing(files):
    _, circuit, _ = files
    data = explorer_data(circuit=circuit)
    assert data["n_edges"] == len(circuit.edges) and data["curve"] == []
    for key in ("dla", "patching", "mechanism", "attention", "positions"):
        assert "circuitwise run" in data["missing"][key] or "run's results.json" in data["missing"][key]
    assert all(set(n) == {"kind"} for n in data["nodes"].values())
    assert "window.cwExplorer(" in explorer_html(data)


def test_rounded_per_prompt_values_keep_six_digits(files):
    results, _, data = files
    node = next(n for n in data["nodes"].values() if n["kind"] == "head")
    for x in node["dla"]["per_prompt"]:
        assert x is None or math.isfinite(x) and len(f"{abs(x):.6g}".replace(".", "").lstrip("0")) <= 6


@pytest.fixture(scope="module")
def positional(tiny_model):
    """A position-aware circuit (PEAP): its 7 strongest (edge, token position) pairs."""
    from circuitwise.circuits import score_edges
    from circuitwise.circuits.select import select_positional
    from circuitwise.tasks import get_task, tokenize_task

    tok, _ = tokenize_task(tiny_model, get_task("opposites-seed"), need_corrupted=True)
    scores = score_edges(tiny_model, tok, "eap", positions="tokens", batch_size=6)
    return CircuitFile.model_validate(select_positional(scores, n=7).to_json())


def test_a_position_aware_circuit_keeps_its_pairs_and_per_position_scores(positional):
    data = explorer_data(circuit=positional)
    labels = positional.positions.labels
    assert data["columns"] == {"mode": "tokens", "labels": labels}
    pairs = 0
    for e in positional.edges:
        ours = next(x for x in data["edges"] if (x["s"], x["r"]) == (e.sender, e.receiver))["by_pos"]
        assert ours["scores"] == pytest.approx([e.position_scores[p] for p in labels], rel=1e-5, abs=1e-12)
        assert [p for p, k in zip(labels, ours["kept"], strict=True) if k] == e.kept_positions
        # Invariant: an edge's score is the sum of its scores by position.
        assert sum(ours["scores"]) == pytest.approx(e.score, rel=1e-4, abs=1e-7)
        pairs += len(e.kept_positions)
    assert pairs == 7


def grow(data: dict, n: int, groups: int = 20) -> dict:
    """A run's results.json as if it had ``n`` prompts: every per-prompt list tiled to ``n``."""
    def tile(xs: list) -> list:
        return [xs[i % len(xs)] for i in range(n)]

    d = json.loads(json.dumps(data))
    d["task"]["examples"], d["task"]["n_prompts"] = tile(d["task"]["examples"]), n
    b = d["baseline"]
    for k in ("answer_logits", "answer_probs", "correct_rank", "top_k"):
        b[k] = tile(b[k])
    b["logit_diff"]["per_prompt"] = tile(b["logit_diff"]["per_prompt"])
    d["dla"]["final_resid_per_prompt"] = tile(d["dla"]["final_resid_per_prompt"])
    d["dla"]["heads_per_prompt"] = tile(d["dla"]["heads_per_prompt"])
    for sw in d["patching"].values():
        for k in ("per_example", "raw", "clean", "corrupted"):
            if sw.get(k) is not None:
                sw[k] = tile(sw[k])
    ev = d["circuit"]["evaluation"]
    ev["faithfulness"]["per_example"] = tile(ev["faithfulness"]["per_example"])
    ev["completeness"]["complement"]["per_example"] = tile(ev["completeness"]["complement"]["per_example"])
    st = ev["stability"]
    st.update(groups=groups, n_examples=n, group_sizes=[n // groups] * groups)
    for e in st["edges"]:
        e["scores"] = [e["scores"][i % len(e["scores"])] for i in range(groups)]
        if e.get("prompt_scores") is not None:
            e["prompt_scores"] = tile(e["prompt_scores"])
    return d


def test_a_2000_prompt_report_lists_the_first_200_prompts_and_says_so(tiny_run):
    from circuitwise.reports.build import BASELINE_ROWS, baseline_html

    data = grow(json.loads((tiny_run / "results.json").read_text(encoding="utf-8")), 2000)
    results = RunResults.model_validate(data)
    html = baseline_html(results.baseline, results.task.examples)
    assert html.count("<tr>") - 1 == BASELINE_ROWS == 200
    assert "The first 200 of 2000 prompts" in html


def test_an_mlps_patching_is_its_mlp_out_row_at_its_largest_position(tiny_model, tmp_path):
    out = tmp_path / "run"
    run(RunConfig(task="opposites-seed", model="tiny", out=out, top_k=1, patching=("mlp_out",), circuit="eap"),
        model=tiny_model)
    results = RunResults.load(out / "results.json")
    data = explorer_data(results=results, circuit=CircuitFile.load(out / "circuit.json"))
    sw = results.patching["mlp_out"]
    mlps = [n for n in data["nodes"] if n.startswith("MLP")]
    assert mlps, "the tiny model's circuit has no MLP: pick another run"
    for name in mlps:
        layer = int(name[3:])
        row = sw.values[layer]
        at = max(range(len(row)), key=lambda i: abs(row[i]) if row[i] is not None else -1.0)
        p = data["nodes"][name]["patching"]
        assert (p["value"], p["position"], p["sweep"]) == (row[at], sw.labels["pos"][at], "mlp_out")
        assert p["per_prompt"] == pytest.approx([ex[layer][at] for ex in sw.per_example], rel=1e-5)
    # No heads sweep ran: a head's panel says so instead of showing nothing.
    heads = [n for n in data["nodes"] if data["nodes"][n]["kind"] == "head"]
    assert all(data["nodes"][h]["patching"] is None for h in heads)
    assert "patching" not in data["missing"]  # the run did patch; the JS names the sweep a head needs
