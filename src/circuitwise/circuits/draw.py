"""A plotly drawing of a circuit: layers bottom to top, nodes by type, edge width by score.

Heads sit at x = head index and MLPs to their right; the input is at the bottom and the logits at
the top. An edge into a head ends, with an arrowhead, at that head's query, key or value port
(drawn as a small labelled marker under the head, joined to it: left q, centre k, right v; the
edges into them dotted, dashed and solid). Blue edges have positive scores, red negative; the legend
says so. This is the static figure (exports, notebooks without JavaScript); the report's explorer
draws the same layout interactively.
"""

from __future__ import annotations

import math

import plotly.graph_objects as go

from circuitwise.circuits.circuit import Circuit

NODE_STYLE = {
    "input": dict(color="#636363", symbol="square", size=16),
    "head": dict(color="#3182bd", symbol="circle", size=14),
    "mlp": dict(color="#e6550d", symbol="diamond", size=15),
    "logits": dict(color="#31a354", symbol="star", size=18),
}
PORT = {"q": (-0.22, "dot"), "k": (0.0, "dash"), "v": (0.22, "solid")}
POSITIVE, NEGATIVE = "#2166ac", "#b2182b"


def _node_xy(circuit: Circuit, name: str) -> tuple[float, float]:
    g = circuit.graph
    if name == "input":
        return (g.n_heads - 1) / 2, -1.0
    if name == "logits":
        return (g.n_heads - 1) / 2, float(g.n_layers)
    if name.startswith("MLP"):
        return g.n_heads + 0.3, int(name[3:]) + 0.45
    layer, head = name[1:].split("H")
    return float(head), float(layer)


def circuit_figure(circuit: Circuit, *, max_edges: int = 400, title: str | None = None) -> go.Figure:
    """The circuit's graph; at most ``max_edges`` strongest edges are drawn (the title says so)."""
    edges = circuit.edge_list()
    shown = edges[:max_edges]
    finite = [abs(s) for _, _, s in shown if s is not None and math.isfinite(s)]
    top = max(finite) if finite else 1.0
    fig = go.Figure()
    mid_x, mid_y, mid_text = [], [], []
    ports: dict[tuple[str, str], tuple[float, float, float, float]] = {}
    for sender, receiver, score in reversed(shown):  # strongest drawn last, on top
        x0, y0 = _node_xy(circuit, sender)
        node, _, port = receiver.partition(".")
        x1, y1 = _node_xy(circuit, node)
        dash = "solid"
        if port:
            dx, dash = PORT[port]
            hx, hy = x1, y1
            x1, y1 = x1 + dx, y1 - 0.18
            ports[(node, port)] = (x1, y1, hx, hy)
        width = 1.0 + 7.0 * (abs(score) / top if score is not None and top > 0 else 0.3)
        color = NEGATIVE if score is not None and score < 0 else POSITIVE
        fig.add_trace(go.Scatter(x=[x0, x1], y=[y0, y1], mode="lines", hoverinfo="skip", showlegend=False,
                                 line=dict(width=width, color=color, dash=dash), opacity=0.75))
        # The arrowhead, on the last stretch of the edge, stopping short of the receiver's marker.
        fig.add_annotation(x=x1, y=y1, ax=x0 + 0.8 * (x1 - x0), ay=y0 + 0.8 * (y1 - y0), xref="x", yref="y",
                           axref="x", ayref="y", text="", showarrow=True, arrowhead=2, arrowsize=1.2,
                           arrowwidth=max(1.0, width / 2.5), arrowcolor=color, standoff=4 if port else 8,
                           opacity=0.9)
        mid_x.append((x0 + x1) / 2)
        mid_y.append((y0 + y1) / 2)
        mid_text.append(f"{sender} → {receiver}: {score:.4g}" if score is not None else f"{sender} → {receiver}")
    fig.add_trace(go.Scatter(x=mid_x, y=mid_y, mode="markers", marker=dict(size=6, opacity=0),
                             hovertext=mid_text, hoverinfo="text", showlegend=False))
    if ports:
        # Each q/k/v port the circuit feeds: a small labelled marker under its head, joined to it.
        px, py, label = [], [], []
        for (_node, port), (x, y, hx, hy) in sorted(ports.items()):
            fig.add_trace(go.Scatter(x=[x, hx], y=[y, hy], mode="lines", hoverinfo="skip", showlegend=False,
                                     line=dict(width=1, color="#9e9e9e")))
            px.append(x)
            py.append(y)
            label.append(port)
        fig.add_trace(go.Scatter(x=px, y=py, mode="markers+text", text=label, textposition="bottom center",
                                 textfont=dict(size=10, color="#616161"), name="q / k / v input",
                                 marker=dict(size=6, color="white", line=dict(width=1.2, color="#616161")),
                                 hovertext=[f"{n}.{p}" for n, p in sorted(ports)], hoverinfo="text"))
    for name, color in (("positive score", POSITIVE), ("negative score", NEGATIVE)):
        fig.add_trace(go.Scatter(x=[None], y=[None], mode="lines", name=name, line=dict(width=4, color=color)))
    # In the graph's order: a set's order changes from one process to the next (string hashing), and with
    # it the figure in results.json of two identical runs.
    nodes = list(dict.fromkeys(["input", *circuit.nodes(), "logits"]))
    for kind, style in NODE_STYLE.items():
        names = [n for n in nodes if _kind(n) == kind]
        if not names:
            continue
        xy = [_node_xy(circuit, n) for n in names]
        fig.add_trace(go.Scatter(
            x=[p[0] for p in xy], y=[p[1] for p in xy], mode="markers+text", text=names,
            textposition="middle right", name={"head": "attention head", "mlp": "MLP"}.get(kind, kind),
            marker=dict(color=style["color"], symbol=style["symbol"], size=style["size"],
                        line=dict(width=1, color="white")),
            hovertext=names, hoverinfo="text",
        ))
    g = circuit.graph
    extra = f" (strongest {max_edges} drawn)" if len(edges) > max_edges else ""
    fig.update_layout(
        title=title or f"Circuit: {circuit.n_edges} of {g.n_edges} edges ({circuit.edge_fraction:.1%}){extra}",
        template="plotly_white", height=max(360, 70 * (g.n_layers + 2)), margin=dict(l=60, r=20, t=50, b=40),
        legend=dict(orientation="h", y=-0.08),
    )
    fig.update_xaxes(visible=False, range=[-0.8, g.n_heads + 1.3])
    fig.update_yaxes(title="layer", tickvals=list(range(-1, g.n_layers + 1)),
                     ticktext=["input"] + [str(l) for l in range(g.n_layers)] + ["logits"], zeroline=False)
    return fig


def _kind(name: str) -> str:
    if name in ("input", "logits"):
        return name
    return "mlp" if name.startswith("MLP") else "head"


__all__ = ["circuit_figure"]
