"""The attribution graph's page: self-contained, drawn from graph.json alone, strings escaped; in
headless Chromium it draws every node the threshold keeps, with no console errors, and a clicked
node's panel shows its numbers, links and contexts."""

from __future__ import annotations

import re

import pytest
from markupsafe import Markup

import circuitwise  # noqa: F401  (registers the notebook renderers)
from circuitwise.features.export import graph_file
from circuitwise.reports.graph import graph_data, graph_page, write_graph_page
from circuitwise.schema.graph import GraphFile
from tests.unit.features.small_graph import small_graph
from tests.unit.features.test_export_engine import _graph
from tests.unit.reports.test_browser import _headless


def _hostile() -> GraphFile:
    g = small_graph().model_dump()
    g["tokens"][1] = "</script><script>alert(1)</script>"
    g["prompt"] = "<img src=x onerror=alert(2)>"
    return GraphFile.model_validate(g)


def test_data_indexes_links_by_node():
    g = small_graph()
    d = graph_data(g)
    ids = [n["id"] for n in d["nodes"]]
    assert ids == [n.id for n in g.nodes] and d["n_layers"] == 2 and d["tokens"] == g.tokens
    assert [(ids[s], ids[t], w) for s, t, w in d["edges"]] == [(e.source, e.target, e.weight) for e in g.edges]
    assert d["nodes"][4]["contexts"][1]["tokens"] == ["The", " cat", " is"]


def test_page_is_self_contained_and_escapes_the_prompt():
    html = graph_page(_hostile())
    assert "<script>alert(1)" not in html and "<img src=x" not in html
    assert "&lt;img src=x onerror=alert(2)&gt;" in html
    # Nothing is fetched: no external script, stylesheet or image.
    assert not re.search(r"<(script|link|img)[^>]+(src|href)=", html)
    assert "cwGraph(" in html and "Most influential features" in html


def test_notebook_display_of_the_file_and_of_the_engines_graph():
    out = small_graph()._repr_html_()
    assert 'class="cwd"' in out and "cwGraph(" in out and "Attribution graph — opposites" in out
    from circuitwise.reports.display import html_of

    out = html_of(_graph())
    assert "cwGraph(" in out and "3_5_2" in out


def _kept(g: GraphFile, threshold: float) -> set[str]:
    """The page's node threshold written out: features and errors by influence until the share is reached."""
    ranked = sorted((n for n in g.nodes if n.kind in ("feature", "error")), key=lambda n: -(n.influence or 0.0))
    total = sum(n.influence or 0.0 for n in ranked)
    keep, running = {n.id for n in g.nodes if n.kind in ("embedding", "logit")}, 0.0
    for n in ranked:
        if running / total >= threshold:
            break
        keep.add(n.id)
        running += n.influence or 0.0
    return keep


@pytest.mark.browser
@pytest.mark.parametrize("threshold", [1.0, 0.6])
def test_page_draws_in_chromium_and_shows_the_clicked_node(tmp_path, threshold):
    g = small_graph()
    path = write_graph_page(g, tmp_path)
    dom, console = _headless(path.resolve().as_uri() + f"#threshold={threshold}&node=0_3_3", tmp_path)
    assert console == [], "console messages:\n" + "\n".join(console)
    drawn = set(re.findall(r'class="cwg-node[^"]*" data-id="([^"]+)"', dom))
    assert drawn == _kept(g, threshold) | {"0_3_3"}
    assert (threshold == 1.0) == (drawn == {n.id for n in g.nodes})
    n_links = len(re.findall(r'<path[^>]*class="cwg-edge"', dom))
    assert n_links == sum(e.source in drawn and e.target in drawn for e in g.edges)
    panel = re.search(r'<div class="cwg-panel">(.*?)</div></div></div>', dom, re.S)
    assert panel, "the clicked node's panel is missing"
    text = panel.group(1)
    assert 'class="cwg-activation">2.500<' in text and 'class="cwg-influence">0.400<' in text
    assert 'data-id="E_318_3"' in text and 'data-id="1_0_3"' in text and "+2.000" in text and "-1.000" in text
    assert "corpus 7" in text and "cwg-peak" in text


