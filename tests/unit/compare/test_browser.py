"""compare.html opens in headless Chromium (offline) with no console errors, its figures and attention views drawn."""

from __future__ import annotations

import re

import pytest

from tests.unit.reports.test_browser import _headless

pytestmark = pytest.mark.browser

FIGURES = ("fig-cmp-baseline", "fig-cmp-lens", "fig-cmp-layers", "fig-cmp-heads-a", "fig-cmp-heads-b",
           "fig-cmp-heads-diff", "fig-cmp-patch-a", "fig-cmp-patch-b", "fig-cmp-patch-diff", "fig-cmp-circuit-a",
           "fig-cmp-circuit-b")


def test_compare_page_renders_with_no_console_errors(tmp_path, forms_run):
    out, _ = forms_run
    dom, console = _headless((out / "compare.html").resolve().as_uri(), tmp_path)
    assert console == [], "console messages:\n" + "\n".join(console)
    for fig in FIGURES:
        m = re.search(rf'<div id="{fig}"[^>]*class="[^"]*plotly-graph-div[^"]*"[^>]*>(.{{0,3000}})', dom, re.S)
        assert m and "main-svg" in m.group(1), f"figure {fig} was not drawn"
    for cv in ("cv-cmp-a", "cv-cmp-b"):
        m = re.search(rf'<div id="{cv}" class="cv">(.{{0,400}})', dom, re.S)
        assert m and "Head Selector" in m.group(1), f"attention view {cv} was not drawn"
    assert "Cross-faithfulness" in dom and "Benjamini" in dom
