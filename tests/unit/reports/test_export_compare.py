"""A compare folder's figures export too: compare.html's figures, by name, rebuilt from compare.json alone."""

from __future__ import annotations

import os
import re
import xml.etree.ElementTree as ET

import pytest

from circuitwise.reports import export, style
from tests.unit.compare.conftest import forms_run, two_route  # noqa: F401  (the compare run fixtures)
from tests.unit.compare.test_browser import FIGURES

pytestmark = pytest.mark.slow  # a whole compare run of the two-route model (about 30 s)


def test_compare_figures_are_compare_pages_figures(forms_run):  # noqa: F811
    out, r = forms_run
    figs = export.figures(out)
    assert list(figs) == [export.figure_name(f, "compare") for f in FIGURES]
    assert list(figs)[:3] == ["baseline", "lens", "layers"]
    page = (out / "compare.html").read_text(encoding="utf-8")
    assert re.findall(r'<div id="(fig-[^"]+)" class="plotly-graph-div"', page) == list(FIGURES)
    assert all(f.layout.template == style.TEMPLATE for f in figs.values())
    # The difference map carries the test's marks: a "*" on each flagged head, as on the page.
    flagged = sum(r["heads"]["significant"])
    assert sum(t == "*" for row in figs["heads-diff"].data[0].text for t in row) == flagged > 0


@pytest.mark.browser
def test_compare_figures_draw_as_svg(forms_run, tmp_path):  # noqa: F811
    if export.find_browser() is None:
        if os.environ.get("CIRCUITWISE_REQUIRE_BROWSER") == "1":
            pytest.fail("chromium is not installed; .ci/run installs Debian's chromium package")
        pytest.skip("chromium not installed (apt-get install chromium)")
    out, _ = forms_run
    paths = export.save_figures(out, tmp_path / "figs", formats=("svg",))
    figs = export.figures(out)
    assert sorted(paths) == sorted(f"{n}.svg" for n in figs)
    for name, fig in figs.items():
        root = ET.parse(paths[f"{name}.svg"]).getroot()
        title = next("".join(e.itertext()) for e in root.iter() if "gtitle" in e.attrib.get("class", "").split())
        assert title == fig.layout.title.text, name
