"""Pruning dangling nodes: keep only edges on some input → … → logits path of the circuit.

An edge whose sender has no circuit path from the input carries the corrupted value anyway
(all of that sender's inputs are corrupted, so its output is its corrupted output), and an edge
into a node with no circuit path to the logits changes nothing the metric reads. Removing them
leaves exact (corrupted-run) faithfulness unchanged, which the tests check. Under mean ablation
the first kind is only approximately inert.
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
        alive = torch.zeros(K, S + 1, dtype=torch.bool)
        alive[:, S] = True
        for n in range(S - 1, -1, -1):
            alive[:, n] = (node_adj[:, n] & alive).any(1)
        out[c0 : c0 + K] = k & reach[:, s_idx] & alive[:, t_idx]
    return out


__all__ = ["prune_dangling", "prune_rows", "receiver_nodes"]
