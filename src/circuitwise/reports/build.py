"""Build the report page from the typed results alone (so a report can be re-rendered later).

Each section is an HTML body rendered from one schema section by its template (templates/run/); the
page (:func:`build_page`) and the
notebook display (:mod:`circuitwise.reports.display`) put the same bodies together. ``ids`` prefixes
every element id, so several displays can share one notebook page.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import plotly.graph_objects as go
from markupsafe import Markup

from circuitwise.reports import figures
from circuitwise.reports.explorer import explorer_data, explorer_html
from circuitwise.reports.html import Page, render
from circuitwise.reports.summary import dla_closure, summarize
from circuitwise.schema.circuit import CircuitFile
from circuitwise.schema.results import (
    Attention,
    BaselineSection,
    CircuitSection,
    DLASection,
    Example,
    MechanismSection,
    Processing,
    RunResults,
    TopHeads,
)
from circuitwise.schema.sweeps import RunSweep, Sweep
from circuitwise.sizes import duration, human


def overview_html(r: RunResults) -> str:
    p = r.model.processing
    skipped = [f"{s.name} {'partly applied' if s.applied else 'skipped'}: {s.reason}" for s in p.steps or ()
               if s.reason and not s.reason.startswith("nothing to do")] if p.requested else []
    return render("run/overview.html", summary=summarize(r), notes=r.notes, warnings=r.warnings, task=r.task,
                  model=r.model, processing=_processing_text(p), skipped=skipped, rerun=r.rerun)


def _processing_text(p: Processing) -> str:
    """The model's weight processing, in one sentence (the steps skipped, and why, are listed apart)."""
    if p.steps is None:  # loaded elsewhere: only what was asked is known
        return f"weight processing {'on' if p.requested else 'off'}."
    if not p.requested:
        return "weight processing off (raw weights)."
    applied = [s.name for s in p.steps if s.applied]
    return f"weight processing: {', '.join(applied) or 'none applied'}."


# The per-prompt table shows this many prompts: a 2,000-prompt run's table of token spans alone took
# longer to lay out than the rest of the page (with the cap it opens as fast as a 6-prompt run's).
BASELINE_ROWS = 200


def baseline_html(bl: BaselineSection, examples: Sequence[Example] | None = None, max_rows: int = BASELINE_ROWS) -> str:
    """The per-prompt table (the first ``max_rows`` prompts); without ``examples`` (a bare Baseline) the
    prompts' tokens are not shown."""
    return render("run/baseline.html", bl=bl, examples=examples, max_rows=max_rows)


def dla_html(d: DLASection, output_mean: float | None = None, ids: str = "") -> str:
    """Closure, logit lens, per-layer bars and the per-head heatmap; ``output_mean``: the baseline's mean."""
    mean = d.logit_diff if output_mean is None else output_mean
    return render(
        "run/dla.html", d=d, ids=ids, closure=" ".join(dla_closure(d, mean)),
        lens_figure=figures.line(d.logit_lens.values, d.logit_lens.labels,
                                 "Logit lens: logit difference of the accumulated residual stream",
                                 x="layer (pre / mid)"),
        layers_figure=figures.bars(d.layers.values, d.layers.labels,
                                   "Per-layer decomposition: what each component writes"),
        heads_figure=figures.heatmap(d.heads, [str(h) for h in range(len(d.heads[0]))],
                                     [str(layer) for layer in range(len(d.heads))],
                                     "Per-head direct logit attribution", "head", "layer"))


def attention_figure(att: Attention, title: str) -> Any:
    """The patterns a circuitsvis view shows, as heatmaps: the view's twin that saves as SVG and PNG."""
    return figures.attention(att.patterns, att.tokens, att.heads, f"{title} on prompt {att.example}")


def top_heads_html(th: TopHeads, att: Attention | None, ids: str = "") -> str:
    fig = attention_figure(att, "Attention of the top heads") if att is not None else None
    return render("run/top_heads.html", th=th, att=att, ids=ids, att_fig=fig)


def mechanism_html(m: MechanismSection) -> str:
    """What the top heads read, prefer and write (attribution/mechanism.py's read-outs)."""
    return render("run/mechanism.html", m=m)


def attention_section_html(att: Attention, ids: str = "", title: str = "") -> str:
    """One circuitsvis view of some heads' attention on one prompt, and its heatmaps."""
    return render("run/attention.html", att=att, ids=ids, title=title,
                  att_fig=attention_figure(att, title or "Attention patterns"))


SWEEP_TITLES = {
    "resid_pre": "Residual stream (before each layer) by position",
    "attn_out": "Attention output by position",
    "mlp_out": "MLP output by position",
    "heads": "Attention heads (all positions)",
    "heads_by_pos": "Attention heads by position",
    "head_q": "Head queries", "head_k": "Head keys", "head_v": "Head values", "head_pattern": "Head patterns",
}


def sweep_figure(what: str, sweep: Sweep, z_title: str | None = None) -> Any:
    vals, labels, axes = sweep.values, sweep.labels, sweep.axes
    z_title = z_title or ("restored" if sweep.normalized else "logit diff")
    title = SWEEP_TITLES.get(what, what)
    if axes == ["layer", "pos", "head"]:
        # One row per head, one column per position: which head matters where.
        cube = cast("list[list[list[float | None]]]", vals)
        rows = [f"L{l}H{h}" for l in labels["layer"] for h in labels["head"]]
        z = [[cube[li][pi][hi] for pi in range(len(labels["pos"]))]
             for li in range(len(labels["layer"])) for hi in range(len(labels["head"]))]
        return figures.heatmap(z, labels["pos"], rows, title, "position", "head", z_title)
    x_axis = axes[1]
    grid = cast("list[list[float | None]]", vals)  # two axes: layer × x_axis
    return figures.heatmap(grid, labels[x_axis], labels["layer"], title, x_axis, "layer", z_title)


