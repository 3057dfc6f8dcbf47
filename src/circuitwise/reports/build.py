"""Build the report page from ``results.json`` alone (so a report can be re-rendered later)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import plotly.graph_objects as go

from circuitwise.reports import figures
from circuitwise.reports.html import Page, attention_html, esc, figure_html, table, tokens_html
from circuitwise.reports.summary import dla_closure, summarize

def _f(x: float | None, digits: int = 3) -> str:
    return "—" if x is None else f"{x:.{digits}f}"


def _overview(page: Page, r: dict[str, Any]) -> None:
    items = "".join(f"<li>{esc(s)}</li>" for s in summarize(r))
    m, t = r["model"], r["task"]
    dropped = ""
    if t.get("n_dropped"):
        reasons = "".join(f"<li>{esc(d)}</li>" for d in t.get("dropped_reasons", [])[:5])
        dropped = (f'<p class="warn">{t["n_dropped"]} example(s) of the task were dropped as unusable with '
                   f"this model's tokenizer. First reasons:</p><ul class=\"note\">{reasons}</ul>")
    notes = "".join(f"<li>{esc(n)}</li>" for n in r.get("notes", []))
    adapted = (f'<div class="warn"><b>What this run adapted to its input:</b><ul>{notes}</ul></div>'
               if notes else "")
    warned = "".join(f"<li>{esc(w)}</li>" for w in r.get("warnings", []))
    if warned:
        adapted += f'<div class="warn"><b>Warnings while running:</b><ul>{warned}</ul></div>'

    page.add("summary", "Summary", (
        f'<ul class="summary">{items}</ul>{adapted}{dropped}'
        f'<p class="note">Model <code>{esc(m["name"])}</code>: {m["n_layers"]} layers × {m["n_heads"]} heads, '
        f'd_model {m["d_model"]}, {_processing_text(m.get("processing", True))} '
        f'Re-run with <code>{esc(r.get("rerun", ""))}</code>.</p>'
    ))


def _processing_text(p: Any) -> str:
    """The model's weight processing: the steps applied, and one line per step skipped and why."""
    if not isinstance(p, dict) or p.get("steps") is None:  # results.json of older versions: a bool
        on = p.get("requested", True) if isinstance(p, dict) else bool(p)
        return f"weight processing {'on' if on else 'off'}."
    if not p.get("requested"):
        return "weight processing off (raw weights)."
    applied = [s["name"] for s in p["steps"] if s["applied"]]
    skipped = "".join(f"<li>{esc(s['name'])} {'partly applied' if s['applied'] else 'skipped'}: "
                      f"{esc(s['reason'])}</li>" for s in p["steps"]
                      if s.get("reason") and not s["reason"].startswith("nothing to do"))
    text = f"weight processing: {esc(', '.join(applied) or 'none applied')}."
    return text + (f'</p><ul class="note">{skipped}</ul><p class="note">' if skipped else "")


def _baseline(page: Page, r: dict[str, Any]) -> None:
    bl, ex = r["baseline"], r["task"]["examples"]
    rows = []
    for i, e in enumerate(ex):
        top = " ".join(f'<span class="tok">{esc(t["token"])}</span>{t["prob"]:.0%}' for t in bl["top_k"][i][:5])
        ld = bl["logit_diff"]["per_prompt"][i]
        rows.append([
            str(i), tokens_html(e["tokens"]), f'<span class="tok">{esc(e["correct"])}</span>',
            f'<span class="tok">{esc(e["incorrect"])}</span>',
            f'<span class="{"pos" if ld > 0 else "neg"}">{ld:+.3f}</span>',
            f'{bl["answer_probs"][i][0]:.2%}', str(bl["correct_rank"][i]), top,
        ])
    page.add("baseline", "Baseline: the model's answers", (
        f'<p>Mean logit difference <b>{bl["logit_diff"]["mean"]:+.3f}</b>; accuracy '
        f'<b>{bl["accuracy"]:.1%}</b> (correct answer beats the incorrect one). Each prompt is read at its '
        "own last token.</p>"
        + '<div class="scroll">'
        + table(["#", "prompt tokens", "correct", "incorrect", "logit diff", "P(correct)", "rank", "top 5 next tokens"],
                rows, numeric=(4, 5, 6))
        + "</div>"
    ))


