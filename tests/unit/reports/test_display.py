"""Rich display: each result a user gets back renders the report's figures as one self-contained
notebook output (scoped styles, fresh ids, libraries inlined), and prints as one short line."""

from __future__ import annotations

import re

import pytest

import circuitwise as cw
from circuitwise.attribution import attention_patterns, top_heads
from circuitwise.reports.display import fragment


@pytest.fixture(scope="module")
def shown(tiny_model):
    tok, _ = cw.tokenize_task(tiny_model, cw.get_task("opposites-seed"))
    dla = cw.direct_logit_attribution(tiny_model, tok)
    pos, _ = top_heads(dla.heads.values, 2)
    found = cw.find_circuit(tiny_model, tok, method="eap", target=0.9)
    return {
        "baseline": cw.baseline(tiny_model, tok),
        "dla": dla,
        "attention": attention_patterns(tiny_model, tok, pos),
        "patching": cw.activation_patching(tiny_model, tok, "heads"),
        "circuit": found,
        "evaluation": cw.evaluate_circuit(tiny_model, tok, found.circuit, scores=found.scores, random_samples=2),
    }


# A plotly figure's div in the browser's DOM, and what plotly drew into it.
FIGURE = r'<div id="(cw[0-9a-f]{8}-[^"]+)"[^>]*class="[^"]*plotly-graph-div[^"]*"[^>]*>(.{0,3000})'
# A circuit is drawn by the explorer (no plotly); an evaluation adds its curve and agreement figures.
FIGURES = {"baseline": 0, "dla": 3, "attention": 1, "patching": 1, "circuit": 0, "evaluation": 2}


@pytest.mark.parametrize("name", sorted(FIGURES))
def test_each_result_displays_its_figures_offline(shown, name):
    html = shown[name]._repr_html_()
    assert html.count("Plotly.newPlot(") >= FIGURES[name]
    assert ("window.cwExplorer(" in html) == (name in ("circuit", "evaluation"))
    assert ("CircuitsVis.render(" in html) == (name == "attention")
    # plotly.js comes with the output (inlined once, loaded only where the page lacks it), never a CDN.
    assert html.count("if(!window.Plotly)") == (1 if FIGURES[name] else 0)
    assert re.search(r"<script[^>]*\bsrc=", html) is None
    # Styles stay inside the output's own box: nothing restyles the notebook around it.
    style = re.search(r"<style>(.*?)</style>", html, re.S).group(1)
    assert all(rule.strip().startswith(".cwd") for rule in re.findall(r"([^{}]+)\{", style))


def test_two_displays_of_one_result_never_share_element_ids(shown):
    ids = lambda html: set(re.findall(r'<div id="([^"]+)"', html))  # noqa: E731
    a, b = ids(shown["dla"]._repr_html_()), ids(shown["dla"]._repr_html_())
    assert a and not a & b


@pytest.mark.parametrize("name,start", [("baseline", "Baseline(6 prompts: mean logit diff"),
                                        ("dla", "DLA(6 prompts, 2 layers × 4 heads"),
                                        ("attention", "AttentionPatterns(L"), ("patching", "PatchResult(heads ["),
                                        ("circuit", "Discovery(Circuit(eap"), ("evaluation", "CircuitEvaluation(")])
def test_repr_is_one_short_line_with_the_key_numbers(shown, name, start):
    text = repr(shown[name])
    assert text.startswith(start) and "\n" not in text and len(text) < 200, text
    assert "tensor(" not in text


def test_the_numbers_shown_are_the_results(shown):
    bl = shown["baseline"]
    html = bl._repr_html_()
    assert f"{float(bl.logit_diff.mean()):+.3f}" in html and f"{bl.accuracy:.1%}" in html
    assert f"{float(bl.logit_diff.mean()):+.3f}" in repr(bl)


@pytest.mark.browser
def test_outputs_draw_in_chromium_side_by_side(shown, tmp_path):
    """Several outputs on one page (as in a notebook): every figure and attention view is drawn."""
    from tests.unit.reports.test_browser import _headless

    parts = [shown[n]._repr_html_() for n in ("dla", "attention", "patching", "evaluation")]
    page = tmp_path / "nb.html"
    page.write_text("<!DOCTYPE html><html><head><meta charset='utf-8'></head><body>" + "".join(parts)
                    + "</body></html>", encoding="utf-8")
    dom, console = _headless(page.resolve().as_uri(), tmp_path)
    assert console == [], "console messages:\n" + "\n".join(console)
    figs = re.findall(FIGURE, dom, re.S)
    assert len(figs) >= 6 and all("main-svg" in body for _, body in figs)
    m = re.search(r'<div id="cw[0-9a-f]{8}-cv-attention" class="cv">(.{0,400})', dom, re.S)
    assert m and "Head Selector" in m.group(1)


def test_fragment_loads_only_what_it_draws():
    html = fragment("t", [("", "<p>no figure</p>")])
    assert "window.Plotly" not in html and "CircuitsVis" not in html


@pytest.fixture
def one_notebook_page(monkeypatch):
    """Outputs rendered as in a Jupyter kernel: they share one page, so libraries are sent once."""
    from circuitwise.reports import display

    monkeypatch.setattr(display, "_shared_page", lambda: True)
    display.resend_libraries()
    yield
    display.resend_libraries()


def test_in_a_notebook_only_the_first_output_carries_each_library(shown, one_notebook_page):
    parts = [shown[n]._repr_html_() for n in ("dla", "attention", "patching", "attention", "evaluation")]
    assert [p.count("if(!window.Plotly)") for p in parts] == [1, 0, 0, 0, 0]
    assert [p.count("if(!window.CircuitsVis)") for p in parts] == [0, 1, 0, 0, 0]
    assert sum(map(len, parts[1:])) < 2_000_000  # plotly.js alone is 3.5 MB


@pytest.mark.browser
@pytest.mark.parametrize("order", ["as run", "library last"])
def test_outputs_without_the_library_draw_once_it_arrives(shown, one_notebook_page, tmp_path, order):
    """Later outputs draw with the first one's copy, even when the page renders them before it."""
    from tests.unit.reports.test_browser import _headless

    parts = [shown[n]._repr_html_() for n in ("dla", "attention", "patching", "evaluation", "attention")]
    if order == "library last":
        parts = parts[2:] + parts[:2]
    page = tmp_path / "nb.html"
    page.write_text("<!DOCTYPE html><html><head><meta charset='utf-8'></head><body>" + "".join(parts)
                    + "</body></html>", encoding="utf-8")
    dom, console = _headless(page.resolve().as_uri(), tmp_path)
    assert console == [], "console messages:\n" + "\n".join(console)
    figs = re.findall(FIGURE, dom, re.S)
    assert len(figs) >= 6 and all("main-svg" in body for _, body in figs)
    views = re.findall(r'<div id="cw[0-9a-f]{8}-cv-attention" class="cv">(.{0,400})', dom, re.S)
    assert len(views) == 2 and all("Head Selector" in v for v in views)
