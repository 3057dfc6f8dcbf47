"""Rich display in notebooks: the report's sections and figures as one self-contained HTML output.

JupyterLab, VS Code and Colab all render ``_repr_html_``, and each runs an output's scripts in
order; Colab even gives every output its own frame. So an output carries what it draws with —
plotly.js (and, where there is attention, the circuitsvis bundle), inlined, never from a CDN —
unless an earlier output of the same notebook page already brought it (:func:`libraries`); a
figure rendered before its library arrives waits for it. Both are wrapped so that a page with
require.js (classic Notebook) still gets the globals. Styles are scoped to the output's own
``<div class="cwd">``, so they never restyle the notebook around it; element ids get a fresh
prefix per output, so several displays live side by side.
"""

from __future__ import annotations

import re
import sys
import tempfile
import uuid
import webbrowser
from collections.abc import Sequence
from functools import lru_cache, singledispatch
from pathlib import Path
from typing import Any

import plotly.graph_objects as go
from markupsafe import Markup

from circuitwise.attribution.attention import AttentionPatterns
from circuitwise.attribution.baseline import Baseline
from circuitwise.attribution.dla import DLA
from circuitwise.circuits.circuit import Circuit
from circuitwise.circuits.discover import Discovery
from circuitwise.evaluation.evaluate import CircuitEvaluation
from circuitwise.evaluation.outputs import summary_lines
from circuitwise.features.graph import AttributionGraph
from circuitwise.patching.result import PatchResult
from circuitwise.reports.build import attention_section_html, baseline_html, dla_html, sections, sweep_html
from circuitwise.reports.explorer import explorer_data, explorer_html
from circuitwise.reports.graph import engine_graph_output, graph_output
from circuitwise.reports.html import CSS, _circuitsvis_js, render, uses_circuitsvis
from circuitwise.reports.style import plotly_js
from circuitwise.schema.circuit import CircuitFile
from circuitwise.schema.compare import CompareResults
from circuitwise.schema.graph import GraphFile
from circuitwise.schema.patching import PatchingFile
from circuitwise.schema.results import Attention, BaselineSection, DLASection, Evaluation, Example, RunResults
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
    js = plotly_js().replace("</script", "<\\/script")
    return render("library.html", name="Plotly", js=Markup(js), after="")


@lru_cache(maxsize=1)
def _circuitsvis_loader() -> str:
    return render("library.html", name="CircuitsVis", js=Markup(_circuitsvis_js()),
                  after=Markup("window.CircuitsVis=CircuitsVis;"))


# The libraries already sent to this kernel's notebook page. JupyterLab, the classic Notebook and
# VS Code show every output of a notebook in one page, so the first output that draws with a library
# carries it and later ones draw with that copy (plotly.js is 3.5 MB: once per output made notebooks
# of 40 MB). Colab gives each output its own frame, and a page outside a notebook stands alone: there
# every output carries what it needs.
_sent: set[str] = set()


def _shared_page() -> bool:
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return type(shell).__name__ == "ZMQInteractiveShell" and "google.colab" not in sys.modules


def _carries(library: str) -> bool:
    """Whether the output being rendered must inline ``library`` (and, in a notebook, note that it did)."""
    if not _shared_page():
        return True
    if library in _sent:
        return False
    _sent.add(library)
    return True


def resend_libraries() -> None:
    """Make the next notebook output carry plotly.js and circuitsvis again.

    For a notebook whose first figure output was cleared or re-run: later outputs then say that
    their library is missing.
    """
    _sent.clear()


def libraries(body: str) -> str:
    """The inlined libraries an output with ``body`` draws with, those its page may lack."""
    out = ""
    if "Plotly.newPlot" in body and _carries("Plotly"):
        out += _plotly_loader()
    if uses_circuitsvis(body) and _carries("CircuitsVis"):
        out += _circuitsvis_loader()
    return out


