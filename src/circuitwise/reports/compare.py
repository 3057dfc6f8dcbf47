"""compare.html and the comparison's written summary, built from compare.json alone.

Side A and side B are drawn side by side with their difference A − B; a difference the test
flags (Benjamini–Hochberg over the cells of a map) is marked ``*`` on the heatmaps and listed in
a table with its confidence interval and p-values.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import plotly.graph_objects as go
from markupsafe import Markup

from circuitwise.reports import figures
from circuitwise.reports.html import Page, esc, figure_html, render

A_COLOR, B_COLOR, D_COLOR = "#1d4ed8", "#c2410c", "#4b5563"


def _f(x: float | None, digits: int = 2, sign: bool = True) -> str:
    if x is None:
        return "—"
    return f"{x:+.{digits}f}" if sign else f"{x:.{digits}f}"


def _p(x: float | None) -> str:
    return "—" if x is None else (f"{x:.2g}" if x >= 1e-3 else f"{x:.1e}")


def _p_text(cell: dict[str, Any]) -> str:
    """A random baseline's p-value, as the bound it is when no random circuit reached the circuit."""
    return f"p {'<' if cell.get('random_p_is_bound') else '='} {_p(cell['random_p'])}"


def _ci(c: dict[str, Any], key: str, i: int, digits: int = 2) -> str:
    lo, hi = c[f"{key}_low"][i], c[f"{key}_high"][i]
    return f"[{_f(lo, digits)}, {_f(hi, digits)}]"


def _test_text(c: dict[str, Any]) -> str:
    kind = "paired" if c["paired"] else "unpaired"
    corr = (f"p-values adjusted by Benjamini–Hochberg over the {len(c['cells'])} cells (false discovery rate "
            f"{c['alpha']:g})" if c.get("correction") else f"significance level {c['alpha']:g}")
    return (f"{kind} comparison ({c['n_a']} and {c['n_b']} examples): {c['test']}; {corr}; "
            f"{c['confidence']:.0%} bootstrap intervals; differences of at most {c['min_difference']:g} are "
            "float rounding and never flagged.")


# ---- the written summary -------------------------------------------------------------------------

def summarize_compare(r: dict[str, Any]) -> list[str]:
    """A few plain sentences, each derived from a number in compare.json."""
    a, b = r["a"]["label"], r["b"]["label"]
    out: list[str] = []
    ld, acc = r.get("logit_diff"), r.get("accuracy")
    if ld:
        sig = "a significant" if ld["significant"][0] else "not a significant"
        out.append(
            f"Mean logit difference {_f(ld['a'][0])} on {a} against {_f(ld['b'][0])} on {b}: "
            f"A − B = {_f(ld['diff'][0])} {_ci(ld, 'diff', 0)}, {sig} difference "
            f"({'paired' if ld['paired'] else 'unpaired'} test, p = {_p(ld['p'][0])})."
        )
    if acc:
        out.append(f"Accuracy {acc['a'][0]:.0%} on {a} and {acc['b'][0]:.0%} on {b} "
                   f"(difference {100 * (acc['diff'][0] or 0):+.0f} points, p = {_p(acc['p'][0])}).")
    heads = r.get("heads")
    if heads:
        flagged = [heads["cells"].index(h) for h in _flagged(heads)]
        if flagged:
            more_a = [i for i in flagged if (heads["diff"][i] or 0) > 0]
            more_b = [i for i in flagged if (heads["diff"][i] or 0) < 0]
            parts = []
            if more_b:
                parts.append(f"on {b} the answer is carried more by " + _heads_list(heads, more_b))
            if more_a:
                parts.append(f"on {a} more by " + _heads_list(heads, more_a))
            out.append("Direct effect per head: " + "; ".join(parts) + f" ({len(flagged)} of {len(heads['cells'])} "
                       f"heads differ, Benjamini–Hochberg at {heads['alpha']:g}).")
        else:
            out.append(f"No head's direct effect differs between the two sides (none of {len(heads['cells'])} heads "
                       f"passes Benjamini–Hochberg at {heads['alpha']:g}).")
    layers = r.get("layers")
    if layers:
        j = max(range(len(layers["diff"])), key=lambda k: abs(layers["diff"][k] or 0))
        out.append(f"The component whose direct effect differs most is {layers['cells'][j]} "
                   f"({_f(layers['a'][j])} on {a}, {_f(layers['b'][j])} on {b}"
                   f"{', significant' if layers['significant'][j] else ', not significant'}).")
    p = r.get("patching")
    if p:
        flagged = _flagged(p)
        out.append("Patching each head's output: " + (
            f"{', '.join(flagged[:5])} restore{'s' if len(flagged) == 1 else ''} a different share of the answer "
            "on the two sides." if flagged else "no head restores a significantly different share on the two sides."))
    out.extend(_circuit_sentences(r, a, b))
    return out


