"""Rich display in notebooks: the report's sections and figures as one self-contained HTML output.

JupyterLab, VS Code and Colab all render ``_repr_html_``, and each runs an output's scripts in
order; Colab even gives every output its own frame. So each output carries what it draws with:
plotly.js (and, where there is attention, the circuitsvis bundle) inlined once per output, never
from a CDN, loaded only where the page does not have it yet. Both are wrapped so that a page with
require.js (classic Notebook) still gets the globals. Styles are scoped to the output's own
``<div class="cwd">``, so they never restyle the notebook around it; element ids get a fresh
prefix per output, so several displays live side by side.
"""

from __future__ import annotations

import re
import tempfile
import uuid
import webbrowser
from functools import lru_cache, singledispatch
from pathlib import Path
from typing import Any, Sequence

import plotly.graph_objects as go

from circuitwise.attribution.attention import AttentionPatterns
from circuitwise.attribution.baseline import Baseline
from circuitwise.attribution.dla import DLA
from circuitwise.circuits.circuit import Circuit
from circuitwise.circuits.discover import Discovery
from circuitwise.circuits.draw import circuit_figure
from circuitwise.evaluation.evaluate import CircuitEvaluation
from circuitwise.evaluation.outputs import summary_lines
from circuitwise.patching.result import PatchResult
from circuitwise.reports.build import attention_section_html, baseline_html, dla_html, sections, sweep_html
from circuitwise.reports.html import CSS, _circuitsvis_js, esc, figure_html, table, uses_circuitsvis
from circuitwise.schema.circuit import CircuitFile
from circuitwise.schema.compare import CompareResults
from circuitwise.schema.patching import PatchingFile
from circuitwise.schema.results import Attention, BaselineSection, DLASection, RunResults
from circuitwise.schema.sweeps import Sweep
from circuitwise.types import nan_to_none, register_display

SCOPE = "cwd"


def _scoped(css: str) -> str:
    """The report's CSS with every selector inside ``.cwd`` (``body`` becomes the box itself)."""
    out = []
    for sel, rules in re.findall(r"([^{}]+)\{([^{}]*)\}", css):
        parts = []
        for one in sel.split(","):
            one = one.strip()
            parts.append(f".{SCOPE}" if one == "body" else f".{SCOPE} {one}")
        out.append(f"{','.join(parts)}{{{rules}}}")
    return "".join(out)


@lru_cache(maxsize=1)
def _plotly_loader() -> str:
    from plotly.offline import get_plotlyjs

    js = get_plotlyjs().replace("</script", "<\\/script")
    # define/module/exports shadowed: under require.js the bundle would register a module and
    # leave window.Plotly unset.
    return f"<script>if(!window.Plotly){{(function(define,module,exports){{{js}\n}}).call(window);}}</script>"


@lru_cache(maxsize=1)
def _circuitsvis_loader() -> str:
    return (f"<script>if(!window.CircuitsVis){{(function(define,module,exports){{{_circuitsvis_js()}\n"
            "window.CircuitsVis=CircuitsVis;}).call(window);}</script>")


def fragment(title: str, parts: Sequence[tuple[str, str]], subtitle: str = "") -> str:
    """One notebook output: headed ``(heading, body)`` parts with the libraries they need."""
    body = "".join((f"<h3>{esc(h)}</h3>" if h else "") + b for h, b in parts)
    libs = (_plotly_loader() if "Plotly.newPlot" in body else "") + (_circuitsvis_loader() if uses_circuitsvis(body) else "")
    sub = f'<p class="note">{esc(subtitle)}</p>' if subtitle else ""
    return (f"<style>{_scoped(CSS)}.{SCOPE}{{background:#fff;padding:4px 8px;font-size:14px}}.{SCOPE} h2{{margin-top:6px}}</style>"
            f'{libs}<div class="{SCOPE}"><h2>{esc(title)}</h2>{sub}{body}</div>')


def ids() -> str:
    """A fresh element-id prefix for one output."""
    return f"cw{uuid.uuid4().hex[:8]}-"


# ---- one function per kind of result ------------------------------------------------------------

def run_html(r: RunResults) -> str:
    m, t = r.model, r.task
    state = "" if r.complete else " (incomplete: the run stopped before its end)"
    return fragment(f"circuitwise — {t.name} on {m.name}",
                    [(h, b) for _, h, b in sections(r, ids())],
                    f"{t.n_prompts} prompts · {m.n_layers} layers × {m.n_heads} heads{state}")


def baseline_section_html(bl: BaselineSection, examples=None) -> str:
    return fragment("Baseline: the model's answers", [("", baseline_html(bl, examples))])


def dla_section_html(d: DLASection, output_mean: float | None = None) -> str:
    return fragment("Direct logit attribution", [("", dla_html(d, output_mean, ids()))])


def attention_html_output(att: Attention, title: str = "Attention patterns") -> str:
    return fragment(title, [("", attention_section_html(att, ids(), title))])


def sweep_section_html(what: str, sweep: Sweep) -> str:
    unit = "recovered fraction: 0 = corrupted, 1 = clean" if sweep.normalized else sweep.metric
    return fragment(f"Activation patching: {what}", [("", sweep_html(what, sweep, ids()))], unit)


