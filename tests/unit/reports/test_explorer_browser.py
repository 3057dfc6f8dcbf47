"""The circuit explorer clicked in headless Chromium: the panels show results.json's and circuit.json's numbers.

A copy of the real report gets a test-only script (explorer_clicks.js, first in <head>) that moves
the slider through every size, clicks every node and edge, picks every prompt in the attention
panel and every sweep of the position grid, with DOM events, and writes every number the panels
show (each sits in a ``.cwx-v`` with its value) into the page as JSON; ``--dump-dom`` returns it.
Chromium runs offline, so nothing can come from a CDN.
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from markupsafe import Markup

from circuitwise.config import RunConfig
from circuitwise.pipeline import run
from circuitwise.reports.build import build_page
from circuitwise.schema.circuit import CircuitFile
from circuitwise.schema.results import RunResults
from tests.unit.reports.test_explorer import grow

pytestmark = pytest.mark.browser

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
CLICKS = (Path(__file__).parent / "explorer_clicks.js").read_text(encoding="utf-8")


def _clicked(page: Path, tmp_path: Path, *, virtual_time: bool = True) -> tuple[dict, list[str], float]:
    """The clicks' read-out of ``page``, Chromium's console lines, and the wall time of the browser run."""
    if CHROMIUM is None:
        if os.environ.get("CIRCUITWISE_REQUIRE_BROWSER") == "1":
            pytest.fail("chromium is not installed; .ci/run installs Debian's chromium package")
        pytest.skip("chromium not installed (apt-get install chromium)")
    test_page = page.with_name(page.stem + ".clicks.html")
    test_page.write_text(page.read_text(encoding="utf-8").replace("<head>", f"<head><script>{CLICKS}</script>", 1),
                         encoding="utf-8")
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           "--disable-dev-shm-usage", f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr", "--v=0",
           *(["--virtual-time-budget=15000"] if virtual_time else []), "--dump-dom", test_page.resolve().as_uri()]
    start = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240)
    wall = time.monotonic() - start
    m = re.search(r'<pre id="cwx-selftest">(.*?)</pre>', proc.stdout, re.S)
    assert m, "the click script wrote nothing:\n" + proc.stderr[-3000:]
    console = [line for line in proc.stderr.splitlines() if ":CONSOLE" in line]
    return json.loads(html.unescape(m.group(1))), console, wall


@pytest.fixture(scope="module")
def tiny_run(tiny_model, tmp_path_factory):
    out = tmp_path_factory.mktemp("explorer-browser") / "run"
    run(RunConfig(task="opposites-seed", model="tiny", out=out, top_k=2), model=tiny_model)
    return out


def _faithfulness_at(k: int, curve, circuit_point) -> tuple[float | None, str | None]:
    """The faithfulness at ``k`` edges from results.json's curve: measured, else linear between neighbours."""
    points: dict[int, float] = {}
    for n, f in zip(curve.n_edges, curve.faithfulness, strict=True):
        if f is not None:
            points.setdefault(n, f)
    points.setdefault(*circuit_point)
    if k in points:
        return points[k], "measured"
    lo = max((n for n in points if n < k), default=None)
    hi = min((n for n in points if n > k), default=None)
    if lo is None or hi is None:
        return None, None
    return points[lo] + (points[hi] - points[lo]) * (k - lo) / (hi - lo), "interpolated"


def _num(s: str | None) -> float | None:
    return None if s in (None, "null") else float(s)


