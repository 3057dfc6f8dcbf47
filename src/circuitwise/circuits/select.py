"""Choosing a circuit from edge scores: top-n, a score threshold, or a target faithfulness.

Each strategy ranks edges by score (by magnitude unless ``by="signed"``), takes a prefix of the
ranking, and prunes dangling edges (:mod:`circuitwise.circuits.prune`). ``target`` grows the
prefix until the pruned circuit's exact faithfulness reaches the target: a geometric sweep over
prefix lengths, then a finer sweep inside the first bracket that reaches it, each sweep one
batch of stacked patched forwards.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Callable, Literal, Mapping

import torch

from circuitwise.circuits.circuit import Circuit, model_info
from circuitwise.circuits.patch import Ablation, check_ablation, normalise, patched_metrics
from circuitwise.circuits.positional import PositionalEdgeScores
from circuitwise.circuits.positional_kq import KQEdgeScores, select_kq
from circuitwise.circuits.prune import prune_dangling
from circuitwise.circuits.scores import EdgeScores, Prepared, Progress, no_progress, prepare
from circuitwise.errors import ConfigError
from circuitwise.tasks.tokenize import TokenizedTask

SelectionName = Literal["top-n", "threshold", "target"]
Rank = Literal["abs", "signed"]


def _check_by(by: str) -> Rank:
    if by not in ("abs", "signed"):
        raise ConfigError(f"Rank edges by 'abs' (magnitude) or 'signed' (most positive first), not {by!r}.")
    return by  # type: ignore[return-value]


# The sizes a circuit is grown over first, and its faithfulness curve's points: the same grid, so
# the evaluation reads the curve from the growth's measurements (circuits.patch remembers them).
GRID_POINTS = 24


def geometric_sizes(n_edges: int, points: int = GRID_POINTS) -> list[int]:
    """Geometric sizes from 1 to ``n_edges`` (about ``points`` of them, ``n_edges`` included)."""
    return sorted({max(1, min(n_edges, round(n_edges ** (i / (points - 1))))) for i in range(points)} | {n_edges})


def top_edges(scores: EdgeScores, n: int, by: Rank = "abs") -> torch.Tensor:
    """Bool mask of the ``n`` best-ranked scored edges."""
    keep = torch.zeros(scores.graph.n_edges, dtype=torch.bool)
    scored = int((~scores.scores.isnan()).sum())
    keep[scores.ranking(by)[: min(n, scored)]] = True
    return keep


def _finish(scores: EdgeScores, keep: torch.Tensor, prune: bool, model: Any, tok: TokenizedTask | None,
            selection: dict[str, Any]) -> Circuit:
    before = int(keep.sum())
    if prune:
        keep = prune_dangling(scores.graph, keep)
    selection = {**selection, "pruned": prune, "edges_before_pruning": before}
    return Circuit(scores.graph, keep, scores.scores.clone(), scores.method, selection,
                   model_info(model) if model is not None else {},
                   tok.task.name if tok is not None else None, scores.metric, **_positions(scores))


def _positions(scores: EdgeScores) -> dict[str, Any]:
    """A circuit's position fields from position-aware scores (none from position-agnostic ones)."""
    if not isinstance(scores, PositionalEdgeScores):
        return {}
    return {"positions": scores.positions, "position_scores": scores.by_position.clone()}


def select_positional(scores: PositionalEdgeScores, *, n: int | None = None, model: Any = None,
                      tok: TokenizedTask | None = None) -> Circuit:
    """The circuit of the ``n`` (edge, position) pairs of largest ``|score|`` (no pruning: a pair's
    sender may be fed at other positions, through attention, than the pair's own)."""
    if not isinstance(scores, PositionalEdgeScores):
        raise ConfigError("Choosing (edge, position) pairs needs position-aware scores: score with "
                          "positions='tokens' or 'roles' (e.g. -O positions=roles).")
    if n is None or isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ConfigError(f"A positional circuit needs a positive number of (edge, position) pairs n, got {n!r}.")
    flat = torch.zeros(scores.by_position.numel(), dtype=torch.bool)
    flat[scores.ranking_pairs()[:n]] = True
    keep = flat.view_as(scores.by_position)
    return Circuit(scores.graph, keep.any(-1), scores.scores.clone(), scores.method,
                   {"kind": "top-n-positional", "n": n, "by": "abs"},
                   model_info(model) if model is not None else {}, tok.task.name if tok is not None else None,
                   scores.metric, scores.positions, scores.by_position.clone(), keep)