def patching_file_html(p: PatchingFile) -> str:
    parts = []
    prefix = ids()
    for what, entry in p.sweeps.items():
        for method in ("exact", "attribution"):
            sweep = getattr(entry, method)
            if sweep is not None:
                parts.append((f"{what} ({method})", sweep_html(what, sweep, f"{prefix}{method}-")))
        if entry.correlation is not None:
            parts.append(("", f'<p class="note">attribution vs exact: Pearson r = {entry.correlation:.3f}</p>'))
    return fragment(f"Patching: {p.task} on {p.model}", parts, f"{p.n_examples} examples")


def figures_output(title: str, figures: dict[str, go.Figure], summary: Sequence[str] = (),
                   rows: Sequence[Sequence[str]] = (), headers: Sequence[str] = ()) -> str:
    """Figures (a circuit, its curve, its agreement) with a summary list and an optional table."""
    prefix = ids()
    items = "".join(f"<li>{esc(s)}</li>" for s in summary)
    parts = [("", f'<ul class="summary">{items}</ul>')] if items else []
    parts += [("", figure_html(fig, f"{prefix}{name}")) for name, fig in figures.items()]
    if rows:
        parts.append(("", table(headers, rows, numeric=(len(headers) - 1,))))
    return fragment(title, parts)


def circuit_output(c: CircuitFile, figure: go.Figure) -> str:
    """A circuit: its drawing and its strongest edges."""
    rows = [[esc(e.sender), esc(e.receiver), "—" if e.score is None else f"{e.score:+.4f}"] for e in c.edges[:20]]
    total = f" of {c.total_edges}" if c.total_edges else ""
    return figures_output(f"Circuit ({c.method or 'circuit'} on {c.task or 'a task'}): {len(c.edges)}{total} edges",
                          {"circuit": figure}, (), rows, ["sender", "receiver", "score"])


def compare_output(data: dict) -> str:
    """A comparison (compare.json's data): the sections of compare.html."""
    from circuitwise.reports.compare import build_compare_page

    page = build_compare_page(data)
    return fragment(page.title, [(h, b) for _, h, b in page.sections], page.subtitle)


# ---- the renderer of each result type, registered below reports/ (types.register_display) ----------

@singledispatch
def html_of(result: object) -> str:
    """The notebook output of ``result``; one implementation per result type, registered below."""
    raise TypeError(f"circuitwise has no notebook display for {type(result).__name__}.")


@html_of.register
def _(r: RunResults) -> str:
    return run_html(r)


@html_of.register
def _(p: PatchingFile) -> str:
    return patching_file_html(p)


@html_of.register
def _(c: CompareResults) -> str:
    return compare_output(c.model_dump(mode="json"))


@html_of.register
def _(b: Baseline) -> str:
    return baseline_section_html(BaselineSection.model_validate(b.to_json()))


@html_of.register
def _(d: DLA) -> str:
    return dla_section_html(DLASection.model_validate(nan_to_none(d.to_json())))


@html_of.register
def _(a: AttentionPatterns) -> str:
    att = Attention(example=int(a.config.get("example", 0)), tokens=a.labels["src"], heads=a.labels["head"],
                    patterns=a.values.tolist())
    return attention_html_output(att, f"Attention of {', '.join(att.heads)}")


@html_of.register
def _(r: PatchResult) -> str:
    return sweep_section_html(str(r.config.get("what", "sweep")), Sweep.model_validate(nan_to_none(r.to_json())))


@html_of.register
def _(c: Circuit) -> str:
    return circuit_output(CircuitFile.model_validate(c.to_json()), circuit_figure(c))


@html_of.register
def _(d: Discovery) -> str:
    return html_of(d.circuit)


@html_of.register
def _(e: CircuitEvaluation) -> str:
    return figures_output(f"Circuit evaluation ({e.circuit.method or 'circuit'})", e.figures(), summary_lines(e))


# ---- .show() ------------------------------------------------------------------------------------

def show(html: str, name: str = "circuitwise") -> Path | None:
    """Display ``html`` in the running notebook; outside one, open it in the browser (returns the file)."""
    try:
        from IPython import get_ipython
        from IPython.display import HTML, display
    except ImportError:
        get_ipython = None  # type: ignore[assignment]
    shell = get_ipython() if get_ipython is not None else None
    if shell is not None and type(shell).__name__ != "TerminalInteractiveShell":
        display(HTML(html))
        return None
    path = Path(tempfile.mkdtemp(prefix="circuitwise-")) / f"{name}.html"
    path.write_text(f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{esc(name)}</title></head>"
                    f"<body>{html}</body></html>", encoding="utf-8")
    webbrowser.open(path.as_uri())
    return path


class _Display:
    """The renderers handed to types.py, through which every result's ``_repr_html_`` and ``.show()`` go."""

    def html(self, result: object) -> str:
        return html_of(result)

    def show(self, html: str, name: str) -> Any:
        return show(html, name)


register_display(_Display())

__all__ = ["attention_html_output", "baseline_section_html", "circuit_output", "compare_output", "dla_section_html",
           "figures_output", "fragment", "html_of", "patching_file_html", "run_html", "show", "sweep_section_html"]