def _checked() -> GraphFile:
    """small_graph with checks: node 0_3_3 ablated, its incoming link from E_318_3 split by heads."""
    g = small_graph().model_dump()
    for e in g["edges"]:
        if (e["source"], e["target"]) == ("E_318_3", "0_3_3"):
            e["heads"] = [{"head": "L0H1", "loading": 1.25}, {"head": "L0H0", "loading": 0.75}]
            e["residual"] = 0.0
    g["checks"] = {"target": "logit(' young') - logit(' old')", "faithfulness": 0.9, "graph_metric": 0.9,
                   "all_metric": 1.0, "none_metric": 0.0, "sign_agreement": 1.0, "links_analysed": 1,
                   "interventions": [{"node": "0_3_3", "actual": -0.625, "predicted": -0.5, "predicted_kept": -0.4375,
                                      "predicted_direct": -0.375, "actual_frozen_norms": -0.5}],
                   "heads": [{"head": "L0H1", "loading": 1.25, "abs_loading": 1.25, "links": 1, "in_circuit": True},
                             {"head": "L0H0", "loading": 0.75, "abs_loading": 0.75, "links": 1, "in_circuit": False}],
                   "circuit": {"source": "runs/c/circuit.json", "heads": ["L0H1"]}}
    return GraphFile.model_validate(g)


def test_the_checks_tables():
    html = graph_page(_checked())
    assert "Does the graph say what the model does?" in html and "0.900: the kept features alone" in html
    assert '<td class="num">-0.625</td><td class="num">-0.500</td><td class="num">-0.438</td>' in html
    assert "in the edge circuit" in html and "runs/c/circuit.json: heads L0H1" in html


@pytest.mark.browser
def test_a_clicked_feature_shows_its_ablation_and_its_links_heads(tmp_path):
    path = write_graph_page(_checked(), tmp_path)
    dom, console = _headless(path.resolve().as_uri() + "#node=0_3_3", tmp_path)
    assert console == [], "console messages:\n" + "\n".join(console)
    panel = re.search(r'<div class="cwg-panel">(.*?)</div></div></div>', dom, re.S)
    assert panel, "the clicked node's panel is missing"
    text = panel.group(1)
    assert "Ablated in the unfrozen model" in text and "-0.625" in text and "-0.500" in text
    assert "L0H1 +1.250, L0H0 +0.750" in text


@pytest.mark.browser
def test_a_hostile_token_stays_text_in_chromium(tmp_path):
    path = write_graph_page(_hostile(), tmp_path)
    dom, console = _headless(path.resolve().as_uri(), tmp_path)
    assert console == []
    assert "&lt;/script&gt;&lt;script&gt;alert(1)" in dom  # drawn as the token's text


def test_engine_graph_page(tmp_path):
    path = write_graph_page(graph_file(_graph()), tmp_path / "g.html")
    assert path.name == "g.html" and "3_5_2" in path.read_text()


@pytest.mark.browser
def test_two_notebook_outputs_draw_side_by_side(tmp_path):
    """Two graph outputs on one page (as a notebook shows them): the script is defined once, each
    output draws its own graph into its own element, no console errors."""
    from circuitwise.reports.display import html_of
    from circuitwise.reports.html import render

    first, second = small_graph(), graph_file(_graph())
    body = first._repr_html_() + html_of(second)
    path = tmp_path / "notebook.html"
    path.write_text(render("standalone.html", name="nb", body=Markup(body)))
    dom, console = _headless(path.resolve().as_uri(), tmp_path)
    assert console == [], "console messages:\n" + "\n".join(console)
    drawn = re.findall(r'class="cwg-node[^"]*" data-id="([^"]+)"', dom)
    assert sorted(drawn) == sorted([n.id for n in first.nodes] + [n.id for n in second.nodes])
    assert dom.count('class="cwg-svg"') == 2


def test_an_unpruned_engine_graph_is_pruned_for_display():
    from circuitwise.reports.display import html_of

    g = _graph().with_(influence=None, scores={})
    out = html_of(g)
    assert "pruned for display with prune_graph" in out and "node threshold 0.8" in out
    pruned = html_of(_graph())  # already pruned (has influence): shown as it is, without the note
    assert "pruned for display" not in pruned