def _dla(page: Page, r: dict[str, Any]) -> None:
    d, bl = r["dla"], r["baseline"]
    caveats = "".join(f"<li>{esc(c)}</li>" for c in d.get("caveats", []))
    page.add("dla", "Direct logit attribution", (
        "<p>The final residual stream, through the final norm with its scale fixed at this run, projected "
        "on each prompt's logit-difference direction (W_U[correct] − W_U[incorrect]). "
        + esc(" ".join(dla_closure(d, bl["logit_diff"]["mean"]))) + "</p>"
        + (f'<ul class="note">{caveats}</ul>' if caveats else "")
        + figure_html(figures.line(d["logit_lens"]["values"], d["logit_lens"]["labels"],
                                   "Logit lens: logit difference of the accumulated residual stream",
                                   x="layer (pre / mid)"), "fig-logit-lens")
        + '<p class="note">Each point reads the residual stream before a layer (pre), between its attention '
          "and MLP (mid, where the block has one), or at the end, through the final norm with that point's "
          "own statistics.</p>"
        + figure_html(figures.bars(d["layers"]["values"], d["layers"]["labels"],
                                   "Per-layer decomposition: what each component writes"), "fig-layers")
        + '<p class="note">These bars sum to the final-residual attribution above.</p>'
        + figure_html(figures.heatmap(d["heads"], [str(h) for h in range(len(d["heads"][0]))],
                                      [str(l) for l in range(len(d["heads"]))],
                                      "Per-head direct logit attribution", "head", "layer"), "fig-heads")
    ))


def _top_heads(page: Page, r: dict[str, Any]) -> None:
    th, att = r["top_heads"], r.get("attention")
    rows = [[esc(h["label"]), f'<span class="pos">{h["value"]:+.3f}</span>'] for h in th["positive"]]
    rows += [[esc(h["label"]), f'<span class="neg">{h["value"]:+.3f}</span>'] for h in th["negative"]]
    body = table(["head", "direct effect on logit diff"], rows, numeric=(1,))
    if att:
        page.uses_circuitsvis = True
        k = len(th["positive"])
        body += (f'<p class="note">Attention patterns on prompt {att["example"]} (hover a head, then a token). '
                 "Top positive heads:</p>"
                 + attention_html("cv-positive", att["tokens"], att["patterns"][:k], att["heads"][:k])
                 + '<p class="note">Top negative heads:</p>'
                 + attention_html("cv-negative", att["tokens"], att["patterns"][k:], att["heads"][k:]))
    page.add("heads", "Top heads and their attention", body)


SWEEP_TITLES = {
    "resid_pre": "Residual stream (before each layer) by position",
    "attn_out": "Attention output by position",
    "mlp_out": "MLP output by position",
    "heads": "Attention heads (all positions)",
    "heads_by_pos": "Attention heads by position",
    "head_q": "Head queries", "head_k": "Head keys", "head_v": "Head values", "head_pattern": "Head patterns",
}


def _sweep_figure(what: str, sweep: dict[str, Any], z_title: str) -> Any:
    vals, labels, axes = sweep["values"], sweep["labels"], sweep["axes"]
    title = SWEEP_TITLES.get(what, what)
    if axes == ["layer", "pos", "head"]:
        # One row per head, one column per position: which head matters where.
        rows = [f"L{l}H{h}" for l in labels["layer"] for h in labels["head"]]
        z = [[vals[li][pi][hi] for pi in range(len(labels["pos"]))]
             for li in range(len(labels["layer"])) for hi in range(len(labels["head"]))]
        return figures.heatmap(z, labels["pos"], rows, title, "position", "head", z_title)
    x_axis = axes[1]
    return figures.heatmap(vals, labels[x_axis], labels["layer"], title, x_axis, "layer", z_title)


