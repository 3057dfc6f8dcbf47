"""Pages come from the Jinja2 templates shipped in the package, with autoescape on: a task name, a
prompt or a note that holds HTML shows as text in the report, the notebook output and circuit.html."""

from __future__ import annotations

from importlib import resources

import pytest

import circuitwise as cw
from circuitwise.config import RunConfig
from circuitwise.reports.build import build_page
from circuitwise.reports.display import run_html
from circuitwise.reports.html import environment, table
from circuitwise.reports.study import figures_html
from circuitwise.schema.results import RunResults

EVIL = '<script>alert("x")</script><img src=x onerror=alert(1)>'


def _no_injection(html: str) -> None:
    assert EVIL not in html and "<img src=x" not in html and '<script>alert("x")' not in html
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in html


@pytest.fixture(scope="module")
def evil_results(tiny_ckpt, tmp_path_factory):
    cfg = RunConfig(task="opposites-seed", model=str(tiny_ckpt), out=tmp_path_factory.mktemp("evil") / "run",
                    patching=(), attribution=False, circuit=None)
    data = cw.run(cfg).results.model_dump(mode="json")
    data["task"]["name"] = EVIL
    data["task"]["examples"][0]["tokens"][0] = EVIL
    data["task"]["examples"][0]["correct"] = EVIL
    data["notes"].append(EVIL)
    data["warnings"].append(EVIL)
    return RunResults.model_validate(data)


def test_a_prompt_with_a_script_is_text_in_the_report(evil_results):
    html = build_page(evil_results).render()
    _no_injection(html)


def test_a_prompt_with_a_script_is_text_in_the_notebook_output(evil_results):
    _no_injection(run_html(evil_results))


def test_a_summary_line_with_a_script_is_text_in_circuit_html():
    _no_injection(figures_html({}, EVIL, [EVIL]))


def test_the_templates_ship_in_the_package_and_escape():
    root = resources.files("circuitwise.reports") / "templates"
    for name in ("page.html", "fragment.html", "macros.html", "run/baseline.html", "compare/summary.html",
                 "study/circuit.html"):
        assert (root / name).is_file(), name
    assert environment().autoescape is True
    # table()'s cells are HTML its callers escaped (the contract before templates); headers are text.
    assert table([EVIL], [["<b>kept</b>"]]).count("<b>kept</b>") == 1 and EVIL not in table([EVIL], [])


def test_a_figure_waits_for_plotly_where_its_output_comes_without_it():
    import plotly.graph_objects as go

    from circuitwise.reports.html import figure_html

    html = figure_html(go.Figure(go.Bar(x=[1], y=[2])), "f")
    # plotly's own drawing script is wrapped, so it runs once plotly.js is on the page.
    assert html.count("Plotly.newPlot(") == 1 and "cwQueue" in html
    assert html.index("cwQueue") < html.index("Plotly.newPlot(")


def test_the_report_shows_the_plan_with_every_stage_of_the_memory_and_time_plan(evil_results):
    import re

    from circuitwise.sizes import duration, human

    html = build_page(evil_results).render()
    body = html[html.index("Decided before any work"):]
    res = evil_results.plan.resources
    assert res is not None and res.stages
    text = re.sub(r"\s+", " ", re.sub("<[^>]+>", " ", body))
    assert f"{res.device} in {res.dtype}" in text and human(res.budget_bytes) in text
    for s in res.stages:
        assert f"{s.stage} {s.batch} {human(s.memory_bytes)} {duration(s.seconds)}".replace("<", "&lt;") in text


def test_no_python_module_writes_html_tags_with_f_strings():
    # Pages come from the templates (escaping on); plotly's hover texts (`<br>` in a hovertemplate) are not pages.
    import re
    from pathlib import Path

    tag = re.compile(r"""f["'][^"']*</?(p|div|table|tr|td|th|span|b|a|br|script|style|ul|li|h[1-6]|pre|img)[ >/]""")
    src = Path(cw.__file__).parent
    found = [f"{path.relative_to(src)}:{i}" for path in sorted(src.rglob("*.py"))
             for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
             if tag.search(line) and "hovertemplate" not in line]
    assert found == []  # cli/benchmark.py wrote its skipped-method notes as f'<p class="note">…</p>'
