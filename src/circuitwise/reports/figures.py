"""Plotly figures of the report. Each takes plain lists (as stored in results.json)."""

from __future__ import annotations

from collections.abc import Sequence

import plotly.graph_objects as go

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
    """Each head's attention pattern (``patterns[head][query][key]``) as a query × key block of one heatmap,
    heads side by side (:data:`ATTENTION_COLUMNS` a row) on one 0–1 scale, each block titled with its head:
    the circuitsvis view of the page as a figure that saves to SVG and PNG.

    One heatmap trace on one pair of axes, not a subplot a head: plotly draws a subplot grid several
    times slower, which a 2,000-prompt report's load time notices."""
    T, n = len(tokens), len(heads)
    cols = max(1, min(ATTENTION_COLUMNS, n))
    rows = max(1, -(-n // cols))
    step, rstep = T + 1, T + 2  # a block, and empty columns / rows between blocks (a row's room for a title)
    z: list[list[float | None]] = [[None] * (cols * step - 1) for _ in range(rows * rstep - 2)]
    text: list[list[str]] = [[""] * (cols * step - 1) for _ in range(rows * rstep - 2)]
    for i, (head, pattern) in enumerate(zip(heads, patterns, strict=True)):
        r0, c0 = (i // cols) * rstep, (i % cols) * step
        for q in range(T):
            for k in range(T):
                z[r0 + q][c0 + k] = pattern[q][k]
                text[r0 + q][c0 + k] = f"{head}: query {q}:{tokens[q]} → key {k}:{tokens[k]}"
    fig = go.Figure(go.Heatmap(
        z=z, text=text, zmin=0.0, zmax=1.0, colorscale=SEQUENTIAL, hoverongaps=False, name="attention",
        colorbar={"title": "attention"}, hovertemplate="%{text}: %{z:.3f}<extra></extra>", xgap=0, ygap=0,
    ))
    ticks = [c * step + k for c in range(cols) for k in range(T)]
    fig.update_xaxes(tickvals=ticks, ticktext=[tokens[t % step] for t in ticks], tickangle=-60,
                     tickfont={"size": 9}, showgrid=False, zeroline=False)
    rticks = [r * rstep + q for r in range(rows) for q in range(T)]
    fig.update_yaxes(tickvals=rticks, ticktext=[tokens[t % rstep] for t in rticks], autorange="reversed",
                     tickfont={"size": 9}, showgrid=False, zeroline=False)
    for i, head in enumerate(heads):  # each block's head, above it
        fig.add_annotation(x=(i % cols) * step + (T - 1) / 2, y=(i // cols) * rstep - 0.6, text=head,
                           showarrow=False, yanchor="bottom", font={"size": 12})
    side = max(200, 16 * T + 60)
    return _layout(fig, title, "key (attended) token", "query token", height=rows * side + 140)


__all__ = ["ATTENTION_COLUMNS", "attention", "bars", "heatmap", "line"]
