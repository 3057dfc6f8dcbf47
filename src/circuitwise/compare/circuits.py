"""Circuits of two sides: how much they overlap, and whether each one holds on the other side.

Cross-faithfulness runs A's circuit on B's prompts (and model) and B's on A's, each beside
random circuits of the same size in the same stacked forwards, so "the digits circuit keeps
0.92 of the logit difference on words" comes with what chance would keep.
"""

from __future__ import annotations

import json
from typing import Any

import torch

from circuitwise.circuits import Discovery, circuit_figure
from circuitwise.circuits.node_select import kept_nodes, node_edge_rows, random_node_rows
from circuitwise.circuits.scores import Progress, no_progress
from circuitwise.compare.match import match_edges
from circuitwise.compare.schema import CircuitSide, CrossCell, Overlap, floats
from circuitwise.evaluation.baselines import RandomBaseline
from circuitwise.evaluation.curve import random_masks
from circuitwise.evaluation.faithfulness import faithfulness_of_masks
from circuitwise.tasks.tokenize import TokenizedTask

LIST_CAP = 200  # edge lists in compare.json beyond this are cut (the circuit files hold them all)


def same_graph(a: Discovery, b: Discovery) -> bool:
    """Whether both circuits live on one edge graph, edge i of A being edge i of B (cross-evaluation needs it)."""
    return a.circuit.graph.edge_names == b.circuit.graph.edge_names


def circuit_side(found: Discovery, own: CrossCell, file: str, label: str) -> CircuitSide:
    c = found.circuit
    names = c.graph.edge_names
    ids = c.edges.nonzero().flatten().tolist()
    ids.sort(key=lambda i: -abs(float(torch.nan_to_num(found.scores.scores[i], nan=0.0))))
    return CircuitSide(
        method=str(c.method or found.scores.method), n_edges=c.n_edges, total_edges=c.graph.n_edges,
        faithfulness=own.faithfulness, kept_fraction=own.kept_fraction,
        target_reached=c.selection.get("reached") if c.selection.get("kind") == "target" else None,
        edges=[names[i] for i in ids[:LIST_CAP]], scores=floats(found.scores.scores[ids[:LIST_CAP]]), file=file,
        figure=json.loads(circuit_figure(c, title=f"The circuit found on {label}").to_json()),
        nodes=list(c.selection["nodes"]) if c.selection.get("level") == "node" else None,
    )


def _weights(scores: torch.Tensor) -> torch.Tensor:
    w = torch.nan_to_num(scores.double().abs(), nan=0.0)
    total = float(w.sum())
    return w / total if total > 0 else w


def overlap(a: Discovery, b: Discovery) -> Overlap:
    """Edge Jaccard (as found, and of the top-k of each at the smaller size), score-weighted overlap, shared core.

    Edges are matched by name, so two models with different graphs (other depths, no MLPs) are compared
    on the edges they share; an edge of one circuit that the other graph lacks counts as not shared.
    """
    names_a, names_b = a.circuit.graph.edge_names, b.circuit.graph.edge_names
    in_a = {names_a[i] for i in a.circuit.edges.nonzero().flatten().tolist()}
    in_b = {names_b[i] for i in b.circuit.edges.nonzero().flatten().tolist()}
    union = len(in_a | in_b)
    k = min(a.circuit.n_edges, b.circuit.n_edges)
    top_a = {names_a[i] for i in a.scores.ranking("abs")[:k].tolist()}
    top_b = {names_b[i] for i in b.scores.ranking("abs")[:k].tolist()}
    u = len(top_a | top_b)
    m = match_edges(names_a, names_b)
    wa, wb = _weights(a.scores.scores), _weights(b.scores.scores)
    # Σ_e min(w_A, w_B) over shared edges, w = |score| / Σ|score| over each side's whole graph: the share of
    # attribution both sides put on the same edges.
    weighted = float(torch.minimum(wa[m.index_a], wb[m.index_b]).sum()) if m.cells else 0.0
    score_a = {n: float(torch.nan_to_num(a.scores.scores[i].abs(), nan=0.0)) for i, n in enumerate(names_a)}
    score_b = {n: float(torch.nan_to_num(b.scores.scores[i].abs(), nan=0.0)) for i, n in enumerate(names_b)}
    # From A's graph order, not the set's (which changes per process): ties keep one order run to run.
    shared = sorted((n for n in names_a if n in in_a and n in in_b), key=lambda n: -(score_a[n] + score_b[n]))
    nodes_b = set(b.circuit.nodes())
    return Overlap(
        jaccard=len(in_a & in_b) / union if union else 1.0, jaccard_equal_size=len(top_a & top_b) / u if u else 1.0,
        equal_size=k, weighted=weighted, shared_edges=shared[:LIST_CAP],
        shared_nodes=[n for n in a.circuit.nodes() if n in nodes_b],
        only_a=[n for n in names_a if n in in_a and n not in in_b][:LIST_CAP],
        only_b=[n for n in names_b if n in in_b and n not in in_a][:LIST_CAP],
    )


def evaluate_on(model: Any, tok: TokenizedTask, on: str, circuits: dict[str, Discovery], *, samples: int,
                seed: int, batch_size: int | None, progress: Progress = no_progress) -> list[CrossCell]:
    """Each circuit in ``circuits`` (by side) on this side, with ``samples`` random circuits of its size."""
    gen = torch.Generator().manual_seed(seed)
    graph = next(iter(circuits.values())).circuit.graph
    masks, spans = [], {}
    for side, found in circuits.items():
        start = sum(m.shape[0] for m in masks)
        masks.append(found.circuit.edges[None])
        nodes = kept_nodes(found.circuit)
        if nodes is not None:  # a node circuit's null, as `circuit` draws it: node sets of its size, pruned as it was
            rows = random_node_rows(graph, int(nodes.sum()), samples, gen)
            masks.append(node_edge_rows(graph, rows, prune=bool(found.circuit.selection.get("pruned", True))))
        else:
            masks.append(random_masks(graph, found.circuit.n_edges, samples, gen))
        spans[side] = start
    res = faithfulness_of_masks(model, tok, torch.cat(masks), batch_size=batch_size, progress=progress,
                                what=f"circuits on side {on.upper()}")
    out = []
    for side, found in circuits.items():
        i = spans[side]
        own, rnd = res[i], [r.faithfulness for r in res[i + 1 : i + 1 + samples]]
        base = RandomBaseline(own.faithfulness, rnd, own.n_edges)
        finite = [x for x in rnd if x == x]
        out.append(CrossCell(
            circuit=side, on=on, faithfulness=_num(own.faithfulness), kept_fraction=_num(own.kept_fraction),
            n_edges=own.n_edges, random_mean=_num(sum(finite) / len(finite)) if finite else None,
            random_std=_num(base.std) if len(finite) > 1 else None, random_p=base.p_value,
            random_p_is_bound=base.p_value_is_bound,
            random_faithfulness=[_num(x) for x in rnd], per_example=floats(own.per_example),
        ))
    return out


def _num(x: float) -> float | None:
    return x if x == x and abs(x) != float("inf") else None


__all__ = ["circuit_side", "evaluate_on", "overlap", "same_graph"]
