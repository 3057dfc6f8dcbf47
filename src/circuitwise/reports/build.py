"""Build the report page from the typed results alone (so a report can be re-rendered later).

Each section is an HTML body built from one schema section; the page (:func:`build_page`) and the
notebook display (:mod:`circuitwise.reports.display`) put the same bodies together. ``ids`` prefixes
every element id, so several displays can share one notebook page.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import plotly.graph_objects as go

from circuitwise.reports import figures
from circuitwise.reports.html import Page, attention_html, esc, figure_html, table, tokens_html
from circuitwise.reports.summary import dla_closure, summarize
from circuitwise.schema.results import (Attention, BaselineSection, CircuitSection, DLASection, Example,
                                        Processing, RunResults, TopHeads)
from circuitwise.schema.sweeps import RunSweep, Sweep

def _f(x: float | None, digits: int = 3) -> str:
    return "—" if x is None else f"{x:.{digits}f}"


def overview_html(r: RunResults) -> str:
    items = "".join(f"<li>{esc(s)}</li>" for s in summarize(r))
    m, t = r.model, r.task
    dropped = ""
    if t.n_dropped:
        reasons = "".join(f"<li>{esc(d)}</li>" for d in t.dropped_reasons[:5])
        dropped = (f'<p class="warn">{t.n_dropped} example(s) of the task were dropped as unusable with '
                   f"this model's tokenizer. First reasons:</p><ul class=\"note\">{reasons}</ul>")
    notes = "".join(f"<li>{esc(n)}</li>" for n in r.notes)
    adapted = (f'<div class="warn"><b>What this run adapted to its input:</b><ul>{notes}</ul></div>'
               if notes else "")
    warned = "".join(f"<li>{esc(w)}</li>" for w in r.warnings)
    if warned:
        adapted += f'<div class="warn"><b>Warnings while running:</b><ul>{warned}</ul></div>'
    return (
        f'<ul class="summary">{items}</ul>{adapted}{dropped}'
        f'<p class="note">Model <code>{esc(m.name)}</code>: {m.n_layers} layers × {m.n_heads} heads, '
        f'd_model {m.d_model}, {_processing_text(m.processing)} '
        f'Re-run with <code>{esc(r.rerun)}</code>.</p>'
    )


def _processing_text(p: Processing) -> str:
    """The model's weight processing: the steps applied, and one line per step skipped and why."""
    if p.steps is None:  # loaded elsewhere: only what was asked is known
        return f"weight processing {'on' if p.requested else 'off'}."
    if not p.requested:
        return "weight processing off (raw weights)."
    applied = [s.name for s in p.steps if s.applied]
    skipped = "".join(f"<li>{esc(s.name)} {'partly applied' if s.applied else 'skipped'}: "
                      f"{esc(s.reason)}</li>" for s in p.steps
                      if s.reason and not s.reason.startswith("nothing to do"))
    text = f"weight processing: {esc(', '.join(applied) or 'none applied')}."
    return text + (f'</p><ul class="note">{skipped}</ul><p class="note">' if skipped else "")


def baseline_html(bl: BaselineSection, examples: Sequence[Example] | None = None) -> str:
    """The per-prompt table; without ``examples`` (a bare Baseline) the prompts' tokens are not shown."""
    rows = []
    for i in range(len(bl.logit_diff.per_prompt)):
        e = examples[i] if examples is not None else None
        top = " ".join(f'<span class="tok">{esc(t.token)}</span>{t.prob:.0%}' for t in bl.top_k[i][:5])
        ld = bl.logit_diff.per_prompt[i]
        row = [str(i)]
        if e is not None:
            row += [tokens_html(e.tokens), f'<span class="tok">{esc(e.correct)}</span>',
                    f'<span class="tok">{esc(e.incorrect)}</span>']
        row += [f'<span class="{"pos" if ld > 0 else "neg"}">{ld:+.3f}</span>',
                f"{bl.answer_probs[i][0]:.2%}", str(bl.correct_rank[i]), top]
        rows.append(row)
    head = ["#"] + (["prompt tokens", "correct", "incorrect"] if examples is not None else [])
    head += ["logit diff", "P(correct)", "rank", "top 5 next tokens"]
    first = len(head) - 4
    return (
        f"<p>Mean logit difference <b>{bl.logit_diff.mean:+.3f}</b>; accuracy "
        f"<b>{bl.accuracy:.1%}</b> (correct answer beats the incorrect one). Each prompt is read at its "
        "own last token.</p>"
        + '<div class="scroll">' + table(head, rows, numeric=(first, first + 1, first + 2)) + "</div>"
    )


