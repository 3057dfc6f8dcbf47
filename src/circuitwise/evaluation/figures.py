"""Plotly figures of circuit evaluation: the faithfulness curve and attribution-vs-exact agreement."""

from __future__ import annotations

import plotly.graph_objects as go

from circuitwise.evaluation.baselines import Agreement
from circuitwise.evaluation.curve import FaithfulnessCurve
from circuitwise.evaluation.mib import MIBResult


def faithfulness_curve_figure(curve: FaithfulnessCurve, *, circuit_edges: int | None = None,
                              circuit_faithfulness: float | None = None, target: float | None = None,
                              title: str | None = None) -> go.Figure:
    """Faithfulness against circuit size (log scale), with random circuits of the same sizes."""
    fig = go.Figure()
    # Prefixes that pruned down to no edges cannot sit on a log axis; they are the corrupted model.
    shown = [i for i, n in enumerate(curve.n_edges) if n > 0]
    x = [curve.n_edges[i] for i in shown]
    faith = [curve.faithfulness[i] for i in shown]
    if curve.random_mean is not None and curve.random_std is not None:
        mean = [curve.random_mean[i] for i in shown]
        hi = [curve.random_mean[i] + curve.random_std[i] for i in shown]
        lo = [curve.random_mean[i] - curve.random_std[i] for i in shown]
        fig.add_trace(go.Scatter(x=x + x[::-1], y=hi + lo[::-1], fill="toself", fillcolor="rgba(150,150,150,0.25)",
                                 line=dict(width=0), hoverinfo="skip", name="random ± 1 sd"))
        fig.add_trace(go.Scatter(x=x, y=mean, mode="lines", line=dict(color="#888", dash="dash"),
                                 name="random circuits", hovertemplate="%{x} edges: %{y:.3f}<extra>random</extra>"))
    fig.add_trace(go.Scatter(x=x, y=faith, mode="lines+markers", line=dict(color="#2166ac"),
                             name=f"top edges ({curve.method})",
                             hovertemplate="%{x} edges: %{y:.3f}<extra></extra>"))
    if circuit_edges is not None and circuit_faithfulness is not None:
        fig.add_trace(go.Scatter(x=[max(circuit_edges, 1)], y=[circuit_faithfulness], mode="markers",
                                 marker=dict(size=13, color="#d62728", symbol="star"), name="chosen circuit",
                                 hovertemplate="%{x} edges: %{y:.3f}<extra>circuit</extra>"))
    for y, dash in ((0.0, "dot"), (1.0, "dot")):
        fig.add_hline(y=y, line_width=1, line_color="#aaa", line_dash=dash)
    if target is not None:
        fig.add_hline(y=target, line_width=1, line_color="#d62728", line_dash="dash",
                      annotation_text=f"target {target:g}", annotation_position="bottom right")
    fig.update_layout(
        title=title or f"Faithfulness over circuit size ({curve.ablation} ablation; {curve.total_edges} edges in all)",
        xaxis_title="edges in circuit", yaxis_title="faithfulness (0 = corrupted, 1 = clean)",
        template="plotly_white", height=400, margin=dict(l=60, r=20, t=50, b=60),
    )
    fig.update_xaxes(type="log")
    return fig


def agreement_figure(agreement: Agreement, *, title: str | None = None) -> go.Figure:
    """Attribution score against exact patching effect, one point per shortlisted edge."""
    a, e = agreement.attribution, agreement.exact
    lo, hi = min(a + e + [0.0]), max(a + e + [0.0])
    fig = go.Figure(go.Scatter(x=e, y=a, mode="markers", text=agreement.edges, marker=dict(color="#2166ac"),
                               hovertemplate="%{text}<br>exact %{x:.4g}<br>attribution %{y:.4g}<extra></extra>"))
    fig.add_trace(go.Scatter(x=[lo, hi], y=[lo, hi], mode="lines", line=dict(color="#aaa", dash="dot"),
                             hoverinfo="skip", showlegend=False))
    fig.update_layout(
        title=title or (f"{agreement.method} vs exact patching ({agreement.direction}) on the top "
                        f"{len(e)} edges: Spearman {agreement.spearman:.2f}"),
        xaxis_title="exact patching effect", yaxis_title=f"{agreement.method} score", showlegend=False,
        template="plotly_white", height=400, margin=dict(l=60, r=20, t=50, b=60),
    )
    return fig


def mib_figure(result: MIBResult, *, title: str | None = None) -> go.Figure:
    """MIB's faithfulness at each edge budget, signed and absolute rankings (CPR and CMD in the title).

    The x axis is drawn on a log scale so the small budgets are visible; CPR and CMD are areas on
    a linear axis, as MIB computes them.
    """
    fig = go.Figure()
    x = [100 * b for b in result.budgets]
    for curve, colour, label in ((result.signed, "#2166ac", "signed ranking (CPR)"),
                                 (result.absolute, "#b2182b", "absolute ranking (CMD)")):
        fig.add_trace(go.Scatter(
            x=x, y=curve.faithfulness, mode="lines+markers", line=dict(color=colour), name=label,
            customdata=list(zip(curve.top, curve.n_edges)),
            hovertemplate="%{x}% budget: %{customdata[0]} edges, %{customdata[1]} after pruning<br>"
                          "faithfulness %{y:.3f}<extra></extra>"))
    for y in (0.0, 1.0):
        fig.add_hline(y=y, line_width=1, line_color="#aaa", line_dash="dot")
    fig.update_layout(
        title=title or (f"MIB: CPR {result.cpr:.3f} (higher is better), CMD {result.cmd:.3f} (lower is better); "
                        f"{result.ablation} ablation, {result.total_edges} edges"),
        xaxis_title="edge budget (% of all edges; top-n by score, then pruned)",
        yaxis_title="faithfulness (0 = empty circuit, 1 = full model)",
        template="plotly_white", height=400, margin=dict(l=60, r=20, t=50, b=60),
    )
    fig.update_xaxes(type="log")
    return fig


__all__ = ["agreement_figure", "faithfulness_curve_figure", "mib_figure"]