def _flagged(c: dict[str, Any]) -> list[str]:
    hits = [(abs(d or 0.0), cell) for cell, d, s in zip(c["cells"], c["diff"], c["significant"], strict=True) if s]
    return [cell for _, cell in sorted(hits, key=lambda t: -t[0])]


def _heads_list(c: dict[str, Any], idx: list[int]) -> str:
    idx = sorted(idx, key=lambda i: -abs(c["diff"][i] or 0))[:4]
    return ", ".join(f"{c['cells'][i]} ({_f(c['a'][i])} vs {_f(c['b'][i])})" for i in idx)


def _circuit_sentences(r: dict[str, Any], a: str, b: str) -> list[str]:
    c = r.get("circuits")
    if not c:
        return [f"Circuits were not compared: {r['circuits_skipped']}."] if r.get("circuits_skipped") else []
    def size(side: dict[str, Any]) -> str:
        nodes = side.get("nodes")
        if nodes is None:
            return f"{side['n_edges']} edges"
        shown = ", ".join(nodes[:6]) + (", …" if len(nodes) > 6 else "")
        return f"{len(nodes)} nodes — {shown} — and {side['n_edges']} edges"

    out = [f"The circuit found on {a} has {size(c['a'])} "
           f"(faithfulness {_f(c['a']['faithfulness'], sign=False)}), "
           f"the one on {b} {size(c['b'])} ({_f(c['b']['faithfulness'], sign=False)})."]
    ov = c.get("overlap")
    if ov:
        out.append(f"They share {len(ov['shared_edges'])} edges (Jaccard {ov['jaccard']:.2f}; "
                   f"{ov['jaccard_equal_size']:.2f} "
                   f"for the top {ov['equal_size']} edges of each; score-weighted overlap {ov['weighted']:.2f}).")
    names = {"a": a, "b": b}
    for cell in c["cross"]:
        if cell["circuit"] == cell["on"]:
            continue
        rnd = cell["random_mean"]
        out.append(
            f"The {names[cell['circuit']]} circuit keeps {_f(cell['kept_fraction'], sign=False)} of the logit "
            "difference "
            f"on {names[cell['on']]} (faithfulness {_f(cell['faithfulness'], sign=False)}, against "
            f"{_f(rnd, sign=False)} for random "
            f"{'node sets' if c[cell['circuit']].get('nodes') is not None else 'circuits'} of its size; "
            f"{_p_text(cell)})."
        )
    return out


# ---- the page ------------------------------------------------------------------------------------

def _marks(c: dict[str, Any]) -> list[list[str]]:
    L, H = c["shape"]
    return [["*" if c["significant"][l * H + h] else "" for h in range(H)] for l in range(L)]


def _grid(flat: Sequence[float | None], shape: Sequence[int]) -> list[list[float | None]]:
    L, H = shape
    return [list(flat[l * H : (l + 1) * H]) for l in range(L)]


def _bound(*maps: Any) -> float:
    """One colour scale for maps shown side by side, so equal colours are equal values."""
    flat = [abs(v) for z in maps if z for row in z for v in row if v is not None]
    return max(flat) if flat and max(flat) > 0 else 1.0


def _pair(left: str, right: str) -> Markup:
    return Markup(render("compare/pair.html", left=Markup(left), right=Markup(right)))


