"""Baselines that give a faithfulness number meaning, and a check of the ranking itself.

- :func:`random_baseline`: random connected circuits with the circuit's number of edges, and an
  honest p-value (a bound when no random circuit reaches the circuit).
- :func:`shortlist_agreement`: rank edges by attribution, patch the top candidates exactly, and
  report how well the two agree (Spearman, Pearson, sign agreement).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from circuitwise.circuits.circuit import Circuit
from circuitwise.circuits.exact import Direction, exact_edge_scores
from circuitwise.circuits.patch import Ablation, PatchedMetrics
from circuitwise.circuits.scores import EdgeScores, Progress, no_progress
from circuitwise.circuits.select import Rank
from circuitwise.errors import ConfigError
from circuitwise.evaluation.curve import random_masks
from circuitwise.evaluation.faithfulness import faithfulness_of_masks
from circuitwise.evaluation.stats import pearson, spearman
from circuitwise.tasks.tokenize import TokenizedTask


@dataclass(frozen=True)
class RandomBaseline:
    circuit_faithfulness: float
    random_faithfulness: list[float]
    n_edges: int
    # How the random circuits were drawn: "connected" (every edge on an input→logits path,
    # evaluation.random_circuits). Files written before it held uniform edge sets.
    null: str = "connected"

    @property
    def mean(self) -> float:
        return float(torch.tensor(self.random_faithfulness).mean())

    @property
    def std(self) -> float:
        t = torch.tensor(self.random_faithfulness)
        return float(t.std()) if t.numel() > 1 else 0.0

    @property
    def samples(self) -> int:
        return len(self.random_faithfulness)

    @property
    def hits(self) -> int:
        """Random circuits at least as faithful as the circuit (a NaN one never counts)."""
        return sum(f >= self.circuit_faithfulness for f in self.random_faithfulness)

    @property
    def p_value(self) -> float:
        """Share of random circuits at least as faithful, with the +1 correction: ``(hits + 1) / (k + 1)``."""
        return (self.hits + 1) / (self.samples + 1)

    @property
    def p_value_is_bound(self) -> bool:
        """No random circuit reached the circuit: ``p_value`` is then ``1/(k+1)``, the smallest value
        ``k`` samples can show, so it is reported as the bound ``p < 1/(k+1)``, not as a measured p."""
        return self.hits == 0

    def p_text(self) -> str:
        """``p = 0.0297`` or, when no sample reaches the circuit, ``p < 0.0099``."""
        return f"p < {self.p_value:.3g}" if self.p_value_is_bound else f"p = {self.p_value:.3g}"

    def to_json(self) -> dict[str, Any]:
        return {"circuit_faithfulness": self.circuit_faithfulness, "n_edges": self.n_edges,
                "random_mean": self.mean, "random_std": self.std, "p_value": self.p_value,
                "p_value_is_bound": self.p_value_is_bound, "hits": self.hits, "samples": self.samples,
                "null": self.null, "random_faithfulness": self.random_faithfulness}


def random_baseline(model: Any, tok: TokenizedTask, circuit: Circuit, *, samples: int = 20, seed: int = 0,
                    ablation: Ablation = "corrupted", batch_size: int | None = None,
                    progress: Progress = no_progress, check: bool = True) -> RandomBaseline:
    """The circuit against ``samples`` random connected circuits of the same size (same forwards)."""
    if samples < 1:
        raise ConfigError("A random baseline needs at least one sample (100 lets p fall below 0.01).")
    gen = torch.Generator().manual_seed(seed)
    masks = torch.cat([circuit.edges[None], random_masks(circuit.graph, circuit.n_edges, samples, gen)])
    res = faithfulness_of_masks(model, tok, masks, ablation=ablation, metric=circuit.metric,
                                batch_size=batch_size, progress=progress, check=check, what="random circuits")
    return RandomBaseline(res[0].faithfulness, [r.faithfulness for r in res[1:]], circuit.n_edges)


@dataclass(frozen=True)
class Agreement:
    """Attribution scores against exact patching on a shortlist of top-ranked edges."""

    edges: list[str]
    attribution: list[float]
    exact: list[float]
    method: str
    direction: str

    @property
    def spearman(self) -> float:
        return spearman(torch.tensor(self.attribution), torch.tensor(self.exact))

    @property
    def pearson(self) -> float:
        return pearson(torch.tensor(self.attribution), torch.tensor(self.exact))

    @property
    def sign_agreement(self) -> float:
        pairs = [(a, e) for a, e in zip(self.attribution, self.exact) if a != 0 and e != 0]
        return sum((a > 0) == (e > 0) for a, e in pairs) / len(pairs) if pairs else math.nan

    def to_json(self) -> dict[str, Any]:
        return {"method": self.method, "direction": self.direction, "spearman": self.spearman,
                "pearson": self.pearson, "sign_agreement": self.sign_agreement,
                "edges": [{"edge": n, "attribution": a, "exact": e}
                          for n, a, e in zip(self.edges, self.attribution, self.exact)]}


def shortlist_agreement(model: Any, tok: TokenizedTask, scores: EdgeScores, *, k: int = 50, by: Rank = "abs",
                        direction: Direction = "noise", batch_size: int | None = None,
                        progress: Progress = no_progress, check: bool = True) -> Agreement:
    """Patch the ``k`` top-ranked edges exactly and compare with their attribution scores."""
    idx = shortlist_edges(scores, k, by)
    ex = exact_edge_scores(model, tok, edges=idx, direction=direction, batch_size=batch_size,
                           metric=scores.metric, progress=progress, check=check)
    return Agreement(
        edges=[scores.graph.edge_names[i] for i in idx.tolist()],
        attribution=scores.scores[idx].tolist(), exact=ex.scores[idx].tolist(),
        method=scores.method, direction=direction,
    )


def shortlist_edges(scores: EdgeScores, k: int, by: Rank = "abs") -> torch.Tensor:
    """The indices of the ``k`` top-ranked scored edges."""
    if k < 2:
        raise ConfigError("A shortlist needs at least 2 edges to correlate (50 is usual).")
    idx = scores.ranking(by)[: min(k, scores.graph.n_edges)]
    return idx[~scores.scores[idx].isnan()]


def noise_masks(n_edges: int, idx: torch.Tensor) -> torch.Tensor:
    """Every edge kept but one, for each index: exact patching's ``noise`` direction as edge sets."""
    keep = torch.ones(idx.numel(), n_edges, dtype=torch.bool)
    keep[torch.arange(idx.numel()), idx] = False
    return keep


def agreement_from(scores: EdgeScores, idx: torch.Tensor, pm: PatchedMetrics) -> Agreement:
    """The agreement from the patched metrics of :func:`noise_masks` (clean base, corrupted edges)."""
    exact = (pm.clean[None] - pm.patched).mean(1)
    return Agreement(edges=[scores.graph.edge_names[i] for i in idx.tolist()],
                     attribution=scores.scores[idx].tolist(), exact=exact.tolist(),
                     method=scores.method, direction="noise")


__all__ = ["Agreement", "RandomBaseline", "agreement_from", "noise_masks", "random_baseline", "shortlist_agreement",
           "shortlist_edges"]
