"""MIB's circuit-localization metrics: faithfulness at fixed edge budgets, CPR and CMD.

Defined as the Mechanistic Interpretability Benchmark's circuit track computes them
(``evaluate_area_under_curve`` in hannamw/MIB-circuit-track, over EAP-IG's ``Graph``):

- budgets: 0.1 %, 0.2 %, 0.5 %, 1 %, 2 %, 5 %, 10 %, 20 %, 50 % and 100 % of the graph's edges;
  a budget ``b`` takes the top ``int(b · E)`` edges by score (``E`` = every edge of the graph),
  then prunes the edges off every input→logits path (EAP-IG's ``apply_topn(…, prune=True)``;
  ours is :func:`~circuitwise.circuits.prune.prune_dangling`, which removes the same edges). MIB's
  printed ``weighted_edge_count`` is a little larger: its pinned EAP-IG prunes one pass only
  (:func:`~circuitwise.circuits.prune.one_pass_prune`, shown beside ours as ``mib_edge_count``).
- faithfulness ``f = (m(C) − m(∅)) / (m(N) − m(∅))`` of the task-mean metric: ``m(N)`` the full
  model (the clean run), ``m(∅)`` the empty circuit (every edge patched: with corrupted-run
  patching, the corrupted run), ``m(C)`` the circuit with every other edge patched.
- CPR = area under ``f`` over the budget fraction, CMD = area under ``|1 − f|``, each the
  trapezoid rule on a linear axis over the ten budgets (0.001 … 1; nothing before 0.001).
  MIB reports CPR from the *signed* ranking (most positive first: the edges that push the metric
  toward the clean answer) and CMD from the *absolute* ranking (largest magnitude first).

Both rankings' budgets and the empty circuit run as one stack of patched forwards.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import torch

from circuitwise.circuits.patch import Ablation, PatchedMetrics, check_ablation, normalise, patched_metrics
from circuitwise.circuits.prune import one_pass_prune, prune_dangling
from circuitwise.circuits.scores import EdgeScores, Progress, no_progress, prepare
from circuitwise.circuits.select import Rank, top_edges
from circuitwise.errors import ConfigError
from circuitwise.evaluation.bootstrap import Interval, Resampling, ratio
from circuitwise.evaluation.bootstrap import bootstrap as resampled
from circuitwise.tasks.tokenize import TokenizedTask

#: MIB's edge budgets, as fractions of the graph's edges.
MIB_BUDGETS: tuple[float, ...] = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)
#: The rankings, in the order their masks are stacked: signed (for CPR), then absolute (for CMD).
MIB_RANKINGS: tuple[Rank, ...] = ("signed", "abs")

#: Every choice that makes these numbers MIB's (or, where ours differs, says how).
CONVENTIONS: dict[str, str] = {
    "budgets": "top int(b*E) edges for b in 0.1%,0.2%,0.5%,1%,2%,5%,10%,20%,50%,100% of all E edges",
    "pruning": "after top-n, edges off every input->logits path are dropped (EAP-IG apply_topn prune=True); "
               "n_edges counts what is left; mib_edge_count is MIB's printed weighted_edge_count, whose pinned "
               "EAP-IG (7af394a) prunes one pass only and so keeps edges left dangling (same faithfulness)",
    "faithfulness": "(m(C) - m(empty)) / (m(N) - m(empty)) of the task-mean metric, never clipped",
    "m(N)": "the full model: the clean run",
    "m(empty)": "no edge kept: every edge patched (corrupted-run patching: the corrupted run)",
    "ablation": "an edge outside the circuit reads its sender's output in the corrupted run "
                "(MIB's 'patching' intervention); 'mean' reads the mean over the task's clean prompts",
    "area": "trapezoid rule on a linear axis over the ten budget fractions (0.001 to 1)",
    "cpr": "area under f, signed ranking (most positive score first)",
    "cmd": "area under |1 - f|, absolute ranking (largest |score| first)",
    "ties": "equal scores keep the graph's edge order (MIB leaves them to torch.argsort)",
    "score sign": "positive = the edge's clean value raises the metric (MIB's attribution, run on the "
                  "loss -metric, gives the same sign)",
}


@dataclass(frozen=True)
class MIBCurve:
    """Faithfulness at each MIB budget for one ranking."""

    ranking: Rank
    top: list[int]  # edges taken before pruning: int(budget * total_edges)
    n_edges: list[int]  # edges left after pruning to every input→logits path (EAP-IG's prune since 55a2be2)
    circuit_metric: list[float]  # m(C), task mean
    faithfulness: list[float]
    # What MIB prints: its pinned EAP-IG prunes one pass only (circuits.prune.one_pass_prune), so the
    # count keeps edges left dangling by that pass; the faithfulness is the same either way.
    mib_edge_count: list[int] | None = None

    def to_json(self) -> dict[str, Any]:
        return {"ranking": self.ranking, "top": self.top, "n_edges": self.n_edges,
                **({} if self.mib_edge_count is None else {"mib_edge_count": self.mib_edge_count}),
                "circuit_metric": self.circuit_metric, "faithfulness": self.faithfulness,
                "area_under": area_under(self.faithfulness), "area_from_1": area_from_1(self.faithfulness)}


class CurveAreas:
    """MIB's two summaries of a result's ``signed`` and ``absolute`` curves (edges, nodes or neurons)."""

    signed: Any  # a curve with .faithfulness, one per budget
    absolute: Any

    @property
    def cpr(self) -> float:
        """Circuit performance ratio: area under f, signed ranking (higher is better)."""
        return area_under(self.signed.faithfulness)

    @property
    def cmd(self) -> float:
        """Circuit–model distance: area under |1 − f|, absolute ranking (lower is better)."""
        return area_from_1(self.absolute.faithfulness)


@dataclass(frozen=True)
class MIBResult(CurveAreas):
    """MIB's circuit-track numbers for one set of edge scores on one task."""

    budgets: list[float]
    total_edges: int
    signed: MIBCurve
    absolute: MIBCurve
    full_metric: float  # m(N)
    empty_metric: float  # m(∅)
    method: str
    metric: str
    ablation: str
    n_examples: int
    cpr_interval: Interval | None = None
    cmd_interval: Interval | None = None

    def curve(self, ranking: Rank) -> MIBCurve:
        return self.signed if ranking == "signed" else self.absolute

    def to_json(self) -> dict[str, Any]:
        return {
            "budgets": self.budgets, "total_edges": self.total_edges, "cpr": self.cpr, "cmd": self.cmd,
            "full_metric": self.full_metric, "empty_metric": self.empty_metric, "method": self.method,
            "metric": self.metric, "ablation": self.ablation, "n_examples": self.n_examples,
            "curves": {"signed": self.signed.to_json(), "abs": self.absolute.to_json()},
            "conventions": CONVENTIONS,
            **({"cpr_interval": self.cpr_interval.to_json()} if self.cpr_interval is not None else {}),
            **({"cmd_interval": self.cmd_interval.to_json()} if self.cmd_interval is not None else {}),
        }


