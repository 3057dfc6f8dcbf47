"""Pruning by influence, and the replacement and completeness scores (circuit-tracer's definitions).

- Normalised adjacency: ``|A|`` with each row divided by its sum (a receiver's inputs as shares).
- Influence of a node on the targets: ``w · (Â + Â² + Â³ + …)`` where ``w`` weights the target rows
  (:attr:`~circuitwise.features.graph.AttributionGraph.target_weights`); the graph is acyclic, so
  the series ends after at most its depth.
- Nodes are kept in order of influence until ``node_threshold`` of the total is covered (tokens and
  targets always kept); among the kept nodes' edges, an edge's score is its normalised weight times its
  receiver's influence (plus its target weight), and edges are kept up to ``edge_threshold`` of the
  total score. Then features and errors left without a kept outgoing edge, and features without a
  kept incoming one, are dropped, until nothing changes.
- Replacement score: the share of the tokens' and errors' influence that is the tokens' (1 when the
  targets are explained from the tokens through features alone).
- Completeness score: the share of each node's inputs not from error nodes, averaged with the nodes'
  influence (plus target weight) as weights.
"""

from __future__ import annotations

import torch

from circuitwise.errors import ConfigError
from circuitwise.features.graph import AttributionGraph

# Lists in a graph's meta with one entry per node (task graphs), kept in step with the nodes.
PER_NODE_META = ("node_counts", "position_labels")


def normalize(adjacency: torch.Tensor) -> torch.Tensor:
    """``|A|`` with each non-zero row summing to 1 (float64)."""
    a = adjacency.abs().double()
    return a / a.sum(1, keepdim=True).clamp(min=1e-10)


def influence(norm_adj: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """``weights · (Â + Â² + …)`` for a nilpotent (acyclic) ``Â``."""
    step = weights @ norm_adj
    total = step.clone()
    for _ in range(norm_adj.shape[0]):
        if not bool(step.any()):
            return total
        step = step @ norm_adj
        total += step
    raise ConfigError("the graph has a cycle (influence does not converge): an adjacency from attribution_graph "
                      "never does; check a hand-built one")


def _row_weights(graph: AttributionGraph) -> torch.Tensor:
    w = torch.zeros(graph.n_nodes, dtype=torch.float64)
    w[graph.target_nodes] = graph.target_weights
    return w


def node_influence(graph: AttributionGraph) -> torch.Tensor:
    """Every node's influence on the (weighted) targets ``[N]``."""
    return influence(normalize(graph.adjacency), _row_weights(graph))


def _threshold(scores: torch.Tensor, keep: float) -> float:
    """The score above which the top scores make up ``keep`` of the total."""
    s = scores.flatten().sort(descending=True).values
    total = float(s.sum())
    if total <= 0:
        return float("inf")
    cum = s.cumsum(0) / total
    i = min(int(torch.searchsorted(cum, torch.tensor(keep, dtype=cum.dtype))), len(s) - 1)
    return float(s[i])


def graph_scores(graph: AttributionGraph, adjacency: torch.Tensor | None = None) -> tuple[float, float]:
    """``(replacement, completeness)`` of the graph (or of ``adjacency`` over its nodes)."""
    a = normalize(graph.adjacency if adjacency is None else adjacency)
    w = _row_weights(graph)
    inf = influence(a, w)
    tok = float(inf[graph.token_nodes].sum())
    err = float(inf[graph.errors].sum())
    replacement = tok / (tok + err) if tok + err > 0 else float("nan")
    non_error = 1 - a[:, graph.errors].sum(1)
    out = inf + w
    completeness = float((non_error * out).sum() / out.sum()) if float(out.sum()) > 0 else float("nan")
    return replacement, completeness


def prune_masks(graph: AttributionGraph, node_threshold: float = 0.8,
                edge_threshold: float = 0.98) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(node_mask [N], edge_mask [N, N], influence [N])`` (see the module docstring)."""
    for name, v in (("node_threshold", node_threshold), ("edge_threshold", edge_threshold)):
        if not 0.0 <= v <= 1.0:
            raise ConfigError(f"{name} is a share of the total influence, between 0 and 1; got {v}")
    w = _row_weights(graph)
    inf = node_influence(graph)
    keep = inf >= _threshold(inf, node_threshold)
    always = torch.zeros_like(keep)
    always[graph.token_nodes.start:] = True
    keep |= always
    pruned = graph.adjacency.clone()
    pruned[~keep] = 0
    pruned[:, ~keep] = 0
    na = normalize(pruned)
    edge_score = na * (influence(na, w) + w)[:, None]
    edges = (edge_score >= _threshold(edge_score[edge_score > 0], edge_threshold)) & (pruned != 0)
    senders = torch.zeros_like(keep)
    senders[: graph.token_nodes.start] = True  # features and errors need a kept outgoing edge
    feats = torch.zeros_like(keep)
    feats[graph.features] = True  # features also need a kept incoming edge
    while True:
        edges[~keep] = False
        edges[:, ~keep] = False
        new = keep & ~(senders & ~edges.any(0)) & ~(feats & ~edges.any(1))
        if bool((new == keep).all()):
            return keep, edges, inf
        keep = new


def prune_graph(graph: AttributionGraph, node_threshold: float = 0.8, edge_threshold: float = 0.98) -> AttributionGraph:
    """The graph restricted to its influential nodes and edges, with ``influence`` and ``scores`` filled.

    ``scores``: ``replacement`` and ``completeness`` of the full graph, ``pruned_replacement`` and
    ``pruned_completeness`` of the kept edges alone. ``bias`` is the full graph's (a pruned row no
    longer sums to its value; the gap is what pruning left out).
    """
    keep, edges, inf = prune_masks(graph, node_threshold, edge_threshold)
    rep, comp = graph_scores(graph)
    kept_adj = torch.where(edges, graph.adjacency, torch.zeros_like(graph.adjacency))
    idx = keep.nonzero().flatten()
    sub = graph.with_(nodes=tuple(graph.nodes[i] for i in idx.tolist()),
                      adjacency=kept_adj[idx][:, idx].contiguous(), bias=graph.bias[idx].clone(),
                      influence=inf[idx].float())
    prep, pcomp = graph_scores(sub)
    meta = dict(graph.meta, node_threshold=node_threshold, edge_threshold=edge_threshold,
                n_nodes_before=graph.n_nodes, n_edges_before=int((graph.adjacency != 0).sum()))
    for key in PER_NODE_META:  # a task graph's per-node lists follow the kept nodes
        if key in meta:
            meta[key] = [meta[key][i] for i in idx.tolist()]
    return sub.with_(scores={"replacement": rep, "completeness": comp, "pruned_replacement": prep,
                             "pruned_completeness": pcomp}, meta=meta)


__all__ = ["PER_NODE_META", "graph_scores", "influence", "node_influence", "normalize", "prune_graph", "prune_masks"]