def sweep_html(what: str, sweep: Sweep, ids: str = "") -> str:
    """One sweep's heatmap and what to know about it (degenerate gap, agreement, largest cells)."""
    attribution = sweep.attribution if isinstance(sweep, RunSweep) else None
    top = [t for t in sweep.top[:5] if t.value is not None] if isinstance(sweep, RunSweep) else []
    return render("run/sweep.html", what=what, sweep=sweep, ids=ids, fig=sweep_figure(what, sweep),
                  correlation=attribution.correlation if attribution else None,
                  has_attribution=attribution is not None, top=top)


def patching_html(p: dict[str, RunSweep], att: Attention | None = None, ids: str = "") -> str:
    sweeps = [Markup(sweep_html(what, sweep, ids)) for what, sweep in p.items()]
    fig = attention_figure(att, "Attention of the heads patching ranks highest") if att is not None else None
    return render("run/patching.html", sweeps=sweeps, att=att, ids=ids, att_fig=fig)


CIRCUIT_FIGURES = {
    "circuit": "The circuit: nodes by type, edge width by score",
    "faithfulness_curve": "Faithfulness as the circuit grows (top edges by score)",
    "mib": "MIB's metrics: faithfulness at fixed edge budgets (CPR signed, CMD absolute ranking)",
    "agreement": "Attribution scores against exact edge patching",
}


def circuit_html(c: CircuitSection, ids: str = "", explorer: str = "") -> str:
    """The circuit section; ``explorer`` (:func:`explorer.explorer_html`) replaces the static drawing."""
    sel = c.selection
    reached = not (sel.kind == "target" and not getattr(sel, "reached", True))
    figs = [(name, CIRCUIT_FIGURES.get(name, name), go.Figure(fig)) for name, fig in c.figures.items()
            if not (explorer and name == "circuit")]
    return render("run/circuit.html", c=c, ids=ids, reached=reached, figures=figs, explorer=Markup(explorer))


def sections(results: RunResults, ids: str = "", circuit: CircuitFile | None = None) -> list[tuple[str, str, str]]:
    """``(anchor, heading, body)`` of every section the results have, in the report's order; ``circuit``:
    the run's circuit.json (all its edges in the explorer; without it, results.json's strongest ones)."""
    r = results
    out = [("summary", "Summary", overview_html(r))] if r.baseline and r.dla and r.top_heads else []
    if r.baseline:
        out.append(("baseline", "Baseline: the model's answers", baseline_html(r.baseline, r.task.examples)))
    if r.dla:
        out.append(("dla", "Direct logit attribution",
                    dla_html(r.dla, r.baseline.logit_diff.mean if r.baseline else None, ids)))
    if r.top_heads:
        out.append(("heads", "Top heads and their attention", top_heads_html(r.top_heads, r.attention, ids)))
    if r.mechanism is not None and r.mechanism.heads:
        out.append(("mechanism", "What the top heads read and write", mechanism_html(r.mechanism)))
    if r.patching:
        out.append(("patching", "Activation patching", patching_html(r.patching, r.patching_attention, ids)))
    elif r.patching_skipped:
        out.append(("patching", "Activation patching", render("run/skipped.html", reason=r.patching_skipped)))
    if r.circuit:
        explorer = explorer_html(explorer_data(results=r, circuit=circuit), ids)
        out.append(("circuit", "Circuit", circuit_html(r.circuit, ids, explorer)))
    if r.plan is not None:
        out.append(("plan", "The plan: what ran, and what it cost", plan_html(r)))
    return out


def plan_html(r: RunResults) -> str:
    """What the run decided before any work, with the memory and time plan of every stage."""
    return render("run/plan.html", plan=r.plan, res=r.plan.resources, human=human, duration=duration)


def build_page(results: RunResults, circuit: CircuitFile | None = None) -> Page:
    m, t = results.model, results.task
    page = Page(f"circuitwise — {t.name} on {m.name}",
                f"{t.n_prompts} prompts · {m.n_layers} layers × {m.n_heads} heads")
    for anchor, heading, body in sections(results, circuit=circuit):
        page.add(anchor, heading, body)
    return page


def run_circuit(results: RunResults, folder: Path) -> CircuitFile | None:
    """The run's circuit.json in ``folder``, when the run found a circuit and the file is there."""
    if results.circuit is None or not (Path(folder) / results.circuit.file).is_file():
        return None
    return CircuitFile.load(Path(folder) / results.circuit.file)


def write_report(results: RunResults, path: Path) -> Path:
    build_page(results, run_circuit(results, Path(path).parent)).write(path)
    return path


__all__ = ["BASELINE_ROWS", "attention_figure", "attention_section_html", "baseline_html", "build_page", "circuit_html",
           "dla_html",
           "mechanism_html", "overview_html", "patching_html", "plan_html", "run_circuit", "sections", "sweep_figure",
           "sweep_html", "top_heads_html", "write_report"]