def dla_html(d: DLASection, output_mean: float | None = None, ids: str = "") -> str:
    """Closure, logit lens, per-layer bars and the per-head heatmap; ``output_mean``: the baseline's mean."""
    caveats = "".join(f"<li>{esc(c)}</li>" for c in d.caveats)
    mean = d.logit_diff if output_mean is None else output_mean
    return (
        "<p>The final residual stream, through the final norm with its scale fixed at this run, projected "
        "on each prompt's logit-difference direction (W_U[correct] − W_U[incorrect]). "
        + esc(" ".join(dla_closure(d, mean))) + "</p>"
        + (f'<ul class="note">{caveats}</ul>' if caveats else "")
        + figure_html(figures.line(d.logit_lens.values, d.logit_lens.labels,
                                   "Logit lens: logit difference of the accumulated residual stream",
                                   x="layer (pre / mid)"), f"{ids}fig-logit-lens")
        + '<p class="note">Each point reads the residual stream before a layer (pre), between its attention '
          "and MLP (mid, where the block has one), or at the end, through the final norm with that point's "
          "own statistics.</p>"
        + figure_html(figures.bars(d.layers.values, d.layers.labels,
                                   "Per-layer decomposition: what each component writes"), f"{ids}fig-layers")
        + '<p class="note">These bars sum to the final-residual attribution above.</p>'
        + figure_html(figures.heatmap(d.heads, [str(h) for h in range(len(d.heads[0]))],
                                      [str(l) for l in range(len(d.heads))],
                                      "Per-head direct logit attribution", "head", "layer"), f"{ids}fig-heads")
    )


def top_heads_html(th: TopHeads, att: Attention | None, ids: str = "") -> str:
    rows = [[esc(h.label), f'<span class="pos">{h.value:+.3f}</span>'] for h in th.positive]
    rows += [[esc(h.label), f'<span class="neg">{h.value:+.3f}</span>'] for h in th.negative]
    body = table(["head", "direct effect on logit diff"], rows, numeric=(1,))
    if att:
        k = len(th.positive)
        body += (f'<p class="note">Attention patterns on prompt {att.example} (hover a head, then a token). '
                 "Top positive heads:</p>"
                 + attention_html(f"{ids}cv-positive", att.tokens, att.patterns[:k], att.heads[:k])
                 + '<p class="note">Top negative heads:</p>'
                 + attention_html(f"{ids}cv-negative", att.tokens, att.patterns[k:], att.heads[k:]))
    return body


def attention_section_html(att: Attention, ids: str = "", title: str = "") -> str:
    """One circuitsvis view of some heads' attention on one prompt."""
    return (f'<p class="note">{esc(title) or "Attention patterns"} on prompt {att.example} (hover a head, then a '
            f"token).</p>" + attention_html(f"{ids}cv-attention", att.tokens, att.patterns, att.heads))


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
        rows = [f"L{l}H{h}" for l in labels["layer"] for h in labels["head"]]
        z = [[vals[li][pi][hi] for pi in range(len(labels["pos"]))]
             for li in range(len(labels["layer"])) for hi in range(len(labels["head"]))]
        return figures.heatmap(z, labels["pos"], rows, title, "position", "head", z_title)
    x_axis = axes[1]
    return figures.heatmap(vals, labels[x_axis], labels["layer"], title, x_axis, "layer", z_title)


PATCHING_INTRO = ('<p>Activation patching (denoising): each activation of the corrupted run is replaced by '
            "its value in the clean run, one at a time, and the logit difference is measured. "
            "Values are normalised: 0 = the corrupted run, 1 = the clean run "
            "((patched − corrupted) / (clean − corrupted)), so a cell near 1 alone restores the answer. "
            "Positions are labelled by token, by role when prompts differ in length, or (with --align end) "
            "by offset from each prompt's end.</p>")


def sweep_html(what: str, sweep: Sweep, ids: str = "") -> str:
    """One sweep's heatmap and what to know about it (degenerate gap, agreement, largest cells)."""
    body = figure_html(sweep_figure(what, sweep), f"{ids}fig-patch-{what}")
    notes = []
    if sweep.degenerate:
        notes.append("<b>Degenerate:</b> the clean and corrupted runs give (almost) the same metric, so "
                     "normalised values are undefined and shown empty.")
    elif sweep.degenerate_examples:
        notes.append(f"{len(sweep.degenerate_examples)} example(s) have a near-zero clean–corrupted gap; "
                     "their per-example values are left out of spreads.")
    if isinstance(sweep, RunSweep) and sweep.attribution is not None:
        notes.append(f"Attribution patching (one forward and backward pass) agrees with this exact sweep "
                     f"with Pearson correlation <b>{_f(sweep.attribution.correlation)}</b>.")
    if sweep.config.align == "end":
        notes.append("Positions are counted from each prompt's end (END is the last token, -2 the one before); "
                     "the token at one offset can differ between prompts.")
    cells = sweep.top[:5] if isinstance(sweep, RunSweep) else []
    top = ", ".join(f"{esc(t.cell)} ({t.value:+.2f})" for t in cells if t.value is not None)
    if top:
        notes.append(f"Largest cells: {top}.")
    return body + "".join(f'<p class="note">{n}</p>' for n in notes)


