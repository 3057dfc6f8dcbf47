"""The attribution graph's page and notebook display, drawn from ``graph.json`` alone.

Nodes sit by layer (y: tokens at the bottom, logits on top) and token position (x); links are drawn
with width by |weight| and colour by sign (blue adds, red takes away). A slider sets a node
threshold over what the file holds (circuit-tracer's: the fewest features and errors holding that
share of their total influence; tokens and logits always stay). Clicking a node shows its activation, influence, its
strongest incoming and outgoing links, and its top activating contexts from the task's prompts (and
a corpus, where one was given). The drawing is a small script of plain DOM and SVG inlined in the
page (templates/graph/graph.js): nothing is loaded from anywhere, and every string from the file is
set as text, never parsed as HTML.
"""

from __future__ import annotations

import uuid
from functools import lru_cache
from pathlib import Path
from typing import Any

from markupsafe import Markup

from circuitwise.features.graph import AttributionGraph
from circuitwise.reports.html import CSS, environment, render, script_json
from circuitwise.schema.graph import GraphFile, GraphNode


@lru_cache(maxsize=1)
def _script() -> str:
    env = environment()
    assert env.loader is not None  # html.environment() always has its package loader
    source, _, _ = env.loader.get_source(env, "graph/graph.js")
    return source.replace("</script", "<\\/script")


def graph_data(graph: GraphFile) -> dict[str, Any]:
    """What the page's script draws: the nodes in order, links as ``[source, target, weight]`` by node index."""
    index = {n.id: i for i, n in enumerate(graph.nodes)}
    nodes = [{"id": n.id, "kind": n.kind, "layer": n.layer, "pos": n.pos, "feature": n.feature, "token": n.token,
              "activation": n.activation, "influence": n.influence, "prob": n.prob, "target": n.target,
              "label": n.label, "contexts": [c.to_json() for c in n.contexts]} for n in graph.nodes]
    # A link whose head loadings were computed carries them as a fourth element: {heads: [[head, loading] …],
    # residual}.
    edges = [[index[e.source], index[e.target], e.weight]
             + ([{"heads": [[h.head, h.loading] for h in e.heads], "residual": e.residual}] if e.heads is not None
                else []) for e in graph.edges]
    c = graph.checks
    ablations = {} if c is None else {index[a.node]: {"actual": a.actual, "predicted": a.predicted,
                                                      "predicted_kept": a.predicted_kept,
                                                      "direct": a.predicted_direct} for a in c.interventions}
    return {"n_layers": graph.model.n_layers, "tokens": list(graph.tokens), "nodes": nodes, "edges": edges,
            "ablations": {str(k): v for k, v in ablations.items()}, "target": c.target if c is not None else ""}


def graph_view(graph: GraphFile, root: str | None = None) -> str:
    """The interactive graph (controls, drawing, node panel) as one HTML block with its script."""
    root = root or f"cwg{uuid.uuid4().hex[:8]}"
    # The file holds what pruning kept: all of it is shown at first, the slider prunes further.
    threshold = "1.00"
    return render("graph/view.html", root=root, root_json=script_json(root), threshold=threshold,
                  js=Markup(_script()), data=script_json(graph_data(graph)))


def _feature_name(n: GraphNode) -> str:
    return f"L{n.layer} #{n.feature}"


def _context_text(n: GraphNode) -> str:
    if not n.contexts:
        return ""
    c = n.contexts[0]
    left = "".join(c.tokens[max(0, c.pos - 6): c.pos])
    return f"{left}[{c.tokens[c.pos]}] ({c.source}, {c.activation:.3g})"


def _facts(graph: GraphFile) -> list[list[str]]:
    kinds = {k: sum(n.kind == k for n in graph.nodes) for k in ("feature", "error", "embedding", "logit")}
    t = graph.transcoders
    rows = [["model", f"{graph.model.name} ({graph.model.n_layers} layers)"],
            ["prompt", graph.prompt],
            ["target", f"{graph.target.mode}: {graph.target.description}" if graph.target.description
             else graph.target.mode],
            ["transcoders", f"{t.source} ({t.kind}{', ' + t.activation if t.activation else ''})"],
            ["nodes", f"{kinds['feature']} features, {kinds['error']} error nodes, {kinds['embedding']} tokens, "
                      f"{kinds['logit']} logits; {len(graph.edges)} links"],
            ["pruning", f"node threshold {graph.settings.node_threshold:g}, edge threshold "
                        f"{graph.settings.edge_threshold:g}"]]
    if graph.task:
        rows.insert(1, ["task", graph.task])
    s = graph.scores
    if s is not None:
        if s.replacement is not None:
            rows.append(["replacement score", f"{s.replacement:.3f} (circuit-tracer's: 1 when no influence on "
                                              "the targets passes through an error node)"])
        if s.completeness is not None:
            rows.append(["completeness score", f"{s.completeness:.3f} (circuit-tracer's: 1 when no node's "
                                               "inputs come from error nodes)"])
    return rows


