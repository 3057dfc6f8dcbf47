"""Pruning dangling nodes: keep only edges on some input → … → logits path of the circuit.

An edge whose sender has no circuit path from the input carries the corrupted value anyway
(all of that sender's inputs are corrupted, so its output is its corrupted output), and an edge
into a node with no circuit path to the logits changes nothing the metric reads. Removing them
leaves exact (corrupted-run) faithfulness unchanged, which the tests check on every family. Under
mean ablation the first kind is only approximately inert. A post-attention norm (Gemma 2/3, OLMo 2)
scales each head's write by the whole layer's live output, so its heads count as one node: an edge
into any of them matters when one of them reaches the logits, and one out of any of them when one
of them is reached from the input.
"""

from __future__ import annotations

import torch

from circuitwise.circuits.graph import Graph


def receiver_nodes(graph: Graph) -> torch.Tensor:
    """For each receiver, the node it belongs to, as a sender index (the logits are ``len(senders)``)."""
    out = []
    for rec in graph.receivers:
        if rec.kind == "logits":
            out.append(len(graph.senders))
        elif rec.kind == "mlp":
            out.append(graph.mlp_sender(rec.layer))
        else:
            out.append(graph.head_senders(rec.layer).start + int(rec.head))  # type: ignore[arg-type]
    return torch.tensor(out)


def prune_dangling(graph: Graph, keep: torch.Tensor) -> torch.Tensor:
    """``keep`` ``[edge]`` bool without edges off every input→logits path."""
    return prune_rows(graph, keep.bool().cpu()[None])[0]


# Rows pruned together: each holds a [sender, node] adjacency (157 × 158 bools at GPT-2 small).
_PRUNE_CHUNK = 512


def prune_rows(graph: Graph, keep: torch.Tensor) -> torch.Tensor:
    """:func:`prune_dangling` of every row of ``keep`` ``[K, edge]`` at once (the sweeps over
    nodes are the slow part, so they run once for a chunk of rows)."""
    S = len(graph.senders)
    s_idx, r_idx = graph.edge_index
    t_idx = receiver_nodes(graph)[r_idx]
    keep = keep.bool().cpu()
    out = torch.empty_like(keep)
    # Heads under one post-attention norm are one node here: each one's write is scaled by the
    # layer's live total, so a head off every path still moves the writes of one on a path.
    layers = [graph.head_senders(l) for l in range(graph.n_layers)] if graph.shared_head_norm else []
    last_head = {h.stop - 1: h for h in layers}
    first_head = {h.start: h for h in layers}
    for c0 in range(0, keep.shape[0], _PRUNE_CHUNK):
        k = keep[c0 : c0 + _PRUNE_CHUNK]
        K = k.shape[0]
        node_adj = torch.zeros(K, S, S + 1, dtype=torch.bool)
        rows, edges = k.nonzero(as_tuple=True)
        node_adj[rows, s_idx[edges], t_idx[edges]] = True
        reach = torch.zeros(K, S + 1, dtype=torch.bool)
        reach[:, 0] = True
        for n in range(1, S + 1):  # senders are in topological order; the logits come last
            reach[:, n] = (node_adj[:, :, n] & reach[:, :S]).any(1)
            if n in last_head:
                _join(reach, last_head[n])
        alive = torch.zeros(K, S + 1, dtype=torch.bool)
        alive[:, S] = True
        for n in range(S - 1, -1, -1):
            alive[:, n] = (node_adj[:, n] & alive).any(1)
            if n in first_head:
                _join(alive, first_head[n])
        out[c0 : c0 + K] = k & reach[:, s_idx] & alive[:, t_idx]
    return out


def _join(flags: torch.Tensor, heads: slice) -> None:
    """Every head of the layer gets the flag when one of them has it."""
    flags[:, heads] = flags[:, heads].any(1, keepdim=True)


def one_pass_prune(graph: Graph, keep: torch.Tensor) -> torch.Tensor:
    """``keep`` ``[K, edge]`` after one pass of the prune in hannamw/EAP-IG at 7af394a, the commit MIB's
    circuit track pins: nodes without a kept incoming or outgoing edge are dropped (the input always
    has "incoming" ones, the logits always stay), then the edges of dropped nodes, once. Its loop
    compares the nodes before the edges are dropped, so it stops after that first pass (fixed upstream
    in 55a2be2): an edge whose far end lost its last edge in that pass is still counted. MIB prints
    this count (``weighted_edge_count``); its evaluation then patches the dangling edges like any other,
    which changes no metric, so only the count differs from :func:`prune_rows`.
    """
    S = len(graph.senders)
    s_idx, r_idx = graph.edge_index
    t_idx = receiver_nodes(graph)[r_idx]
    keep = keep.bool().cpu()
    K = keep.shape[0]
    has_out = torch.zeros(K, S + 1, dtype=torch.bool)
    has_in = torch.zeros(K, S + 1, dtype=torch.bool)
    rows, edges = keep.nonzero(as_tuple=True)
    has_out[rows, s_idx[edges]] = True
    has_in[rows, t_idx[edges]] = True
    has_in[:, 0] = True
    alive = has_out & has_in
    alive[:, S] = True
    return keep & alive[:, s_idx] & alive[:, t_idx]


__all__ = ["one_pass_prune", "prune_dangling", "prune_rows", "receiver_nodes"]
