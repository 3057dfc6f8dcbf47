"""Node-level circuits from edge scores: which heads and MLPs matter, as an edge circuit.

A node is a sender other than the input (each head ``L{l}H{h}``, each ``MLP{l}``); its score is
:meth:`EdgeScores.node_scores`, the sum of its outgoing edges' scores (for the gradient methods exactly
the node's own attribution). Nodes are ranked by that score (``by`` abs|signed, as edges are), and a
selection keeps some of them: the ``n`` strongest (``top-n``), those scoring at least a threshold
(``threshold``), or the fewest strongest whose circuit reaches a target faithfulness (``target``).

The circuit of a node set is an *edge* circuit: every edge out of the input or a kept node, pruned of
dangling edges (:mod:`circuitwise.circuits.prune`). Patching it is patching the node circuit (MIB's
node level, :func:`circuitwise.circuits.neurons.unit_patched_metrics`, tested equal): a dropped node's
every outgoing edge reads the corrupted run, so each reader sees its corrupted output. Pruning then
leaves the edges from the input or a kept node into a kept node or the logits: a dropped node reaches
nothing, so edges into it change nothing the metric reads — except under a post-attention norm (Gemma
2/3, OLMo 2), where a dropped head's live output still sets the scale of its layer's kept heads'
writes, and the edges into it stay (pruning counts such a layer's heads as one node). The input is
always kept (a circuit without it reads nothing of the clean prompt). So circuit.json, ``evaluate``, the report and
the explorer read a node circuit as any other; its ``selection`` records ``level: "node"`` and the
kept nodes.
"""

from __future__ import annotations

from typing import Any, Literal

import torch

from circuitwise.circuits.circuit import Circuit
from circuitwise.circuits.graph import Graph
from circuitwise.circuits.patch import Ablation, check_ablation
from circuitwise.circuits.prune import prune_rows
from circuitwise.circuits.scores import EdgeScores, Progress, no_progress, prepare, strongest_first
from circuitwise.circuits.select import SELECTIONS, Rank, _check_by, _finish, grow
from circuitwise.errors import ConfigError
from circuitwise.tasks.tokenize import TokenizedTask

#: What a circuit is chosen as: edges, or whole nodes (heads and MLPs) as their edge circuit.
CircuitLevel = Literal["edge", "node"]
LEVELS: tuple[str, ...] = ("edge", "node")
NEURON_LEVEL = ("Neuron-level circuits (single output dimensions of nodes) are MIB's and are not chosen here: "
                "run `circuitwise mib --level neuron`, or in Python circuitwise.circuits.neurons "
                "(score_neurons, top_units(scores, n, 'neuron'), unit_faithfulness).")


def check_level(level: str) -> CircuitLevel:
    """``edge`` or ``node``; ``neuron`` is refused with where to find it (before any work)."""
    if level == "neuron":
        raise ConfigError(NEURON_LEVEL)
    if level not in LEVELS:
        raise ConfigError(f"Unknown circuit level {level!r}. Choose one of: {', '.join(LEVELS)}.")
    return level  # type: ignore[return-value]


def node_scores(scores: EdgeScores) -> torch.Tensor:
    """``[sender]``: each node's score (the sum of its outgoing edges'); the input's is NaN (never ranked)."""
    out = scores.node_scores().scores.clone()
    out[0] = float("nan")
    return out


def node_order(scores: EdgeScores, by: Rank = "abs") -> torch.Tensor:
    """Sender indices of the nodes, strongest first (the input and unscored nodes left out)."""
    values = node_scores(scores)
    order = strongest_first(values, by)
    return order[~values[order].isnan()]


def node_edge_rows(graph: Graph, nodes: torch.Tensor, prune: bool = True) -> torch.Tensor:
    """``[K, edge]`` bool: the edge circuit of each node set ``nodes`` ``[K, sender]`` (bool; the input is
    always in): every edge out of the input or a kept node, pruned of dangling edges unless ``prune`` is
    off (module docstring)."""
    nodes = nodes.bool().cpu()
    if nodes.dim() == 1:
        nodes = nodes[None]
    S = len(graph.senders)
    if nodes.shape[1] != S:
        raise ConfigError(f"A node set has {nodes.shape[1]} entries but the graph has {S} senders.")
    live = nodes.clone()
    live[:, 0] = True
    keep = live[:, graph.edge_index[0]]
    return prune_rows(graph, keep) if prune else keep