def _num(x: float | None, digits: int = 3) -> str:
    return "—" if x is None else f"{x:+.{digits}f}"


def _checks(graph: GraphFile) -> dict[str, Any] | None:
    """The checks' tables: the ablations (actual against predicted) and the heads carrying the links."""
    c = graph.checks
    if c is None:
        return None
    names = {n.id: n for n in graph.nodes}
    ablations = [[_feature_name(names[a.node]) + f" @{names[a.node].pos}", _num(a.actual), _num(a.predicted),
                  _num(a.predicted_kept), _num(a.predicted_direct), _num(a.actual_frozen_norms)]
                 for a in c.interventions]
    facts = []
    if c.faithfulness is not None:
        facts.append(["faithfulness", f"{c.faithfulness:.3f}: the kept features alone {c.graph_metric:.3f}, all "
                                      f"features {c.all_metric:.3f}, none {c.none_metric:.3f} (the unfrozen model; "
                                      "(graph − none) / (all − none), as edge circuits are scored)"])
    if c.sign_agreement is not None:
        facts.append(["sign agreement", f"{c.sign_agreement:.0%} of the ablations moved the target the way the graph "
                                        "predicts"])
    if c.circuit is not None:
        facts.append(["edge circuit", f"{c.circuit.source}: heads {', '.join(c.circuit.heads) or 'none'}"])
    heads = [[h.head, f"{h.loading:+.3f}", f"{h.abs_loading:.3f}", str(h.links)]
             + ([] if c.circuit is None else ["yes" if h.in_circuit else "no"]) for h in c.heads[:12]]
    return {"target": c.target, "facts": facts, "ablations": ablations, "heads": heads,
            "links": c.links_analysed, "circuit": c.circuit is not None, "notes": c.notes}


def graph_summary(graph: GraphFile, top: int = 15) -> str:
    """The graph's facts, its most influential features and its checks as tables (readable without the script)."""
    feats = sorted((n for n in graph.nodes if n.kind == "feature"), key=lambda n: -(n.influence or 0.0))[:top]
    rows = [[_feature_name(n), f"{n.pos} ({graph.tokens[n.pos]!r})",
             "—" if n.activation is None else f"{n.activation:.3f}",
             "—" if n.influence is None else f"{n.influence:.3f}", _context_text(n)] for n in feats]
    return render("graph/summary.html", graph=graph, facts=_facts(graph), top=rows, checks=_checks(graph))


def _title(graph: GraphFile) -> tuple[str, str]:
    what = graph.task or graph.prompt
    title = f"Attribution graph — {what if len(what) <= 60 else what[:57] + '…'}"
    return title, f"{graph.model.name} · {len(graph.tokens)} tokens · target: {graph.target.mode}"


def graph_page(graph: GraphFile) -> str:
    """graph.html: the whole page, self-contained."""
    title, subtitle = _title(graph)
    return render("graph/page.html", title=title, subtitle=subtitle, css=Markup(CSS),
                  view=Markup(graph_view(graph, "cwg-graph")), summary=Markup(graph_summary(graph)))


def write_graph_page(graph: GraphFile, path: str | Path) -> Path:
    """Write :func:`graph_page` to ``path`` (a folder: ``graph.html`` in it), atomically."""
    from circuitwise.runfolder import atomic_write_text

    path = Path(path)
    if path.is_dir():
        path = path / "graph.html"
    return atomic_write_text(path, graph_page(graph))


def engine_graph_output(graph: AttributionGraph) -> str:
    """The notebook output of the engine's graph. An unpruned one (no influence yet) is pruned first
    with prune_graph's defaults, and the output says so: a whole graph's N² links would make an
    output no browser draws."""
    from circuitwise.features.export import graph_file
    from circuitwise.features.prune import prune_graph

    notes: list[str] = []
    if graph.influence is None:
        graph = prune_graph(graph)
        notes.append(f"pruned for display with prune_graph's defaults (node threshold "
                     f"{graph.meta['node_threshold']:g}, edge threshold {graph.meta['edge_threshold']:g}); "
                     "prune it yourself for other thresholds")
    return graph_output(graph_file(graph, notes=notes))


def graph_output(graph: GraphFile) -> str:
    """The notebook output: the interactive graph and the summary, styles scoped to the output."""
    from circuitwise.reports.display import fragment

    title, subtitle = _title(graph)
    return fragment(title, [("", graph_view(graph)), ("Summary", graph_summary(graph))], subtitle)


__all__ = ["engine_graph_output", "graph_data", "graph_output", "graph_page", "graph_summary", "graph_view",
           "write_graph_page"]