def _heatmap(z: Any, title: str, z_title: str, marks: list[list[str]] | None = None,
             bound: float | None = None) -> go.Figure:
    L, H = len(z), len(z[0]) if z else 0
    fig = figures.heatmap(z, [str(h) for h in range(H)], [str(l) for l in range(L)], title, "head", "layer", z_title)
    if bound is not None:
        fig.update_traces(zmin=-bound, zmax=bound)
    if marks is not None:
        fig.update_traces(text=marks, texttemplate="%{text}", textfont=dict(size=16))
    return fig


def _bands(c: dict[str, Any], labels_a: str, labels_b: str, title: str, y: str) -> go.Figure:
    x = c["cells"]
    fig = go.Figure()
    for key, name, color in (("a", labels_a, A_COLOR), ("b", labels_b, B_COLOR), ("diff", "A − B", D_COLOR)):
        lo, hi = c[f"{key}_low"], c[f"{key}_high"]
        fig.add_trace(go.Scatter(x=x + x[::-1], y=list(hi) + list(lo)[::-1], fill="toself", line=dict(width=0),
                                 fillcolor=color, opacity=0.18, hoverinfo="skip", showlegend=False))
        fig.add_trace(go.Scatter(x=x, y=c[key], mode="lines+markers", name=name, line=dict(color=color,
                                 dash="dot" if key == "diff" else "solid"),
                                 # plotly reads the hover template as HTML
                                 hovertemplate="%{x}: %{y:.3f}<extra>" + esc(name) + "</extra>"))
    fig.add_hline(y=0, line_width=1, line_color="#888")
    fig.update_layout(title=title, yaxis_title=y, height=400, template="plotly_white",
                      margin=dict(l=60, r=20, t=50, b=60))
    return fig


def _grouped(c: dict[str, Any], la: str, lb: str, title: str) -> go.Figure:
    fig = go.Figure()
    for key, name, color in (("a", la, A_COLOR), ("b", lb, B_COLOR), ("diff", "A − B", D_COLOR)):
        vals = [v if v is not None else 0.0 for v in c[key]]
        plus = [(h - v) if h is not None and v is not None else 0
                for h, v in zip(c[f"{key}_high"], c[key], strict=True)]
        minus = [(v - lo) if lo is not None and v is not None else 0
                 for lo, v in zip(c[f"{key}_low"], c[key], strict=True)]
        text = ["*" if s and key == "diff" else "" for s in c["significant"]]
        fig.add_trace(go.Bar(x=c["cells"], y=vals, name=name, marker_color=color, text=text, textposition="outside",
                             error_y=dict(type="data", array=plus, arrayminus=minus, visible=True)))
    fig.update_layout(title=title, barmode="group", yaxis_title="logit difference", height=400,
                      template="plotly_white", margin=dict(l=60, r=20, t=50, b=60))
    return fig


def _flag_table(c: dict[str, Any], la: str, lb: str, limit: int = 20) -> Markup:
    """The test's description and the cells whose difference is largest, flagged ones first."""
    order = sorted(range(len(c["cells"])), key=lambda i: (not c["significant"][i], -abs(c["diff"][i] or 0)))[:limit]
    q = c.get("q") or [None] * len(c["p"])
    rows = [[Markup("{} <b>*</b>").format(c["cells"][i]) if c["significant"][i] else c["cells"][i],
             _f(c["a"][i], 3), _f(c["b"][i], 3), _f(c["diff"][i], 3), _ci(c, "diff", i, 3), _p(c["p"][i]), _p(q[i])]
            for i in order]
    headers = ["cell", la, lb, "A − B", f"{c['confidence']:.0%} interval", "p", "q (BH)"]
    return Markup(render("compare/flags.html", test_text=_test_text(c), headers=headers, rows=rows))


def _summary(page: Page, r: dict[str, Any]) -> None:
    summary = r.get("summary") or summarize_compare(r)
    page.add("summary", "Summary", render("compare/summary.html", r=r, summary=summary))