def _patching(page: Page, r: dict[str, Any]) -> None:
    p = r["patching"]
    body = ('<p>Activation patching (denoising): each activation of the corrupted run is replaced by '
            "its value in the clean run, one at a time, and the logit difference is measured. "
            "Values are normalised: 0 = the corrupted run, 1 = the clean run "
            "((patched − corrupted) / (clean − corrupted)), so a cell near 1 alone restores the answer. "
            "Positions are labelled by token, by role when prompts differ in length, or (with --align end) "
            "by offset from each prompt's end.</p>")
    for what, sweep in p.items():
        z_title = "restored" if sweep.get("normalized") else "logit diff"
        body += figure_html(_sweep_figure(what, sweep, z_title), f"fig-patch-{what}")
        notes = []
        if sweep.get("degenerate"):
            notes.append("<b>Degenerate:</b> the clean and corrupted runs give (almost) the same metric, so "
                         "normalised values are undefined and shown empty.")
        elif sweep.get("degenerate_examples"):
            notes.append(f"{len(sweep['degenerate_examples'])} example(s) have a near-zero clean–corrupted gap; "
                         "their per-example values are left out of spreads.")
        if "attribution" in sweep:
            notes.append(f"Attribution patching (one forward and backward pass) agrees with this exact sweep "
                         f"with Pearson correlation <b>{_f(sweep['attribution']['correlation'])}</b>.")
        if (sweep.get("config") or {}).get("align") == "end":
            notes.append("Positions are counted from each prompt's end (END is the last token, -2 the one before); "
                         "the token at one offset can differ between prompts.")
        top = ", ".join(f"{esc(t['cell'])} ({t['value']:+.2f})" for t in sweep.get("top", [])[:5])
        if top:
            notes.append(f"Largest cells: {top}.")
        body += "".join(f'<p class="note">{n}</p>' for n in notes)
    att = r.get("patching_attention")
    if att:
        page.uses_circuitsvis = True
        body += (f'<p class="note">Attention of the heads that patching ranks highest, on prompt {att["example"]}:</p>'
                 + attention_html("cv-patching", att["tokens"], att["patterns"], att["heads"]))
    page.add("patching", "Activation patching", body)


CIRCUIT_FIGURES = {
    "circuit": "The circuit: nodes by type, edge width by score",
    "faithfulness_curve": "Faithfulness as the circuit grows (top edges by score)",
    "mib": "MIB's metrics: faithfulness at fixed edge budgets (CPR signed, CMD absolute ranking)",
    "agreement": "Attribution scores against exact edge patching",
}


def _circuit(page: Page, r: dict[str, Any]) -> None:
    c = r["circuit"]
    items = "".join(f"<li>{esc(s)}</li>" for s in c["summary"])
    body = (f'<p>{esc(c["method"].upper())} scores every edge of the model\'s graph (embedding, each head\'s '
            "query/key/value inputs, each MLP, the logits); the circuit is the fewest top edges whose "
            "faithfulness — the logit difference with every other edge patched from the corrupted run, "
            "normalised so 0 is the corrupted model and 1 the clean one — reaches the target. "
            f'It is saved as <code>{esc(c["file"])}</code>; <code>circuitwise evaluate {esc(c["file"])} TASK</code> '
            f're-checks it.</p><ul class="summary">{items}</ul>')
    if c.get("selection", {}).get("kind") == "target" and not c["selection"].get("reached", True):
        body += '<p class="warn">The target faithfulness was not reached with any subset of edges; the full graph is shown.</p>'
    for name, fig in c.get("figures", {}).items():
        body += f"<h3>{esc(CIRCUIT_FIGURES.get(name, name))}</h3>" + figure_html(go.Figure(fig), f"fig-circuit-{name}")
    rows = [[esc(e["sender"]), esc(e["receiver"]), f'{e["score"]:+.4f}'] for e in c.get("top_edges", [])]
    if rows:
        body += "<h3>Strongest edges</h3>" + table(["sender", "receiver", "score"], rows, numeric=(2,))
    page.add("circuit", "Circuit", body)


def build_page(results: dict[str, Any]) -> Page:
    m, t = results["model"], results["task"]
    page = Page(f"circuitwise — {t['name']} on {m['name']}",
                f"{t['n_prompts']} prompts · {m['n_layers']} layers × {m['n_heads']} heads")
    for section in (_overview, _baseline, _dla, _top_heads):
        section(page, results)
    if results.get("patching"):
        _patching(page, results)
    elif results.get("patching_skipped"):
        page.add("patching", "Activation patching", f'<p class="note">Skipped: {esc(results["patching_skipped"])}.</p>')
    if results.get("circuit"):
        _circuit(page, results)
    return page


def write_report(results: dict[str, Any], path: Path) -> Path:
    build_page(results).write(path)
    return path


__all__ = ["build_page", "write_report"]
