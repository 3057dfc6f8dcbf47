"""evaluate_circuit(): faithfulness, completeness, random baseline, curve and exact agreement at once."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import plotly.graph_objects as go
import torch

from circuitwise.circuits.circuit import Circuit
from circuitwise.circuits.draw import circuit_figure
from circuitwise.circuits.patch import Ablation
from circuitwise.circuits.scores import EdgeScores, Progress, no_progress
from circuitwise.errors import ConfigError
from circuitwise.evaluation.baselines import Agreement, RandomBaseline, shortlist_agreement
from circuitwise.evaluation.curve import FaithfulnessCurve, faithfulness_curve, random_masks
from circuitwise.evaluation.faithfulness import Completeness, Faithfulness, _check_fits, faithfulness_of_masks
from circuitwise.evaluation.figures import agreement_figure, faithfulness_curve_figure
from circuitwise.tasks.tokenize import TokenizedTask


@dataclass(frozen=True, eq=False)
class CircuitEvaluation:
    circuit: Circuit
    faithfulness: Faithfulness
    completeness: Completeness
    random: RandomBaseline | None = None
    curve: FaithfulnessCurve | None = None
    agreement: Agreement | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "faithfulness": self.faithfulness.to_json(),
            "completeness": self.completeness.to_json(),
            "random_baseline": None if self.random is None else self.random.to_json(),
            "curve": None if self.curve is None else self.curve.to_json(),
            "agreement": None if self.agreement is None else self.agreement.to_json(),
        }

    def figures(self) -> dict[str, go.Figure]:
        """``circuit``, and where measured ``faithfulness_curve`` and ``agreement``."""
        figs = {"circuit": circuit_figure(self.circuit)}
        if self.curve is not None:
            target = self.circuit.selection.get("target") if self.circuit.selection.get("kind") == "target" else None
            figs["faithfulness_curve"] = faithfulness_curve_figure(
                self.curve, circuit_edges=self.circuit.n_edges,
                circuit_faithfulness=self.faithfulness.faithfulness, target=target)
        if self.agreement is not None:
            figs["agreement"] = agreement_figure(self.agreement)
        return figs


def evaluate_circuit(
    model: Any, tok: TokenizedTask, circuit: Circuit, *, scores: EdgeScores | None = None,
    ablation: Ablation = "corrupted", random_samples: int = 20, curve: bool = True, shortlist: int = 0,
    seed: int = 0, batch_size: int | None = None, progress: Progress = no_progress,
) -> CircuitEvaluation:
    """Everything that makes a circuit's faithfulness number mean something.

    Circuit, complement and ``random_samples`` random circuits of the same size run in the same
    stacked forwards. The curve ranks edges by ``scores`` (default: the circuit's own scores,
    which cover only its edges). ``shortlist > 0`` also patches that many top edges exactly.
    """
    _check_fits(circuit, model)
    if random_samples < 0 or shortlist < 0:
        raise ConfigError("random_samples and shortlist must be 0 or more.")
    gen = torch.Generator().manual_seed(seed)
    masks = [circuit.edges[None], (~circuit.edges)[None]]
    if random_samples:
        masks.append(random_masks(circuit.graph.n_edges, circuit.n_edges, random_samples, gen))
    res = faithfulness_of_masks(model, tok, torch.cat(masks), ablation=ablation, metric=circuit.metric,
                                batch_size=batch_size, progress=progress, what="evaluating the circuit")
    rnd = RandomBaseline(res[0].faithfulness, [r.faithfulness for r in res[2:]], circuit.n_edges) if random_samples else None
    ranking = scores
    if ranking is None and circuit.scores is not None and bool((~circuit.scores.isnan()).any()):
        ranking = EdgeScores(circuit.graph, circuit.scores, circuit.method or "circuit", circuit.metric)
    crv = agr = None
    if curve and ranking is not None:
        crv = faithfulness_curve(model, tok, ranking, ablation=ablation, random_samples=min(random_samples, 3),
                                 seed=seed, batch_size=batch_size, progress=progress, check=False,
                                 sizes=_curve_sizes(ranking))
    if shortlist and ranking is not None:
        agr = shortlist_agreement(model, tok, ranking, k=shortlist, batch_size=batch_size, progress=progress,
                                  check=False)
    return CircuitEvaluation(circuit, res[0], Completeness(res[1]), rnd, crv, agr)


def _curve_sizes(scores: EdgeScores) -> list[int]:
    from circuitwise.evaluation.curve import default_sizes

    scored = int((~scores.scores.isnan()).sum())
    return default_sizes(max(scored, 1), points=16)


__all__ = ["CircuitEvaluation", "evaluate_circuit"]