def top_nodes(scores: EdgeScores, n: int, by: Rank = "abs") -> torch.Tensor:
    """``[sender]`` bool: the ``n`` strongest nodes (the input not among them)."""
    keep = torch.zeros(len(scores.graph.senders), dtype=torch.bool)
    keep[node_order(scores, by)[:n]] = True
    return keep


def random_node_rows(graph: Graph, size: int, samples: int, generator: torch.Generator) -> torch.Tensor:
    """``[samples, sender]`` bool: node sets of ``size`` nodes drawn uniformly (the input not among them)."""
    candidates = len(graph.senders) - 1
    out = torch.zeros(samples, len(graph.senders), dtype=torch.bool)
    for i in range(samples):
        out[i, 1 + torch.randperm(candidates, generator=generator)[:min(size, candidates)]] = True
    return out


def kept_nodes(circuit: Circuit) -> torch.Tensor | None:
    """``[sender]`` bool: a node-level circuit's kept nodes (its selection's ``nodes``), None for an edge circuit."""
    sel = circuit.selection
    if sel.get("level") != "node":
        return None
    names = sel.get("nodes")
    index = {s.name: i for i, s in enumerate(circuit.graph.senders)}
    if not isinstance(names, list) or any(n not in index or n == "input" for n in names):
        raise ConfigError(f"The circuit's selection is node-level but its \"nodes\" {names!r} are not nodes of "
                          "this model's graph (L{l}H{h}, MLP{l}). Re-create it with "
                          "`circuitwise circuit --level node`.")
    keep = torch.zeros(len(circuit.graph.senders), dtype=torch.bool)
    keep[[index[n] for n in names]] = True
    return keep


def reselect_nodes(circuit: Circuit, scores: torch.Tensor) -> tuple[torch.Tensor, str]:
    """``[R, edge]`` bool: a node circuit's selection rule applied to each row of edge scores ``[R, edge]``
    (edge stability's resamples): its number of nodes, or its threshold, on each row's node scores."""
    sel, g = circuit.selection, circuit.graph
    by = sel.get("by") or "abs"
    values = g.to_dense(scores.float(), fill=0.0).sum(-1)  # [R, sender]: a node's outgoing edges
    values[:, 0] = float("nan")
    key = torch.nan_to_num(values.abs() if by == "abs" else values, nan=-float("inf"))
    what = "|node score|" if by == "abs" else "node score"
    if sel.get("kind") == "threshold" and sel.get("threshold") is not None:
        nodes = key >= float(sel["threshold"])
        rule = f"the nodes with {what} ≥ {sel['threshold']:g}"
    else:
        top = len(sel.get("nodes") or [])
        nodes = torch.zeros_like(key, dtype=torch.bool)
        nodes.scatter_(1, key.topk(min(top, key.shape[1] - 1), dim=1).indices, True)
        rule = f"the top {top} nodes by {what}" + (" (the target circuit's size, held)" if sel.get("kind") == "target"
                                                   else "")
    prune = bool(sel.get("pruned", True))
    return node_edge_rows(g, nodes, prune), rule + ", their edge circuit" + (", pruned" if prune else "")


def _node_circuit(scores: EdgeScores, nodes: torch.Tensor, prune: bool, model: Any, tok: TokenizedTask | None,
                  selection: dict[str, Any]) -> Circuit:
    values = node_scores(scores)
    names = [s.name for s, k in zip(scores.graph.senders, nodes.tolist(), strict=True) if k]
    keep = node_edge_rows(scores.graph, nodes, prune=False)[0]
    sel = {**selection, "level": "node", "n_nodes": len(names), "nodes": names,
           "node_scores": {n: float(values[i]) for i, n in enumerate(s.name for s in scores.graph.senders)
                           if bool(nodes[i])}}
    return _finish(scores, keep, prune, model, tok, sel)


