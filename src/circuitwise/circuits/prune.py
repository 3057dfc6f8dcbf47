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
    S = len(graph.senders)
    s_idx, r_idx = graph.edge_index
    t_idx = receiver_nodes(graph)[r_idx]
    k = keep.bool().cpu()
    node_adj = torch.zeros(S, S + 1, dtype=torch.bool)
    node_adj[s_idx[k], t_idx[k]] = True
    reach = torch.zeros(S + 1, dtype=torch.bool)
    reach[0] = True
    for n in range(1, S + 1):  # senders are in topological order; the logits come last
        reach[n] = bool((node_adj[:, n] & reach[:S]).any())
    alive = torch.zeros(S + 1, dtype=torch.bool)
    alive[S] = True
    for n in range(S - 1, -1, -1):
        alive[n] = bool((node_adj[n] & alive).any())
    return k & reach[s_idx] & alive[t_idx]


__all__ = ["prune_dangling", "receiver_nodes"]