def test_clicks_show_the_files_numbers_with_no_console_errors(tiny_run, tmp_path):
    results = RunResults.load(tiny_run / "results.json")
    circuit = CircuitFile.load(tiny_run / "circuit.json")
    out, console, _ = _clicked(tiny_run / "report.html", tmp_path)
    assert out["errors"] == [] and console == [], "\n".join(out["errors"] + console)
    (ex,) = out["explorers"]
    c = results.circuit
    edges = sorted(circuit.edges, key=lambda e: -abs(e.score))

    # The slider: k edges (each with its arrowhead) among the nodes they join, and the curve's faithfulness.
    assert ex["max"] == len(circuit.edges) and sorted(map(int, ex["slider"])) == list(range(1, ex["max"] + 1))
    fs = c.evaluation.faithfulness
    for k, shown in ex["slider"].items():
        k = int(k)
        assert shown["edges"] == shown["arrows"] == k
        nodes = {e.sender for e in edges[:k]} | {e.receiver.split(".")[0] for e in edges[:k]}
        assert shown["nodes"] == len(nodes)
        assert shown["ports"] == 3 * sum(1 for n in nodes if n[0] == "L")  # q, k, v drawn on every head
        f, how = _faithfulness_at(k, c.evaluation.curve, (fs.n_edges, fs.faithfulness))
        assert shown["how"] == how
        if f is None:
            assert shown["values"]["faith"] == "null"
        else:
            assert _num(shown["values"]["faith"]) == pytest.approx(f, rel=1e-9)
    assert _num(ex["slider"][str(ex["max"])]["values"]["faith"]) == pytest.approx(fs.faithfulness)

    # Node panels: DLA and its share, patching, their per-prompt distributions, mechanism read-outs.
    d, heads_sweep = results.dla, results.patching["heads"]
    assert set(ex["nodes"]) == set(circuit.nodes)
    for name, panel in ex["nodes"].items():
        v = panel["values"]
        assert panel["panel"] == "node" and panel["node"] == name
        if name.startswith("L"):
            layer, head = map(int, name[1:].split("H"))
            assert _num(v["dla"]) == d.heads[layer][head]
            assert _num(v["dla-share"]) == pytest.approx(d.heads[layer][head] / d.logit_diff)
            per = [p[layer][head] for p in d.heads_per_prompt]
            assert _num(v["dla-dist-n"]) == len(per)
            assert _num(v["dla-dist-mean"]) == pytest.approx(sum(per) / len(per), rel=1e-5)
            assert _num(v["dla-dist-min"]) == pytest.approx(min(per), rel=1e-5)
            assert _num(v["dla-dist-max"]) == pytest.approx(max(per), rel=1e-5)
            assert _num(v["patch"]) == heads_sweep.values[layer][head]
            per_patch = [ex_[layer][head] for ex_ in heads_sweep.per_example]
            assert _num(v["patch-dist-max"]) == pytest.approx(max(per_patch), rel=1e-5)
            mech = next((h for h in results.mechanism.heads if (h.layer, h.head) == (layer, head)), None)
            if mech is not None:
                assert _num(v["mech-z-attended"]) == mech.ov_attended.z
            else:
                assert any("not one of them" in m for m in panel["missing"])
        elif name == "logits":
            assert _num(v["dla"]) == d.logit_diff and _num(v["dla-share"]) == 1.0
            assert _num(v["dla-dist-mean"]) == pytest.approx(results.baseline.logit_diff.mean, rel=1e-5)
        elif name.startswith("MLP"):
            assert _num(v["dla"]) == d.layers.values[d.layers.labels.index(f"{name[3:]}_mlp_out")]
            # No mlp_out sweep in this run: the panel says so instead of staying blank.
            assert any("no patching sweep covers this node" in m for m in panel["missing"])

    # The prompt selector: each prompt's attention row from the answer position, as results.json has it.
    att = c.attention
    assert set(ex["prompts"]) == set(att.heads) and att.heads
    for head, by_prompt in ex["prompts"].items():
        rows = att.rows[att.heads.index(head)]
        assert len(by_prompt) == len(att.examples)
        for i, shown in by_prompt.items():
            assert int(shown["prompt"]) == att.examples[int(i)]
            got = [_num(shown["values"][f"attn-{j}"]) for j in range(len(rows[int(i)]))]
            assert got == pytest.approx(rows[int(i)], abs=1e-6)
    first = next(iter(ex["prompts"].values()))
    assert first["0"]["values"]["attn-0"] != first["1"]["values"]["attn-0"]  # the selector re-drew the rows

    # Edge panels: the score, its resampling frequency and its score on each prompt.
    stab = {(e.sender, e.receiver): e for e in c.evaluation.stability.edges}
    assert set(ex["edges"]) == {f"{e.sender}->{e.receiver}" for e in circuit.edges}
    for e in circuit.edges:
        v = ex["edges"][f"{e.sender}->{e.receiver}"]["values"]
        st = stab[(e.sender, e.receiver)]
        assert _num(v["edge-score"]) == pytest.approx(e.score, rel=1e-5)
        assert _num(v["edge-freq"]) == st.frequency
        # Each prompt's own score (the stability pass keeps them for the circuit's edges), all of them.
        assert st.prompt_scores is not None and len(st.prompt_scores) == results.task.n_prompts
        assert [_num(v[f"edge-prompt-{i}"]) for i in range(len(st.prompt_scores))] == \
            pytest.approx(st.prompt_scores, rel=1e-5, abs=1e-9)
        assert _num(v["edge-dist-n"]) == len(st.prompt_scores)
        assert _num(v["edge-mean"]) == pytest.approx(e.score, rel=1e-4, abs=1e-7)

    # The token × layer grid: every cell of each position sweep, and each circuit head's heads_by_pos row.
    rp = results.patching["resid_pre"]
    cells = {(layer, pos): _num(val) for layer, pos, val in ex["grids"]["resid_pre"]}
    for li, layer in enumerate(rp.labels["layer"]):
        for pi in range(len(rp.labels["pos"])):
            assert cells[(layer, pi)] == pytest.approx(rp.values[li][pi], rel=1e-5, abs=1e-12)
    for head in att.heads:
        layer, h = map(int, head[1:].split("H"))
        row = [_num(val) for _, _, val in ex["grids"][f"heads_by_pos {head}"]]
        assert row == pytest.approx([p[h] for p in results.patching["heads_by_pos"].values[layer]], rel=1e-5)