def select_nodes_top_n(scores: EdgeScores, *, n: int | None = None, by: Rank = "abs", prune: bool = True,
                       model: Any = None, tok: TokenizedTask | None = None, **_: Any) -> Circuit:
    if n is None or isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ConfigError(f"top-n selection at node level needs a positive number of nodes n, got {n!r}.")
    nodes = top_nodes(scores, n, _check_by(by))
    return _node_circuit(scores, nodes, prune, model, tok,
                         {"kind": "top-n", "n": n, "by": by, "available": len(scores.graph.senders) - 1})


def select_nodes_threshold(scores: EdgeScores, *, threshold: float | None = None, by: Rank = "abs",
                           prune: bool = True, model: Any = None, tok: TokenizedTask | None = None,
                           **_: Any) -> Circuit:
    if threshold is None or not isinstance(threshold, (int, float)) or threshold != threshold:
        raise ConfigError(f"threshold selection needs a number (a node-score cut-off), got {threshold!r}.")
    values = node_scores(scores)
    key = values.abs() if _check_by(by) == "abs" else values
    nodes = torch.nan_to_num(key, nan=-float("inf")) >= threshold
    return _node_circuit(scores, nodes, prune, model, tok, {"kind": "threshold", "threshold": threshold, "by": by})


def select_nodes_target(scores: EdgeScores, *, model: Any = None, tok: TokenizedTask | None = None,
                        target: float | None = 0.9, by: Rank = "abs", prune: bool = True,
                        ablation: Ablation = "corrupted", batch_size: int | None = None,
                        progress: Progress = no_progress, check: bool = True, max_sweep: int = 32,
                        **_: Any) -> Circuit:
    if model is None or tok is None:
        raise ConfigError("target selection measures faithfulness, so it needs the model and the task.")
    if target is None or not isinstance(target, (int, float)) or not 0 < target <= 1:
        raise ConfigError(f"The target faithfulness must be in (0, 1], got {target!r} (0.9 is usual).")
    check_ablation(ablation)
    order = node_order(scores, _check_by(by))
    if len(order) == 0:
        raise ConfigError("No node has a score; score the edges before selecting a circuit.")
    prep = prepare(model, tok, scores.metric, check=check, batch_size=batch_size)
    S = len(scores.graph.senders)

    def nodes_of(k: int) -> torch.Tensor:
        keep = torch.zeros(S, dtype=torch.bool)
        keep[order[:k]] = True
        return keep

    hi, trace = grow(prep, len(order), lambda k: node_edge_rows(scores.graph, nodes_of(k), prune)[0], target,
                     ablation=ablation, progress=progress, max_sweep=max_sweep)
    steps = [{"top": k, "edges": trace[k][0], "faithfulness": trace[k][1]} for k in sorted(trace)]
    return _node_circuit(scores, nodes_of(hi), prune, model, tok, {
        "kind": "target", "target": target, "by": by, "ablation": ablation, "reached": trace[hi][1] >= target,
        "faithfulness": trace[hi][1], "top": hi, "trace": steps,
    })


NODE_SELECTIONS = {"top-n": select_nodes_top_n, "threshold": select_nodes_threshold, "target": select_nodes_target}


def select_nodes(scores: EdgeScores, selection: str = "target", **options: Any) -> Circuit:
    """Choose a node-level circuit from ``scores`` (module docstring); ``n`` counts nodes for ``top-n``."""
    if selection not in SELECTIONS:
        raise ConfigError(f"Unknown selection {selection!r}. Choose one of: {', '.join(SELECTIONS)}.")
    return NODE_SELECTIONS[selection](scores, **options)


__all__ = ["CircuitLevel", "LEVELS", "NEURON_LEVEL", "check_level", "kept_nodes", "node_edge_rows", "node_order",
           "node_scores", "random_node_rows", "reselect_nodes", "select_nodes", "select_nodes_target",
           "select_nodes_threshold", "select_nodes_top_n", "top_nodes"]
