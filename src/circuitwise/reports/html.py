"""Render results into one self-contained HTML file.

Self-contained means it opens offline: plotly.js and the circuitsvis bundle are inlined once
each (never loaded from a CDN), and every string that came from a prompt or a tokenizer is
HTML-escaped (or JSON-escaped inside scripts) so a prompt cannot break or inject into the page.
"""

from __future__ import annotations

import html
import json
from importlib import resources
from pathlib import Path
from typing import Any, Sequence

import plotly.graph_objects as go

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;color:#1d1d1f;background:#fafafa}
header{background:#1f2937;color:#fff;padding:18px 28px}
header h1{margin:0;font-size:22px} header p{margin:4px 0 0;color:#cbd5e1;font-size:14px}
nav{padding:8px 28px;background:#e5e7eb;font-size:14px} nav a{margin-right:14px;color:#1f2937}
main{padding:8px 28px;max-width:1200px}
section{background:#fff;border:1px solid #e5e7eb;border-radius:8px;padding:14px 20px;margin:16px 0}
h2{font-size:18px;margin:4px 0 10px} .note{color:#4b5563;font-size:14px}
table{border-collapse:collapse;font-size:13px;margin:8px 0} th,td{border-bottom:1px solid #e5e7eb;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f3f4f6} td.num{text-align:right;font-variant-numeric:tabular-nums}
code,.tok{font-family:ui-monospace,Menlo,monospace;font-size:12px}
.tok{background:#eef2ff;border-radius:3px;padding:0 2px;margin:0 1px;white-space:pre}
.pos{color:#1d4ed8}.neg{color:#b91c1c} .summary li{margin:4px 0}
.scroll{max-height:480px;overflow:auto;border:1px solid #e5e7eb}
.warn{background:#fef3c7;border:1px solid #f59e0b;padding:8px 12px;border-radius:6px}
"""


def esc(text: Any) -> str:
    return html.escape(str(text), quote=True)


def script_json(obj: Any) -> str:
    """JSON safe to embed inside <script>: no '</script>', no '<!--'."""
    return json.dumps(obj).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def tokens_html(tokens: Sequence[str]) -> str:
    return "".join(f'<span class="tok">{esc(t)}</span>' for t in tokens)


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], numeric: Sequence[int] = ()) -> str:
    """Rows hold *already escaped* HTML cells; headers are escaped here."""
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f'<td class="num">{c}</td>' if i in numeric else f"<td>{c}</td>"
                         for i, c in enumerate(r)) + "</tr>"
        for r in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def figure_html(fig: go.Figure, div_id: str) -> str:
    return fig.to_html(full_html=False, include_plotlyjs=False, div_id=div_id,
                       config={"displaylogo": False, "responsive": True})


def _circuitsvis_js() -> str:
    path = resources.files("circuitsvis") / "dist" / "cdn" / "iife.js"
    js = path.read_text(encoding="utf-8")
    return js.replace("</script", "<\\/script")


def attention_html(div_id: str, tokens: Sequence[str], patterns: list[list[list[float]]], names: Sequence[str]) -> str:
    """A circuitsvis AttentionHeads view; the circuitsvis bundle itself is inlined once per page."""
    props = {"tokens": list(tokens), "attention": patterns, "attentionHeadNames": list(names)}
    return (f'<div id="{esc(div_id)}" class="cv"></div><script>'
            f'CircuitsVis.render("{esc(div_id)}", CircuitsVis.AttentionHeads, {script_json(props)});</script>')


def uses_circuitsvis(body: str) -> bool:
    """Whether rendered HTML holds a circuitsvis view (then its bundle is inlined, once)."""
    return "CircuitsVis.render(" in body


class Page:
    """Sections in order; ``render`` adds the inlined libraries and the navigation."""

    def __init__(self, title: str, subtitle: str):
        self.title, self.subtitle = title, subtitle
        self.sections: list[tuple[str, str, str]] = []

    def add(self, anchor: str, heading: str, body: str) -> None:
        self.sections.append((anchor, heading, body))

    def render(self) -> str:
        from plotly.offline import get_plotlyjs

        nav = "".join(f'<a href="#{esc(a)}">{esc(h)}</a>' for a, h, _ in self.sections)
        body = "".join(f'<section id="{esc(a)}"><h2>{esc(h)}</h2>{b}</section>' for a, h, b in self.sections)
        cv = f"<script>{_circuitsvis_js()}</script>" if uses_circuitsvis(body) else ""
        return (
            "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{esc(self.title)}</title><style>{CSS}</style>"
            f"<script>{get_plotlyjs()}</script>{cv}</head><body>"
            f"<header><h1>{esc(self.title)}</h1><p>{esc(self.subtitle)}</p></header>"
            f"<nav>{nav}</nav><main>{body}</main></body></html>"
        )

    def write(self, path: Path) -> None:
        from circuitwise.runfolder import atomic_write_text

        atomic_write_text(path, self.render())


__all__ = ["CSS", "Page", "attention_html", "esc", "figure_html", "script_json", "table", "tokens_html",
           "uses_circuitsvis"]