@pytest.mark.slow
def test_a_2000_prompt_runs_page_opens_and_draws_every_prompt(tiny_run, tmp_path):
    """The tiny run's files grown to 2,000 prompts (a real 2,000-prompt run takes minutes here): the page
    opens with no error and the panels' distributions count all 2,000 prompts. How fast it opens is
    measured in bench/explorer_load.py (a timed test fails on a busy CI machine, not on a slow page)."""
    data = json.loads((tiny_run / "results.json").read_text(encoding="utf-8"))
    results = RunResults.model_validate(grow(data, 2000))
    page = tmp_path / "report.html"
    build_page(results, CircuitFile.load(tiny_run / "circuit.json")).write(page)
    out, console, _ = _clicked(page, tmp_path, virtual_time=False)
    assert out["errors"] == [] and console == [], "\n".join(out["errors"] + console)
    ((drawn, _init),) = out["drawn"]
    assert drawn > 0  # the explorer finished drawing (set last in its init; its timings are bench/explorer_load.py's)
    node = next(v for k, v in out["explorers"][0]["nodes"].items() if k.startswith("L"))
    assert _num(node["values"]["dla-dist-n"]) == 2000
    # An edge's panel: its histogram counts every prompt's own score, its table lists the first 200.
    edge = next(iter(out["explorers"][0]["edges"].values()))["values"]
    assert _num(edge["edge-dist-n"]) == 2000
    assert "edge-prompt-199" in edge and "edge-prompt-200" not in edge


def test_a_position_aware_circuits_notebook_output_draws_its_pairs(tiny_model, tmp_path):
    """A PEAP circuit shown in a notebook (no run's files): each kept (edge, position) pair is drawn on
    the token × layer grid and its click shows the edge's score at every position, as circuit.json has it;
    the panels with no data say so."""
    from circuitwise.circuits import score_edges
    from circuitwise.circuits.select import select_positional
    from circuitwise.reports.display import html_of
    from circuitwise.reports.html import render
    from circuitwise.tasks import get_task, tokenize_task

    tok, _ = tokenize_task(tiny_model, get_task("opposites-seed"), need_corrupted=True)
    circuit = select_positional(score_edges(tiny_model, tok, "eap", positions="tokens", batch_size=6), n=7)
    page = tmp_path / "circuit.html"
    page.write_text(render("standalone.html", name="circuit", body=Markup(html_of(circuit))), encoding="utf-8")
    out, console, _ = _clicked(page, tmp_path)
    assert out["errors"] == [] and console == [], "\n".join(out["errors"] + console)
    (ex,) = out["explorers"]
    file = CircuitFile.model_validate(circuit.to_json())
    labels = file.positions.labels
    kept = {f"{e.sender}->{e.receiver}@{labels.index(p)}" for e in file.edges for p in e.kept_positions}
    assert set(ex["pairs"]) == kept and len(kept) == 7
    for key, values in ex["pairs"].items():
        name = key.split("@")[0]
        e = next(e for e in file.edges if f"{e.sender}->{e.receiver}" == name)
        got = [_num(values[f"edge-pos-{j}"]) for j in range(len(labels))]
        assert got == pytest.approx([e.position_scores[p] for p in labels], rel=1e-5, abs=1e-12)
    head = next(k for k in ex["nodes"] if k.startswith("L"))
    assert any("circuitwise run" in m for m in ex["nodes"][head]["missing"])