def _area(y: list[float], budgets: tuple[float, ...] | list[float] = MIB_BUDGETS) -> float:
    return sum((budgets[i + 1] - budgets[i]) * (y[i] + y[i + 1]) / 2 for i in range(len(y) - 1))


def area_under(faithfulness: list[float]) -> float:
    """MIB's ``area_under``: the trapezoid area under f over the budget fractions."""
    return _area(faithfulness)


def area_from_1(faithfulness: list[float]) -> float:
    """MIB's ``area_from_1``: the trapezoid area under |1 − f| over the budget fractions."""
    return _area([abs(1.0 - f) for f in faithfulness])


def budget_sizes(total_edges: int) -> list[int]:
    """Edges taken at each budget before pruning: MIB's ``int(pct * n_edges)``."""
    return [int(b * total_edges) for b in MIB_BUDGETS]


def _check_scored(scores: EdgeScores) -> None:
    missing = int(scores.scores.isnan().sum())
    if missing:
        raise ConfigError(
            f"MIB's metrics rank every edge of the graph, but {missing} of {scores.graph.n_edges} edges "
            "have no score. Score the whole graph (circuitwise circuit, or an EAP-IG file with every "
            "edge's score)."
        )


def mib_masks(scores: EdgeScores) -> tuple[torch.Tensor, list[int], list[list[int]]]:
    """The stacked edge sets ``[1 + 2·budgets, edge]``: the empty circuit, then each ranking's budgets.

    Returns the masks, the pre-pruning sizes, and each ranking's post-pruning edge counts.
    """
    _check_scored(scores)
    tops = budget_sizes(scores.graph.n_edges)
    masks = [torch.zeros(scores.graph.n_edges, dtype=torch.bool)]
    counts: list[list[int]] = []
    for by in MIB_RANKINGS:
        kept = [prune_dangling(scores.graph, top_edges(scores, k, by)) for k in tops]
        masks += kept
        counts.append([int(m.sum()) for m in kept])
    return torch.stack(masks), tops, counts


