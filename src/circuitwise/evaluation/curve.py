"""The faithfulness curve: faithfulness of the top-k edges as k grows, with random circuits.

Each point is the ``k`` best-ranked edges (pruned of dangling edges unless ``prune=False``),
measured exactly; with ``random_samples`` each size also gets that many random *connected* circuits
of the same number of edges (:mod:`circuitwise.evaluation.random_circuits`), so the curve shows how
far above chance the ranking is.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch

from circuitwise.circuits.graph import Graph
from circuitwise.circuits.patch import Ablation
from circuitwise.circuits.prune import prune_dangling
from circuitwise.circuits.scores import EdgeScores, Progress, no_progress
from circuitwise.circuits.select import GRID_POINTS, Rank, geometric_sizes, top_edges
from circuitwise.errors import ConfigError
from circuitwise.evaluation.faithfulness import Faithfulness, faithfulness_of_masks
from circuitwise.evaluation.random_circuits import connected_masks
from circuitwise.tasks.tokenize import TokenizedTask


@dataclass(frozen=True)
class FaithfulnessCurve:
    top: list[int]  # how many top-ranked edges were taken
    n_edges: list[int]  # edges left after pruning
    faithfulness: list[float]
    kept_fraction: list[float]
    total_edges: int
    method: str
    ablation: str
    random_mean: list[float] | None = None
    random_std: list[float] | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "top": self.top, "n_edges": self.n_edges, "faithfulness": self.faithfulness,
            "kept_fraction": self.kept_fraction, "total_edges": self.total_edges, "method": self.method,
            "ablation": self.ablation, "random_mean": self.random_mean, "random_std": self.random_std,
        }


def default_sizes(n_edges: int, points: int = GRID_POINTS) -> list[int]:
    """Geometric sizes from 1 to ``n_edges`` (about ``points`` of them): the growth's grid."""
    return geometric_sizes(n_edges, points)


def random_masks(graph: Graph, size: int, samples: int, generator: torch.Generator) -> torch.Tensor:
    """``samples`` random connected circuits of ``size`` edges (``[samples, edge]`` bool).

    Uniformly random edge sets, as before, almost never hold an input→logits path: they pruned to
    the empty circuit, scored 0 and made every circuit look significant. An empty size gives none.
    """
    if size < 1:
        return torch.zeros(samples, graph.n_edges, dtype=torch.bool)
    return connected_masks(graph, size, samples, generator)


@dataclass(frozen=True)
class CurveMasks:
    """The edge sets of a curve, in stacking order: each size's top edges, then its random circuits."""

    masks: torch.Tensor  # [len(sizes) * (1 + random_samples), edge]
    sizes: list[int]
    n_edges: list[int]
    random_samples: int


def curve_masks(scores: EdgeScores, *, sizes: Sequence[int] | None = None, by: Rank = "abs", prune: bool = True,
                random_samples: int = 0, seed: int = 0) -> CurveMasks:
    E = scores.graph.n_edges
    sizes = default_sizes(E) if sizes is None else sorted({int(k) for k in sizes})
    if not sizes or sizes[0] < 1 or sizes[-1] > E:
        raise ConfigError(f"Curve sizes must lie in [1, {E}] (the number of edges).")
    if random_samples < 0:
        raise ConfigError("random_samples must be 0 or more.")
    masks = []
    for k in sizes:
        m = top_edges(scores, k, by)
        masks.append(prune_dangling(scores.graph, m) if prune else m)
    n_edges = [int(m.sum()) for m in masks]
    gen = torch.Generator().manual_seed(seed)
    rnd = [random_masks(scores.graph, n, random_samples, gen) for n in n_edges] if random_samples else []
    return CurveMasks(torch.cat([torch.stack(masks), *rnd]), list(sizes), n_edges, random_samples)


def curve_from(cm: CurveMasks, res: list[Faithfulness], scores: EdgeScores, ablation: str) -> FaithfulnessCurve:
    """The curve from the faithfulness of :func:`curve_masks`' rows, in that order."""
    n = len(cm.sizes)
    top = res[:n]
    r_mean = r_std = None
    if cm.random_samples:
        vals = torch.tensor([r.faithfulness for r in res[n:]]).view(n, cm.random_samples)
        r_mean = vals.mean(1).tolist()
        r_std = (vals.std(1) if cm.random_samples > 1 else torch.zeros(n)).tolist()
    return FaithfulnessCurve(
        top=list(cm.sizes), n_edges=cm.n_edges, faithfulness=[r.faithfulness for r in top],
        kept_fraction=[r.kept_fraction for r in top], total_edges=scores.graph.n_edges, method=scores.method,
        ablation=ablation, random_mean=r_mean, random_std=r_std,
    )


def faithfulness_curve(
    model: Any, tok: TokenizedTask, scores: EdgeScores, *, sizes: Sequence[int] | None = None,
    by: Rank = "abs", prune: bool = True, ablation: Ablation = "corrupted", random_samples: int = 0,
    seed: int = 0, batch_size: int | None = None, progress: Progress = no_progress, check: bool = True,
) -> FaithfulnessCurve:
    cm = curve_masks(scores, sizes=sizes, by=by, prune=prune, random_samples=random_samples, seed=seed)
    res = faithfulness_of_masks(model, tok, cm.masks, ablation=ablation, metric=scores.metric,
                                batch_size=batch_size, progress=progress, check=check, what="faithfulness curve")
    return curve_from(cm, res, scores, ablation)


__all__ = ["CurveMasks", "FaithfulnessCurve", "curve_from", "curve_masks", "default_sizes", "faithfulness_curve", "random_masks"]
