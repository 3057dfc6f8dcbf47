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
from circuitwise.circuits.scores import Progress, no_progress
from circuitwise.compare.schema import CircuitSide, CrossCell, Overlap, floats
from circuitwise.evaluation.baselines import RandomBaseline
from circuitwise.evaluation.curve import random_masks
from circuitwise.evaluation.faithfulness import faithfulness_of_masks
from circuitwise.tasks.tokenize import TokenizedTask

LIST_CAP = 200  # edge lists in compare.json beyond this are cut (the circuit files hold them all)


def same_graph(a: Discovery, b: Discovery) -> bool:
    ga, gb = a.circuit.graph, b.circuit.graph
    return (ga.n_layers, ga.n_heads, ga.has_mlp, ga.n_edges) == (gb.n_layers, gb.n_heads, gb.has_mlp, gb.n_edges)


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
    )


def _weights(scores: torch.Tensor) -> torch.Tensor:
    w = torch.nan_to_num(scores.double().abs(), nan=0.0)
    total = float(w.sum())
    return w / total if total > 0 else w


def overlap(a: Discovery, b: Discovery) -> Overlap:
    """Edge Jaccard (as found, and of the top-k of each at the smaller size), score-weighted overlap, shared core."""
    ea, eb = a.circuit.edges, b.circuit.edges
    union = int((ea | eb).sum())
    jaccard = int((ea & eb).sum()) / union if union else 1.0
    k = min(a.circuit.n_edges, b.circuit.n_edges)
    ta = torch.zeros_like(ea)
    tb = torch.zeros_like(eb)
    ta[a.scores.ranking("abs")[:k]] = True
    tb[b.scores.ranking("abs")[:k]] = True
    u = int((ta | tb).sum())
    names = a.circuit.graph.edge_names
    shared = (ea & eb).nonzero().flatten().tolist()
    key = lambda i: -float(torch.nan_to_num(a.scores.scores[i].abs() + b.scores.scores[i].abs(), nan=0.0))  # noqa: E731
    nodes_b = set(b.circuit.nodes())
    return Overlap(
        jaccard=jaccard, jaccard_equal_size=int((ta & tb).sum()) / u if u else 1.0, equal_size=k,
        # Σ_e min(w_A, w_B) with w = |score| / Σ|score|: the share of attribution both sides put on the same edges.
        weighted=float(torch.minimum(_weights(a.scores.scores), _weights(b.scores.scores)).sum()),
        shared_edges=[names[i] for i in sorted(shared, key=key)[:LIST_CAP]],
        shared_nodes=[n for n in a.circuit.nodes() if n in nodes_b],
        only_a=[names[i] for i in (ea & ~eb).nonzero().flatten().tolist()[:LIST_CAP]],
        only_b=[names[i] for i in (eb & ~ea).nonzero().flatten().tolist()[:LIST_CAP]],
    )


def evaluate_on(model: Any, tok: TokenizedTask, on: str, circuits: dict[str, Discovery], *, samples: int,
                seed: int, batch_size: int | None, progress: Progress = no_progress) -> list[CrossCell]:
    """Each circuit in ``circuits`` (by side) on this side, with ``samples`` random circuits of its size."""
    gen = torch.Generator().manual_seed(seed)
    E = next(iter(circuits.values())).circuit.graph.n_edges
    masks, spans = [], {}
    for side, found in circuits.items():
        start = sum(m.shape[0] for m in masks)
        masks.append(found.circuit.edges[None])
        masks.append(random_masks(E, found.circuit.n_edges, samples, gen))
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
            random_faithfulness=[_num(x) for x in rnd], per_example=floats(own.per_example),
        ))
    return out


def _num(x: float) -> float | None:
    return x if x == x and abs(x) != float("inf") else None


__all__ = ["circuit_side", "evaluate_on", "overlap", "same_graph"]