def fragment(title: str, parts: Sequence[tuple[str, str]], subtitle: str = "") -> str:
    """One notebook output: headed ``(heading, body)`` parts (bodies are HTML) with the libraries they need."""
    libs = libraries("".join(b for _, b in parts))
    return render("fragment.html", css=Markup(_scoped(CSS)), scope=SCOPE, libraries=Markup(libs), title=title,
                  subtitle=subtitle, parts=[(h, Markup(b)) for h, b in parts])


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


def baseline_section_html(bl: BaselineSection, examples: Sequence[Example] | None = None) -> str:
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
            parts.append(("", render("note.html", text=f"attribution vs exact: Pearson r = {entry.correlation:.3f}")))
    return fragment(f"Patching: {p.task} on {p.model}", parts, f"{p.n_examples} examples")


def figures_body(figures: dict[str, go.Figure], summary: Sequence[str] = (), rows: Sequence[Sequence[str]] = (),
                 headers: Sequence[str] = ()) -> str:
    return render("figures.html", ids=ids(), figures=list(figures.items()), summary=list(summary), rows=list(rows),
                  headers=list(headers))


def figures_output(title: str, figures: dict[str, go.Figure], summary: Sequence[str] = (),
                   rows: Sequence[Sequence[str]] = (), headers: Sequence[str] = ()) -> str:
    """Figures (a circuit, its curve, its agreement) with a summary list and an optional table (plain-text cells)."""
    return fragment(title, [("", figures_body(figures, summary, rows, headers))])


def circuit_output(c: CircuitFile, figure: go.Figure) -> str:
    """A circuit: its drawing and its strongest edges."""
    rows = [[e.sender, e.receiver, "—" if e.score is None else f"{e.score:+.4f}"] for e in c.edges[:20]]
    total = f" of {c.total_edges}" if c.total_edges else ""
    return figures_output(f"Circuit ({c.method or 'circuit'} on {c.task or 'a task'}): {len(c.edges)}{total} edges",
                          {"circuit": figure}, (), rows, ["sender", "receiver", "score"])


def compare_output(data: dict[str, Any]) -> str:
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
    data = explorer_data(circuit=CircuitFile.model_validate(nan_to_none(c.to_json())))
    return fragment(f"Circuit ({c.method or 'circuit'} on {c.task or 'a task'})", [("", explorer_html(data, ids()))])


@html_of.register
def _(d: Discovery) -> str:
    return html_of(d.circuit)


@html_of.register
def _(e: CircuitEvaluation) -> str:
    data = explorer_data(circuit=CircuitFile.model_validate(nan_to_none(e.circuit.to_json())),
                         evaluation=Evaluation.model_validate(nan_to_none(e.to_json())))
    figs = {k: f for k, f in e.figures().items() if k != "circuit"}
    return fragment(f"Circuit evaluation ({e.circuit.method or 'circuit'})",
                    [("", explorer_html(data, ids())), ("", figures_body(figs, summary_lines(e)))])


@html_of.register
def _(g: GraphFile) -> str:
    return graph_output(g)


@html_of.register
def _(g: AttributionGraph) -> str:
    return engine_graph_output(g)


# ---- .show() ------------------------------------------------------------------------------------

def show(html: str, name: str = "circuitwise") -> Path | None:
    """Display ``html`` in the running notebook; outside one, open it in the browser (returns the file)."""
    try:
        from IPython import get_ipython
        from IPython.display import HTML, display
    except ImportError:
        get_ipython = None
    shell = get_ipython() if get_ipython is not None else None
    if shell is not None and type(shell).__name__ != "TerminalInteractiveShell":
        display(HTML(html))  # type: ignore[no-untyped-call]  # IPython's display functions carry no hints
        return None
    path = Path(tempfile.mkdtemp(prefix="circuitwise-")) / f"{name}.html"
    path.write_text(render("standalone.html", name=name, body=Markup(html)), encoding="utf-8")
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
           "figures_output", "fragment", "html_of", "libraries", "patching_file_html", "resend_libraries", "run_html",
           "show", "sweep_section_html"]