def test_a_key_query_circuits_edge_panel_shows_its_flows(tiny_model, tmp_path):
    """A circuit of (edge, key position, query position) units: clicking a kept key/value pair shows the
    edge's score split by key and query, as circuit.json has it, with the kept flows marked."""
    from circuitwise.circuits import score_edges
    from circuitwise.circuits.select import select_kq_circuit
    from circuitwise.reports.display import html_of
    from circuitwise.reports.html import render
    from circuitwise.tasks import get_task, tokenize_task

    tok, _ = tokenize_task(tiny_model, get_task("opposites-seed"), need_corrupted=True)
    scores = score_edges(tiny_model, tok, "eap", positions="tokens", kv_positions="key-query", batch_size=6)
    circuit = select_kq_circuit(scores, n=12)
    file = CircuitFile.model_validate(circuit.to_json())
    with_flows = [e for e in file.edges if e.flow_scores is not None]
    assert with_flows, "pick n so that the circuit keeps a key/value flow"
    page = tmp_path / "circuit.html"
    page.write_text(render("standalone.html", name="circuit", body=Markup(html_of(circuit))), encoding="utf-8")
    out, console, _ = _clicked(page, tmp_path)
    assert out["errors"] == [] and console == [], "\n".join(out["errors"] + console)
    (ex,) = out["explorers"]
    labels = file.positions.labels
    compared = 0
    for e in with_flows:
        values = ex["edges"][f"{e.sender}->{e.receiver}"]["values"]
        for a, k in enumerate(labels):
            for b, q in enumerate(labels):
                want = e.flow_scores.get(k, {}).get(q)
                got = values.get(f"edge-flow-{a}-{b}")
                assert (want is None and _num(got) is None) or _num(got) == pytest.approx(want, rel=1e-5, abs=1e-12)
                compared += want is not None
    assert compared >= len(with_flows)
    kept = {(e.sender, e.receiver, k, q) for e in with_flows for k, q in e.kept_flows}
    assert kept and all(k in labels and q in labels for *_, k, q in kept)


def test_circuit_html_of_a_circuit_study_draws_the_explorer(tiny_model, tmp_path):
    """circuit.html as `circuitwise circuit` writes it (reports.study.write_outputs): the slider's
    faithfulness at the circuit's own size is the evaluation's, and the panels a study lacks say so."""
    import circuitwise as cw
    from circuitwise.reports.study import write_outputs
    from circuitwise.tasks import get_task, tokenize_task

    tok, _ = tokenize_task(tiny_model, get_task("opposites-seed"), need_corrupted=True)
    found = cw.find_circuit(tiny_model, tok, method="eap", target=0.9)
    ev = cw.evaluate_circuit(tiny_model, tok, found.circuit, scores=found.scores, random_samples=2)
    paths = write_outputs(tmp_path / "study", found.circuit, ev, found.scores)
    out, console, _ = _clicked(paths["html"], tmp_path)
    assert out["errors"] == [] and console == [], "\n".join(out["errors"] + console)
    (ex,) = out["explorers"]
    n = found.circuit.n_edges
    assert ex["max"] == n and ex["slider"][str(n)]["how"] == "measured"
    assert _num(ex["slider"][str(n)]["values"]["faith"]) == pytest.approx(ev.faithfulness.faithfulness)
    assert set(ex["edges"]) == {f"{s}->{r}" for s, r, _ in found.circuit.edge_list()}
    for (s, r, score) in found.circuit.edge_list():
        shown = ex["edges"][f"{s}->{r}"]
        assert _num(shown["values"]["edge-score"]) == pytest.approx(score, rel=1e-5)
        assert any("edge stability was not measured" in m for m in shown["missing"])