def _baseline(page: Page, r: dict[str, Any]) -> None:
    la, lb = r["a"]["label"], r["b"]["label"]
    stats = []
    for name in ("logit_diff", "accuracy", "metric"):
        c = r.get(name)
        if c:
            label = c["cells"][0] if name == "metric" else name.replace("_", " ")
            stats.append([label, _f(c["a"][0], 3) + " " + _ci(c, "a", 0),
                          _f(c["b"][0], 3) + " " + _ci(c, "b", 0), _f(c["diff"][0], 3) + " " + _ci(c, "diff", 0),
                          _p(c["p"][0]), "yes" if c["significant"][0] else "no"])
    ea, eb = r["a"]["logit_diff"], r["b"]["logit_diff"]
    if r["pairing"]["paired"]:
        fig = go.Figure(go.Scatter(x=ea, y=eb, mode="markers", marker=dict(color=D_COLOR, size=6),
                                   text=[str(i) for i in range(len(ea))],
                                   hovertemplate="pair %{text}: A %{x:.2f}, B %{y:.2f}<extra></extra>"))
        lo, hi = min(ea + eb + [0.0]), max(ea + eb + [0.0])
        fig.add_trace(go.Scatter(x=[lo, hi], y=[lo, hi], mode="lines", line=dict(color="#aaa", dash="dash"),
                                 showlegend=False, hoverinfo="skip"))
        fig.update_layout(title="Logit difference per pair (A against B; the diagonal is no difference)",
                          xaxis_title=la, yaxis_title=lb, height=420, template="plotly_white", showlegend=False)
    else:
        fig = go.Figure([go.Box(y=ea, name=la, marker_color=A_COLOR, boxpoints="all"),
                         go.Box(y=eb, name=lb, marker_color=B_COLOR, boxpoints="all")])
        fig.update_layout(title="Logit difference per prompt", yaxis_title="logit difference", height=420,
                          template="plotly_white", showlegend=False)
    n = min(len(r["a"]["examples"]), len(r["b"]["examples"]), 50)
    prompts = [(i, r["a"]["examples"][i]["tokens"], _f(ea[i], 2), r["b"]["examples"][i]["tokens"], _f(eb[i], 2))
               for i in range(n)]
    test_text = _test_text(r["logit_diff"]) if r.get("logit_diff") else ""
    page.add("baseline", "Baseline: the model's answers on each side",
             render("compare/baseline.html", la=la, lb=lb, stats=stats, test_text=test_text, fig=fig, prompts=prompts,
                    paired=r["pairing"]["paired"]))


def _note(text: str) -> Markup:
    return Markup(render("note.html", text=text))


def _dla(page: Page, r: dict[str, Any]) -> None:
    la, lb = r["a"]["label"], r["b"]["label"]
    parts: list[Markup] = []
    if r.get("lens"):
        parts.append(figure_html(_bands(r["lens"], la, lb, "Logit lens: accumulated residual stream, with confidence "
                                        "bands", "logit difference"), "fig-cmp-lens"))
    else:
        for key, color in (("a", "A"), ("b", "B")):
            parts.append(figure_html(figures.line(r[key]["lens"], r[key]["lens_labels"], f"Logit lens, side {color}"),
                                     f"fig-cmp-lens-{key}"))
    if r.get("layers"):
        parts.append(figure_html(_grouped(r["layers"], la, lb, "Per-layer decomposition (bars: each side and A − B; "
                                          "* = the difference is significant)"), "fig-cmp-layers"))
        parts.append(_note(_test_text(r["layers"])))
    else:
        parts.append(_pair(*(figure_html(figures.bars(r[k]["layers"], r[k]["layer_labels"], f"Per-layer "
                                                      f"decomposition, side {k.upper()}"), f"fig-cmp-layers-{k}")
                             for k in ("a", "b"))))
    c = r.get("heads")
    shape = [r["a"]["n_layers"], r["a"]["n_heads"]]
    same = _bound(r["a"]["heads_dla"], r["b"]["heads_dla"]) if c else None
    parts.append(_pair(figure_html(_heatmap(r["a"]["heads_dla"], f"Per-head direct effect: {la}", "logit diff",
                                            bound=same), "fig-cmp-heads-a"),
                       figure_html(_heatmap(r["b"]["heads_dla"], f"Per-head direct effect: {lb}", "logit diff",
                                            bound=same), "fig-cmp-heads-b")))
    if c:
        parts.append(figure_html(_heatmap(_grid(c["diff"], shape), "Difference A − B (* = significant after "
                                          "Benjamini–Hochberg)", "A − B", _marks(c)), "fig-cmp-heads-diff"))
        parts.append(_flag_table(c, la, lb))
    page.add("dla", "Direct logit attribution, side by side", render("compare/dla.html", parts=parts))