def select_kq_circuit(scores: KQEdgeScores, *, n: int | None = None, model: Any = None,
                      tok: TokenizedTask | None = None) -> Circuit:
    """The circuit of the ``n`` strongest units: (edge, position) pairs of the edges into queries, MLPs
    and the logits, (edge, key position, query position) triples of those into keys and values
    (:mod:`circuitwise.circuits.positional_kq`; no pruning, as :func:`select_positional`)."""
    if n is None:
        raise ConfigError("A circuit of units needs a positive number of them n, got None.")
    keep = select_kq(scores, n)
    kv = scores.kv_edges
    pairs = keep.pairs.clone()
    pairs[kv] = keep.triples.any(-1)
    flow_scores = scores.by_pair.clone()
    return Circuit(scores.graph, pairs.any(-1), scores.scores.clone(), scores.method,
                   {"kind": "top-n-kq", "n": n, "by": "abs"},
                   model_info(model) if model is not None else {}, tok.task.name if tok is not None else None,
                   scores.metric, scores.positions, scores.by_position.clone(), pairs, keep.triples.clone(),
                   flow_scores)


def select_top_n(scores: EdgeScores, *, n: int | None = None, by: Rank = "abs", prune: bool = True,
                 model: Any = None, tok: TokenizedTask | None = None, **_: Any) -> Circuit:
    if n is None or isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ConfigError(f"top-n selection needs a positive number of edges n, got {n!r}.")
    keep = top_edges(scores, n, _check_by(by))
    # How many there were to choose from: an n beyond it keeps them all, which the CLI says.
    available = int((~scores.scores.isnan()).sum())
    return _finish(scores, keep, prune, model, tok, {"kind": "top-n", "n": n, "by": by, "available": available})


def select_threshold(scores: EdgeScores, *, threshold: float | None = None, by: Rank = "abs", prune: bool = True,
                     model: Any = None, tok: TokenizedTask | None = None, **_: Any) -> Circuit:
    if threshold is None or not isinstance(threshold, (int, float)) or threshold != threshold:
        raise ConfigError(f"threshold selection needs a number (a score cut-off), got {threshold!r}.")
    key = scores.scores.abs() if _check_by(by) == "abs" else scores.scores
    keep = torch.nan_to_num(key, nan=-float("inf")) >= threshold
    return _finish(scores, keep, prune, model, tok, {"kind": "threshold", "threshold": threshold, "by": by})


def select_target(scores: EdgeScores, *, model: Any = None, tok: TokenizedTask | None = None,
                  target: float | None = 0.9, by: Rank = "abs", prune: bool = True,
                  ablation: Ablation = "corrupted", batch_size: int | None = None,
                  progress: Progress = no_progress, check: bool = True, max_sweep: int = 32, **_: Any) -> Circuit:
    if model is None or tok is None:
        raise ConfigError("target selection measures faithfulness, so it needs the model and the task.")
    if target is None or not isinstance(target, (int, float)) or not 0 < target <= 1:
        raise ConfigError(f"The target faithfulness must be in (0, 1], got {target!r} (0.9 is usual).")
    check_ablation(ablation)
    _check_by(by)
    prep = prepare(model, tok, scores.metric, check=check, batch_size=batch_size)
    order = scores.ranking(by)
    scored = int((~scores.scores.isnan()).sum())
    if scored == 0:
        raise ConfigError("No edge has a score; score the edges before selecting a circuit.")

    def mask(k: int) -> torch.Tensor:
        keep = torch.zeros(scores.graph.n_edges, dtype=torch.bool)
        keep[order[:k]] = True
        return prune_dangling(scores.graph, keep) if prune else keep

    hi, trace = grow(prep, scored, mask, target, ablation=ablation, progress=progress, max_sweep=max_sweep)
    keep = torch.zeros(scores.graph.n_edges, dtype=torch.bool)
    keep[order[:hi]] = True
    steps = [{"top": k, "edges": trace[k][0], "faithfulness": trace[k][1]} for k in sorted(trace)]
    return _finish(scores, keep, prune, model, tok, {
        "kind": "target", "target": target, "by": by, "ablation": ablation, "reached": trace[hi][1] >= target,
        "faithfulness": trace[hi][1], "top": hi, "trace": steps,
    })