def patching_html(p: dict[str, RunSweep], att: Attention | None = None, ids: str = "") -> str:
    body = PATCHING_INTRO + "".join(sweep_html(what, sweep, ids) for what, sweep in p.items())
    if att:
        body += (f'<p class="note">Attention of the heads that patching ranks highest, on prompt {att.example}:</p>'
                 + attention_html(f"{ids}cv-patching", att.tokens, att.patterns, att.heads))
    return body


CIRCUIT_FIGURES = {
    "circuit": "The circuit: nodes by type, edge width by score",
    "faithfulness_curve": "Faithfulness as the circuit grows (top edges by score)",
    "mib": "MIB's metrics: faithfulness at fixed edge budgets (CPR signed, CMD absolute ranking)",
    "agreement": "Attribution scores against exact edge patching",
}


def circuit_html(c: CircuitSection, ids: str = "") -> str:
    items = "".join(f"<li>{esc(s)}</li>" for s in c.summary)
    body = (f'<p>{esc(c.method.upper())} scores every edge of the model\'s graph (embedding, each head\'s '
            "query/key/value inputs, each MLP, the logits); the circuit is the fewest top edges whose "
            "faithfulness — the logit difference with every other edge patched from the corrupted run, "
            "normalised so 0 is the corrupted model and 1 the clean one — reaches the target. "
            f'It is saved as <code>{esc(c.file)}</code>; <code>circuitwise evaluate {esc(c.file)} TASK</code> '
            f're-checks it.</p><ul class="summary">{items}</ul>')
    sel = c.selection
    if sel.kind == "target" and not getattr(sel, "reached", True):
        body += '<p class="warn">The target faithfulness was not reached with any subset of edges; the full graph is shown.</p>'
    for name, fig in c.figures.items():
        body += (f"<h3>{esc(CIRCUIT_FIGURES.get(name, name))}</h3>"
                 + figure_html(go.Figure(fig), f"{ids}fig-circuit-{name}"))
    rows = [[esc(e.sender), esc(e.receiver), "—" if e.score is None else f"{e.score:+.4f}"] for e in c.top_edges]
    if rows:
        body += "<h3>Strongest edges</h3>" + table(["sender", "receiver", "score"], rows, numeric=(2,))
    return body


def sections(results: RunResults, ids: str = "") -> list[tuple[str, str, str]]:
    """``(anchor, heading, body)`` of every section the results have, in the report's order."""
    r = results
    out = [("summary", "Summary", overview_html(r))] if r.baseline and r.dla and r.top_heads else []
    if r.baseline:
        out.append(("baseline", "Baseline: the model's answers", baseline_html(r.baseline, r.task.examples)))
    if r.dla:
        out.append(("dla", "Direct logit attribution",
                    dla_html(r.dla, r.baseline.logit_diff.mean if r.baseline else None, ids)))
    if r.top_heads:
        out.append(("heads", "Top heads and their attention", top_heads_html(r.top_heads, r.attention, ids)))
    if r.patching:
        out.append(("patching", "Activation patching", patching_html(r.patching, r.patching_attention, ids)))
    elif r.patching_skipped:
        out.append(("patching", "Activation patching", f'<p class="note">Skipped: {esc(r.patching_skipped)}.</p>'))
    if r.circuit:
        out.append(("circuit", "Circuit", circuit_html(r.circuit, ids)))
    return out


def build_page(results: RunResults) -> Page:
    m, t = results.model, results.task
    page = Page(f"circuitwise — {t.name} on {m.name}",
                f"{t.n_prompts} prompts · {m.n_layers} layers × {m.n_heads} heads")
    for anchor, heading, body in sections(results):
        page.add(anchor, heading, body)
    return page


def write_report(results: RunResults, path: Path) -> Path:
    build_page(results).write(path)
    return path


__all__ = ["attention_section_html", "baseline_html", "build_page", "circuit_html", "dla_html", "overview_html",
           "patching_html", "sections", "sweep_figure", "sweep_html", "top_heads_html", "write_report"]