def _patching(page: Page, r: dict[str, Any]) -> None:
    la, lb = r["a"]["label"], r["b"]["label"]
    if r["a"].get("patching") is None and r["b"].get("patching") is None:
        return
    c = r.get("patching")
    same = _bound(r["a"].get("patching"), r["b"].get("patching")) if c else None
    figs = [figure_html(_heatmap(r[key]["patching"], f"Heads patching: {label}", "restored", bound=same),
                        f"fig-cmp-patch-{key}") if r[key].get("patching") is not None else
            _note(f"Side {key.upper()} has no heads patching (see the notes).")
            for key, label in (("a", la), ("b", lb))]
    parts = [_pair(*figs)]
    if c:
        parts.append(figure_html(_heatmap(_grid(c["diff"], c["shape"]), "Difference A − B (* = significant after "
                                          "Benjamini–Hochberg)", "A − B", _marks(c)), "fig-cmp-patch-diff"))
        parts.append(_flag_table(c, la, lb))
    page.add("patching", "Heads patching, side by side", render("compare/patching.html", parts=parts))


def _attention(page: Page, r: dict[str, Any]) -> None:
    att = r.get("attention")
    if not att:
        return
    pair = "the twin pair" if r["pairing"]["paired"] else "the first prompt of each side"
    page.add("attention", "Attention of the heads that differ most",
             render("compare/attention.html", att=att, pair=pair, la=r["a"]["label"], lb=r["b"]["label"]))


def _circuits(page: Page, r: dict[str, Any]) -> None:
    c = r.get("circuits")
    if not c:
        if r.get("circuits_skipped"):
            page.add("circuits", "Circuits", render("run/skipped.html", reason=r["circuits_skipped"]))
        return
    names = {"a": r["a"]["label"], "b": r["b"]["label"]}
    found = [[names[k], c[k]["n_edges"], c[k]["total_edges"], _f(c[k]["faithfulness"], 3, False),
              _f(c[k]["kept_fraction"], 3, False), c[k]["file"]] for k in ("a", "b")]
    drawn = [figure_html(go.Figure(c[k]["figure"]), f"fig-cmp-circuit-{k}") for k in ("a", "b") if c[k].get("figure")]
    cross = [[names[x["circuit"]], names[x["on"]], x["n_edges"], _f(x["faithfulness"], 3, False),
              _f(x["kept_fraction"], 3, False), f'{_f(x["random_mean"], 3, False)} ± {_f(x["random_std"], 3, False)}',
              _p_text(x)] for x in c["cross"]]
    ov = c.get("overlap")
    shared = [[e] for e in ov["shared_edges"][:30]] if ov else []
    node_level = any(c[k].get("nodes") is not None for k in ("a", "b"))
    nodes = [[names[k], ", ".join(c[k]["nodes"])] for k in ("a", "b") if c[k].get("nodes") is not None]
    page.add("circuits", "Circuits: overlap and cross-faithfulness",
             render("compare/circuits.html", found=found, drawn=_pair(*drawn) if len(drawn) == 2 else None,
                    cross=cross, ov=ov, shared=shared, node_level=node_level, nodes=nodes))


def build_compare_page(r: dict[str, Any]) -> Page:
    page = Page(f"circuitwise compare — {r['a']['label']} vs {r['b']['label']}",
                f"{r['a']['n_prompts']} and {r['b']['n_prompts']} prompts · "
                f"{'paired' if r['pairing']['paired'] else 'unpaired'}")
    for section in (_summary, _baseline, _dla, _patching, _attention, _circuits):
        section(page, r)
    return page


def write_compare_page(results: dict[str, Any], path: Path) -> Path:
    build_compare_page(results).write(path)
    return path


__all__ = ["build_compare_page", "summarize_compare", "write_compare_page"]
