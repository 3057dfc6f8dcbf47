"""Plotly figures of the report. Each takes plain lists (as stored in results.json)."""

from __future__ import annotations

from collections.abc import Sequence

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from circuitwise.reports.style import DIVERGING, MARGIN, NEGATIVE, NEUTRAL, POSITIVE, SEQUENTIAL, TEMPLATE


def _layout(fig: go.Figure, title: str, x: str, y: str, height: int = 380) -> go.Figure:
    fig.update_layout(
        title=title, xaxis_title=x, yaxis_title=y, height=height, margin=MARGIN, template=TEMPLATE,
    )
    return fig


def line(values: Sequence[float], labels: Sequence[str], title: str, y: str = "logit difference",
         x: str = "") -> go.Figure:
    fig = go.Figure(go.Scatter(x=list(labels), y=list(values), mode="lines+markers",
                               hovertemplate="%{x}: %{y:.3f}<extra></extra>"))
    fig.add_hline(y=0, line_width=1, line_color=NEUTRAL)
    return _layout(fig, title, x, y)


def bars(values: Sequence[float], labels: Sequence[str], title: str, y: str = "logit difference") -> go.Figure:
    colors = [POSITIVE if v >= 0 else NEGATIVE for v in values]
    fig = go.Figure(go.Bar(x=list(labels), y=list(values), marker_color=colors,
                           hovertemplate="%{x}: %{y:.3f}<extra></extra>"))
    return _layout(fig, title, "", y)


def heatmap(values: Sequence[Sequence[float | None]], x: Sequence[str], y: Sequence[str], title: str,
            x_title: str, y_title: str, z_title: str = "logit diff", zmid: float = 0.0) -> go.Figure:
    flat = [abs(v) for row in values for v in row if v is not None]
    bound = max(flat) if flat else 1.0
    fig = go.Figure(go.Heatmap(
        z=[list(r) for r in values], x=list(x), y=list(y), colorscale=DIVERGING, zmid=zmid,
        zmin=zmid - bound, zmax=zmid + bound, colorbar=dict(title=z_title),
        hovertemplate=f"{y_title} %{{y}}, {x_title} %{{x}}: %{{z:.3f}}<extra></extra>",
    ))
    fig.update_yaxes(autorange="reversed", type="category")
    fig.update_xaxes(type="category")
    return _layout(fig, title, x_title, y_title, height=max(320, 26 * len(y) + 120))


# Heads side by side in a row of the attention figure; more wrap to the next row.
ATTENTION_COLUMNS = 4


def attention(patterns: Sequence[Sequence[Sequence[float]]], tokens: Sequence[str], heads: Sequence[str],
              title: str) -> go.Figure:
    """Each head's attention pattern (``patterns[head][query][key]``) as a query × key heatmap, one panel a
    head on one 0–1 scale: the circuitsvis view of the page as a figure that saves to SVG and PNG."""
    cols = max(1, min(ATTENTION_COLUMNS, len(heads)))
    rows = max(1, -(-len(heads) // cols))
    # Tokens repeat within a prompt ("the" twice): the axes are categorical, so each label gets its position.
    labels = [f"{i}:{t}" for i, t in enumerate(tokens)]
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=list(heads), horizontal_spacing=0.08,
                        vertical_spacing=min(0.12, 0.6 / rows))
    for i, (head, pattern) in enumerate(zip(heads, patterns, strict=True)):
        fig.add_trace(go.Heatmap(
            z=[list(r) for r in pattern], x=labels, y=labels, name=head, zmin=0.0, zmax=1.0, colorscale=SEQUENTIAL,
            coloraxis="coloraxis", hovertemplate=f"{head}: query %{{y}} → key %{{x}}: %{{z:.3f}}<extra></extra>",
        ), row=i // cols + 1, col=i % cols + 1)
    fig.update_yaxes(autorange="reversed", type="category", tickfont={"size": 9})
    fig.update_xaxes(type="category", tickangle=-60, tickfont={"size": 9})
    side = max(220, 14 * len(tokens) + 90)
    fig.update_layout(coloraxis={"colorscale": SEQUENTIAL, "cmin": 0.0, "cmax": 1.0,
                                 "colorbar": {"title": "attention"}})
    return _layout(fig, title, "", "", height=rows * side + 80)


__all__ = ["ATTENTION_COLUMNS", "attention", "bars", "heatmap", "line"]