def mib_edge_counts(scores: EdgeScores, tops: list[int]) -> list[list[int]]:
    """Per ranking, the edge count MIB's pinned code prints at each budget (one prune pass)."""
    return [one_pass_prune(scores.graph, torch.stack([top_edges(scores, k, by) for k in tops])).sum(1).tolist()
            for by in MIB_RANKINGS]


def _areas(y: torch.Tensor) -> torch.Tensor:
    """:func:`_area` of each row of ``y`` ``[R, budgets]``."""
    b = torch.tensor(MIB_BUDGETS, dtype=torch.float64)
    return ((b[1:] - b[:-1]) * (y[:, 1:] + y[:, :-1]) / 2).sum(1)


def mib_intervals(pm: PatchedMetrics, rs: Resampling) -> tuple[Interval, Interval]:
    """Bootstrap intervals of CPR and CMD over prompts from :func:`mib_masks`' patched metrics: each
    resample recomputes every budget's faithfulness as a ratio of its resampled means, then the areas."""
    n = len(MIB_BUDGETS)
    values = torch.cat([pm.patched.T, pm.clean[:, None]], 1)  # [prompt, 1 + 2n + 1]

    def stat(m: torch.Tensor) -> torch.Tensor:
        f = ratio(m[:, 1 : 1 + 2 * n], m[:, -1:], m[:, :1])
        return torch.stack([_areas(f[:, :n]), _areas((1 - f[:, n:]).abs())], 1)

    cpr, cmd = resampled(stat, values, rs)
    return cpr, cmd


def mib_from_metrics(scores: EdgeScores, pm: PatchedMetrics, tops: list[int], counts: list[list[int]], *,
                     ablation: Ablation, n_examples: int, bootstrap: Resampling | None = None) -> MIBResult:
    """Assemble the result from the patched metrics of :func:`mib_masks`' stack (rows in that order);
    with ``bootstrap``, CPR and CMD get intervals over prompts."""
    means = pm.patched.mean(1).double()
    full, empty = float(pm.clean.mean()), float(means[0])
    f = normalise(means[1:], full, empty).tolist()
    n = len(tops)
    mib_counts = mib_edge_counts(scores, tops)
    curves = [MIBCurve(by, list(tops), counts[i], means[1 + i * n: 1 + (i + 1) * n].tolist(), f[i * n:(i + 1) * n],
                       mib_counts[i])
              for i, by in enumerate(MIB_RANKINGS)]
    res = MIBResult(list(MIB_BUDGETS), scores.graph.n_edges, curves[0], curves[1], full, empty, scores.method,
                    scores.metric, ablation, n_examples)
    if bootstrap is not None:
        cpr, cmd = mib_intervals(pm, bootstrap)
        res = replace(res, cpr_interval=cpr, cmd_interval=cmd)
    return res


def mib_metrics(model: Any, tok: TokenizedTask, scores: EdgeScores, *, ablation: Ablation = "corrupted",
                batch_size: int | None = None, progress: Progress = no_progress, check: bool = True) -> MIBResult:
    """MIB's faithfulness curves, CPR and CMD for ``scores`` on ``tok`` (see the module docstring)."""
    check_ablation(ablation)
    masks, tops, counts = mib_masks(scores)
    prep = prepare(model, tok, scores.metric, check=check, batch_size=batch_size)
    if prep.gm.graph.n_edges != scores.graph.n_edges:
        raise ConfigError(f"The scores are for a graph of {scores.graph.n_edges} edges but this model's has "
                          f"{prep.gm.graph.n_edges}. Score edges on the model you evaluate.")
    pm = patched_metrics(prep, masks, ablation=ablation, batch_size=prep.batch_size, progress=progress,
                         what="MIB budgets")
    return mib_from_metrics(scores, pm, tops, counts, ablation=ablation, n_examples=len(tok))


__all__ = ["CONVENTIONS", "MIBCurve", "MIBResult", "MIB_BUDGETS", "MIB_RANKINGS", "area_from_1",
           "area_under", "budget_sizes", "mib_from_metrics", "mib_intervals", "mib_masks", "mib_metrics"]
