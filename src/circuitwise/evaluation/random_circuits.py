"""Random *connected* circuits: the null model a circuit's faithfulness is compared with.

A uniformly random set of a circuit's size is almost never connected: at GPT-2 small's 32,491 edges
a random 50-edge set has essentially no input→logits path, prunes to the empty circuit and scores 0,
so "better than random" said nothing (issue 23: every random 6-edge circuit scored 0 and p was only
the floor 1/(k+1)). The null here is a circuit of the same number of edges in which every edge lies
on an input→logits path *within the circuit* — the property a discovered, pruned circuit has.

How one is drawn (every choice uniform among its options):

1. a random walk from the input through random out-edges until it reaches the logits (redrawn if it
   is longer than the size allows; the direct input→logits edge if no short walk turns up);
2. then, until the size is reached, a walk from a random node of the circuit (the input included)
   through random out-edges until it reaches a node already in the circuit (the logits included).
   Its start is reachable from the input and its end reaches the logits, so every edge added lies
   on an input→logits path and every earlier edge stays on one; a walk longer than the edges left
   is redrawn, and when none fits, a random unused edge between two circuit nodes is added.

This is one connected null among several possible (it favours short paths, as discovered circuits
do); the report names it. The node and edge arithmetic follows :mod:`circuitwise.circuits.prune`.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import torch

from circuitwise.circuits.graph import Graph
from circuitwise.circuits.prune import receiver_nodes
from circuitwise.errors import ConfigError

# A walk or a whole sample redrawn this often without fitting falls back (walk) or gives up (sample).
_TRIES = 64
_RESTARTS = 20


@dataclass(frozen=True)
class _Edges:
    """Each sender node's out-edges and each edge's target node (the logits are node ``S``)."""

    out: list[list[int]]
    target: list[int]
    logits: int
    direct: int  # the input→logits edge


def _edges(graph: Graph) -> _Edges:
    s_idx, r_idx = graph.edge_index
    t_idx = receiver_nodes(graph)[r_idx]
    S = len(graph.senders)
    out: list[list[int]] = [[] for _ in range(S)]
    for e, s in enumerate(s_idx.tolist()):
        out[s].append(e)
    target = t_idx.tolist()
    direct = next(e for e in out[0] if target[e] == S)
    return _Edges(out, target, S, direct)


def _walk(ed: _Edges, start: int, stop: set[int], rng: random.Random) -> list[int]:
    """Edges of a random walk from ``start`` until it enters a node of ``stop`` (the graph is a DAG
    whose sinks are the logits, so every walk ends)."""
    path, u = [], start
    while True:
        e = rng.choice(ed.out[u])
        path.append(e)
        u = ed.target[e]
        if u in stop:
            return path


def _one(ed: _Edges, size: int, rng: random.Random) -> list[int] | None:
    chosen: set[int] = set()
    for _ in range(_TRIES):
        path = _walk(ed, 0, {ed.logits}, rng)
        if len(path) <= size:
            break
    else:
        path = [ed.direct]
    chosen.update(path)
    nodes = {0, ed.logits, *(ed.target[e] for e in path)}
    senders = sorted(nodes - {ed.logits})
    while len(chosen) < size:
        left = size - len(chosen)
        for _ in range(_TRIES):
            path = _walk(ed, rng.choice(senders), nodes, rng)
            if len(path) <= left and not (len(path) == 1 and path[0] in chosen):
                break
        else:
            spare = [e for u in senders for e in ed.out[u] if ed.target[e] in nodes and e not in chosen]
            if not spare:
                return None  # every edge among these nodes is used and a new node needs two: start over
            path = [rng.choice(spare)]
        chosen.update(path)
        for e in path[:-1]:  # the walk's new nodes: every edge but the last ends in one
            nodes.add(ed.target[e])
            senders.append(ed.target[e])
    return sorted(chosen)


def connected_masks(graph: Graph, size: int, samples: int, generator: torch.Generator) -> torch.Tensor:
    """``[samples, edge]`` bool: random circuits of exactly ``size`` edges, each edge on an
    input→logits path within its circuit (module docstring). ``generator`` seeds them."""
    E = graph.n_edges
    if size < 1:
        raise ConfigError(f"A random connected circuit needs at least one edge, got {size}.")
    masks = torch.zeros(samples, E, dtype=torch.bool)
    if size >= E:
        masks[:] = True
        return masks
    rng = random.Random(int(torch.randint(0, 2**62, (1,), generator=generator)))
    ed = _edges(graph)
    for i in range(samples):
        for _ in range(_RESTARTS):
            edges = _one(ed, size, rng)
            if edges is not None:
                masks[i, edges] = True
                break
        else:
            raise ConfigError(f"Could not draw a connected circuit of {size} edges in this graph after "
                              f"{_RESTARTS} tries; compare with fewer random samples (--random-samples 0).")
    return masks


__all__ = ["connected_masks"]