def grow(prep: Prepared, total: int, mask: Callable[[int], torch.Tensor], target: float, *,
         ablation: Ablation = "corrupted", progress: Progress = no_progress, max_sweep: int = 32
         ) -> tuple[int, dict[int, tuple[int, float]]]:
    """The fewest top ``k`` of ``1..total`` whose circuit ``mask(k)`` (``[edge]`` bool) reaches the
    ``target`` faithfulness (``total`` if none does), and every measured ``k``'s (edges, faithfulness).

    A geometric sweep over ``k`` first, then a finer one inside the first bracket that reaches the
    target, each sweep one stacked call of patched forwards. Edge and node selection share it.
    """
    trace: dict[int, tuple[int, float]] = {}

    def evaluate(ks: list[int]) -> None:
        ks = [k for k in ks if k not in trace]
        if not ks:
            return
        masks = torch.stack([mask(k) for k in ks])
        pm = patched_metrics(prep, masks, ablation=ablation, batch_size=prep.batch_size, progress=progress,
                             what="growing the circuit")
        f = normalise(pm.patched.mean(1).double(), float(pm.clean.mean()), float(pm.corrupted.mean()))
        for k, m, fk in zip(ks, masks, f.tolist()):
            trace[k] = (int(m.sum()), fk)

    grid = geometric_sizes(total)
    evaluate(grid)
    hits = [k for k in grid if trace[k][1] >= target]
    hi = hits[0] if hits else total
    lo = max([k for k in grid if k < hi], default=0)
    while hi - lo > 1:
        inside = hi - lo - 1
        if inside <= max_sweep:
            cand = list(range(lo + 1, hi))
        else:
            cand = sorted({lo + 1 + round(i * (inside - 1) / (max_sweep - 1)) for i in range(max_sweep)})
        evaluate(cand)
        hits = [k for k in cand if trace[k][1] >= target]
        if hits:
            new_hi = hits[0]
            lo = max([k for k in cand if k < new_hi], default=lo)
            hi = new_hi
        else:
            lo = max(cand)
        if inside <= max_sweep:
            break
    return hi, trace


@dataclass(frozen=True)
class Selection:
    name: str
    description: str
    run: Callable[..., Circuit]


SELECTIONS: Mapping[str, Selection] = MappingProxyType({
    s.name: s
    for s in (
        Selection("top-n", "The n highest-scoring edges.", select_top_n),
        Selection("threshold", "Every edge scoring at least the threshold.", select_threshold),
        Selection("target", "The fewest top edges whose circuit reaches a target faithfulness.", select_target),
    )
})


def select_circuit(scores: EdgeScores, selection: str = "target", *, level: str = "edge", **options: Any) -> Circuit:
    """Choose a circuit from ``scores`` with a registered strategy (options pass through); ``level="node"``
    chooses heads and MLPs (``n`` then counts nodes) and keeps their edge circuit
    (:mod:`circuitwise.circuits.node_select`)."""
    if level != "edge":
        # node_select builds on this module: imported here, where it is asked for.
        from circuitwise.circuits.node_select import check_level, select_nodes

        check_level(level)
        return select_nodes(scores, selection, **options)
    if selection not in SELECTIONS:
        raise ConfigError(f"Unknown selection {selection!r}. Choose one of: {', '.join(SELECTIONS)}.")
    return SELECTIONS[selection].run(scores, **options)


__all__ = ["GRID_POINTS", "SELECTIONS", "Rank", "Selection", "SelectionName", "select_circuit", "select_target",
           "select_kq_circuit", "select_positional", "select_threshold", "select_top_n", "geometric_sizes", "grow",
           "top_edges"]
