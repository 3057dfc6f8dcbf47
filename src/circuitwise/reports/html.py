"""Render results into one self-contained HTML file.

Self-contained means it opens offline: plotly.js and the circuitsvis bundle are inlined once
each (never loaded from a CDN). The markup lives in Jinja2 templates (``reports/templates``) with
autoescape on, so every string that came from a prompt or a tokenizer is HTML-escaped (or
JSON-escaped inside scripts) unless the code marks it as already rendered HTML: a prompt cannot
break or inject into the page.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import plotly.graph_objects as go
from jinja2 import Environment, PackageLoader, StrictUndefined
from markupsafe import Markup

from circuitwise.reports.style import figure_div, plotly_js

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;color:#1d1d1f;background:#fafafa}
header{background:#1f2937;color:#fff;padding:18px 28px}
header h1{margin:0;font-size:22px} header p{margin:4px 0 0;color:#cbd5e1;font-size:14px}
nav{padding:8px 28px;background:#e5e7eb;font-size:14px} nav a{margin-right:14px;color:#1f2937}
main{padding:8px 28px;max-width:1200px}
section{background:#fff;border:1px solid #e5e7eb;border-radius:8px;padding:14px 20px;margin:16px 0}
h2{font-size:18px;margin:4px 0 10px} .note{color:#4b5563;font-size:14px}
table{border-collapse:collapse;font-size:13px;margin:8px 0}
th,td{border-bottom:1px solid #e5e7eb;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f3f4f6} td.num{text-align:right;font-variant-numeric:tabular-nums}
code,.tok{font-family:ui-monospace,Menlo,monospace;font-size:12px}
.tok{background:#eef2ff;border-radius:3px;padding:0 2px;margin:0 1px;white-space:pre}
.pos{color:#1d4ed8}.neg{color:#b91c1c} .summary li{margin:4px 0}
.scroll{max-height:480px;overflow:auto;border:1px solid #e5e7eb}
.warn{background:#fef3c7;border:1px solid #f59e0b;padding:8px 12px;border-radius:6px}
"""


def esc(text: Any) -> str:
    """``text`` HTML-escaped (for the few cells built in code; templates escape on their own)."""
    return str(Markup.escape(str(text)))


@lru_cache(maxsize=1)
def environment() -> Environment:
    """The templates of reports/templates, with autoescape on: a value is escaped unless it is
    :class:`~markupsafe.Markup` (a rendered figure, another template's output)."""
    env = Environment(loader=PackageLoader("circuitwise.reports", "templates"), autoescape=True,
                      extensions=["jinja2.ext.do"], undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.globals.update(figure=figure_html, attention=attention_html, signed=signed, fixed=fixed, ci=ci_html)
    return env


def render(template: str, **context: Any) -> str:
    """One template of reports/templates rendered with ``context``.

    Strings in ``context`` are escaped where the template prints them; wrap HTML that is already
    rendered (a figure, another template's output) in :class:`~markupsafe.Markup` to keep it as is.
    The result is a plain ``str``, so that adding it to other text never escapes it by surprise.
    """
    return environment().get_template(template).render(**context)


def signed(x: float | None, digits: int = 3) -> str:
    """``+1.234`` (``—`` for a missing value)."""
    return "—" if x is None else f"{x:+.{digits}f}"


def fixed(x: float | None, digits: int = 3) -> str:
    """``1.234`` (``—`` for a missing value)."""
    return "—" if x is None else f"{x:.{digits}f}"


def ci_html(iv: Any, digits: int = 2, percent: bool = False) -> str:
    """An interval from results.json as ``[low, high]`` text (empty for files without one)."""
    if iv is None or iv.low is None or iv.high is None:
        return ""
    if percent:
        return f"[{100 * iv.low:.1f}%, {100 * iv.high:.1f}%]"
    return f"[{signed(iv.low, digits)}, {signed(iv.high, digits)}]"


def script_json(obj: Any) -> Markup:
    """JSON safe to embed inside <script>: no '</script>', no '<!--'."""
    return Markup(json.dumps(obj).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026"))


def tokens_html(tokens: Sequence[str]) -> str:
    return render("tokens.html", tokens=tokens)


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], numeric: Sequence[int] = ()) -> str:
    """Rows hold *already escaped* HTML cells (use ``esc``); headers are escaped here.

    Templates use the ``table`` macro of macros.html instead, which escapes every plain cell.
    """
    cells = [[Markup(c) for c in row] for row in rows]
    return render("table.html", headers=headers, rows=cells, numeric=list(numeric))


def figure_html(fig: go.Figure, div_id: str) -> Markup:
    """The figure's div and the script that draws it (plotly writes both; strings in the figure are
    JSON-escaped by plotly). The drawing waits for plotly.js where a notebook output comes without it."""
    out = figure_div(fig, div_id)  # the one style, and the download buttons, of every figure
    m = _SCRIPT.search(out)
    if m is None:  # not plotly's usual layout: leave it as plotly wrote it
        return Markup(out)
    wrapped = render("wait.js", lib=script_json("Plotly"), target=script_json(div_id), body=Markup(m.group(2)))
    return Markup(out[: m.start(2)] + wrapped + out[m.end(2) :])


_SCRIPT = re.compile(r'(<script(?: type="text/javascript")?>)(.*?)(</script>)', re.S)


def _circuitsvis_js() -> str:
    path = resources.files("circuitsvis") / "dist" / "cdn" / "iife.js"
    js = path.read_text(encoding="utf-8")
    return js.replace("</script", "<\\/script")


def attention_html(div_id: str, tokens: Sequence[str], patterns: list[list[list[float]]],
                   names: Sequence[str]) -> Markup:
    """A circuitsvis AttentionHeads view; the circuitsvis bundle itself is inlined once per page."""
    props = {"tokens": list(tokens), "attention": patterns, "attentionHeadNames": list(names)}
    draw = Markup(f"CircuitsVis.render({script_json(div_id)}, CircuitsVis.AttentionHeads, {script_json(props)});")
    return Markup(render("attention.html", div_id=div_id, target=script_json(div_id), lib=script_json("CircuitsVis"),
                         body=draw))


def uses_circuitsvis(body: str) -> bool:
    """Whether rendered HTML holds a circuitsvis view (then its bundle is inlined, once)."""
    return "CircuitsVis.render(" in body


class Page:
    """Sections in order; ``render`` adds the inlined libraries and the navigation (templates/page.html)."""

    def __init__(self, title: str, subtitle: str):
        self.title, self.subtitle = title, subtitle
        self.sections: list[tuple[str, str, str]] = []

    def add(self, anchor: str, heading: str, body: str) -> None:
        """``body`` is HTML (a template's output); ``anchor`` and ``heading`` are text."""
        self.sections.append((anchor, heading, body))

    def render(self) -> str:
        sections = [(a, h, Markup(b)) for a, h, b in self.sections]
        cv = any(uses_circuitsvis(b) for _, _, b in sections)
        return render("page.html", title=self.title, subtitle=self.subtitle, sections=sections, css=Markup(CSS),
                      plotly_js=Markup(plotly_js()), circuitsvis_js=Markup(_circuitsvis_js()) if cv else None)

    def write(self, path: Path) -> None:
        from circuitwise.runfolder import atomic_write_text

        atomic_write_text(path, self.render())


__all__ = ["CSS", "Page", "attention_html", "environment", "esc", "figure_html", "fixed", "render", "script_json",
           "signed", "table", "tokens_html", "uses_circuitsvis"]
