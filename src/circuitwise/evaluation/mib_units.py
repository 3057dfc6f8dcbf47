"""MIB's faithfulness curves, CPR and CMD at node and neuron level (``run_evaluation.py --level node|neuron``).

As :mod:`circuitwise.evaluation.mib` for edges, with MIB's unit-level rules
(``evaluate_area_under_curve(level=…)`` over EAP-IG's ``Graph.apply_topn(n, level=…)``):

- budgets: the same ten fractions, of the scored units: ``int(b · S)`` nodes or ``int(b · S · d_model)``
  neurons (``S`` senders: the input, every head, every MLP; the logits are not scored);
- a budget keeps the top units by score (signed ranking for CPR, absolute for CMD); a unit outside it
  reads the corrupted run (:mod:`circuitwise.circuits.neurons`: each receiver sees every node's kept
  dimensions live and the others corrupted; no edge pruning changes a unit circuit);
- faithfulness ``(m(C) − m(∅)) / (m(N) − m(∅))`` of the task-mean metric, areas by the trapezoid rule.

``bench/neuron_parity.py`` measures the curve equal to MIB's own to 2.7e-7.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from circuitwise.circuits.neurons import Level, NeuronScores, budget_units, top_units, unit_patched_metrics
from circuitwise.circuits.patch import normalise
from circuitwise.circuits.registry import check_choice
from circuitwise.circuits.scores import Progress, no_progress, prepare
from circuitwise.circuits.select import Rank
from circuitwise.errors import ConfigError
from circuitwise.evaluation.mib import MIB_BUDGETS, MIB_RANKINGS, CurveAreas, area_from_1, area_under
from circuitwise.tasks.tokenize import TokenizedTask


@dataclass(frozen=True)
class MIBUnitCurve:
    """Faithfulness at each MIB budget for one ranking of nodes or neurons."""

    ranking: Rank
    n_units: list[int]  # units kept at each budget: int(budget * total_units)
    circuit_metric: list[float]  # m(C), task mean
    faithfulness: list[float]

    def to_json(self) -> dict[str, Any]:
        return {"ranking": self.ranking, "n_units": self.n_units, "circuit_metric": self.circuit_metric,
                "faithfulness": self.faithfulness, "area_under": area_under(self.faithfulness),
                "area_from_1": area_from_1(self.faithfulness)}


@dataclass(frozen=True)
class MIBUnitResult(CurveAreas):
    """MIB's circuit-track numbers for node or neuron scores on one task."""

    level: Level
    budgets: list[float]
    total_units: int
    signed: MIBUnitCurve
    absolute: MIBUnitCurve
    full_metric: float  # m(N)
    empty_metric: float  # m(∅)
    method: str
    metric: str
    n_examples: int

    def to_json(self) -> dict[str, Any]:
        return {"level": self.level, "budgets": self.budgets, "total_units": self.total_units, "cpr": self.cpr,
                "cmd": self.cmd, "full_metric": self.full_metric, "empty_metric": self.empty_metric,
                "method": self.method, "metric": self.metric, "n_examples": self.n_examples,
                "curves": {"signed": self.signed.to_json(), "abs": self.absolute.to_json()}}


def mib_unit_metrics(model: Any, tok: TokenizedTask, scores: NeuronScores, *, level: Level = "neuron",
                     batch_size: int | None = None, progress: Progress = no_progress,
                     check: bool = True) -> MIBUnitResult:
    """MIB's curves, CPR and CMD for ``scores`` at ``level`` on ``tok`` (the module docstring)."""
    check_choice("mib_unit_metrics", "level", level, Level)
    if bool(scores.scores.isnan().any()):
        raise ConfigError("Some neurons have no score; MIB ranks only scored units and keeps the rest. Score every "
                          "neuron (circuits.neurons.score_neurons) before its MIB metrics.")
    prep = prepare(model, tok, scores.metric, check=check, batch_size=batch_size)
    S = len(prep.gm.graph.senders)
    if tuple(scores.scores.shape) != (S, prep.gm.d_model):
        raise ConfigError(f"The scores are [{', '.join(map(str, scores.scores.shape))}] but this model has {S} nodes "
                          f"× d_model {prep.gm.d_model}. Score the neurons on the model you evaluate.")
    total = S * prep.gm.d_model if level == "neuron" else S
    sizes = budget_units(total, MIB_BUDGETS)
    masks = torch.stack([top_units(scores, n, level, by).neurons for by in MIB_RANKINGS for n in sizes])
    pm = unit_patched_metrics(prep, masks, progress=progress)
    full, empty = float(pm.clean.double().mean()), float(pm.corrupted.double().mean())
    means = [float(p.double().mean()) for p in pm.patched]
    curves = []
    for i, by in enumerate(MIB_RANKINGS):
        m = means[i * len(sizes):(i + 1) * len(sizes)]
        curves.append(MIBUnitCurve(by, sizes, m, [float(normalise(x, full, empty)) for x in m]))
    signed, absolute = curves
    return MIBUnitResult(level, list(MIB_BUDGETS), total, signed, absolute, full, empty, scores.method,
                         scores.metric, len(tok))


__all__ = ["MIBUnitCurve", "MIBUnitResult", "mib_unit_metrics"]
