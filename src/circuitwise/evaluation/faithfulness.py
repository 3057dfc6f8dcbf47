"""Faithfulness and completeness of a circuit, measured by exact edge patching.

Faithfulness runs the clean prompts with every edge *outside* the circuit read from the
corrupted run (``ablation="corrupted"``) or from its mean over the task's clean prompts
(``"mean"``), and normalises the mean metric between the corrupted (0) and the clean (1)
model: ``(m_circuit − m_corrupted) / (m_clean − m_corrupted)``. It is never clipped (a circuit
can overshoot); a near-zero clean–corrupted gap raises :class:`DegenerateMetricError`.
Completeness asks the converse: how much the *complement* of the circuit does alone.

With corrupted-run patching this equals TransformerLens's ``faithfulness`` of the same edges at
every position (tested). Under mean ablation the two differ slightly by design: circuitwise's input
node is token *plus* positional embedding, TransformerLens's embed writer the token embedding only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

import torch

from circuitwise.circuits.circuit import Circuit
from circuitwise.circuits.patch import Ablation, PatchedMetrics, check_ablation, normalise, patched_metrics
from circuitwise.circuits.positional import PositionSpec, position_spec, positional_patched_metrics
from circuitwise.circuits.scores import Progress, no_progress, prepare
from circuitwise.errors import ConfigError
from circuitwise.evaluation.bootstrap import Interval, Resampling, normalised_intervals
from circuitwise.tasks.tokenize import TokenizedTask


@dataclass(frozen=True)
class Faithfulness:
    """One circuit's faithfulness on one task."""

    faithfulness: float  # normalised: 0 = corrupted model, 1 = clean model
    circuit_metric: float  # mean metric with the circuit alone
    clean_metric: float
    corrupted_metric: float
    n_edges: int
    total_edges: int
    ablation: str
    per_example: torch.Tensor  # [example] circuit metric
    # [example] the clean and corrupted (or mean-ablated) metrics, which the interval resamples with
    # per_example: faithfulness is a ratio of means, so the same prompts must go into all three.
    clean_per_example: torch.Tensor | None = None
    corrupted_per_example: torch.Tensor | None = None
    interval: Interval | None = None

    def with_interval(self, rs: Resampling) -> Faithfulness:
        """This faithfulness with its bootstrap interval over prompts (the ratio of resampled means)."""
        if self.clean_per_example is None or self.corrupted_per_example is None:
            return self
        iv = normalised_intervals(self.per_example[:, None], self.clean_per_example, self.corrupted_per_example, rs)
        return replace(self, interval=iv[0])

    @property
    def kept_fraction(self) -> float:
        """``m_circuit / m_clean``: the share of the clean logit difference the circuit keeps (NaN where the
        clean metric is about zero, as a KL to the clean run is by definition)."""
        if not abs(self.clean_metric) > 1e-6 * max(1.0, abs(self.corrupted_metric)):
            return math.nan
        return self.circuit_metric / self.clean_metric

    @property
    def edge_fraction(self) -> float:
        return self.n_edges / self.total_edges

    def to_json(self) -> dict[str, Any]:
        return {
            "faithfulness": self.faithfulness, "kept_fraction": self.kept_fraction,
            "circuit_metric": self.circuit_metric, "clean_metric": self.clean_metric,
            "corrupted_metric": self.corrupted_metric, "n_edges": self.n_edges,
            "total_edges": self.total_edges, "edge_fraction": self.edge_fraction,
            "ablation": self.ablation, "per_example": self.per_example.tolist(),
            **({"interval": self.interval.to_json()} if self.interval is not None else {}),
        }


def faithfulness_of_masks(
    model: Any, tok: TokenizedTask, masks: torch.Tensor, *, ablation: Ablation = "corrupted",
    metric: str = "logit_diff", batch_size: int | None = None, progress: Progress = no_progress,
    check: bool = True, what: str = "faithfulness",
) -> list[Faithfulness]:
    """Faithfulness of several edge sets ``[K, edge]`` (bool), stacked in the same forwards."""
    check_ablation(ablation)
    prep = prepare(model, tok, metric, check=check, batch_size=batch_size)
    masks = masks.bool()
    if masks.dim() == 1:
        masks = masks[None]
    pm = patched_metrics(prep, masks, ablation=ablation, batch_size=prep.batch_size,
                         progress=progress, what=what)
    return faithfulness_rows(pm, masks, ablation)


def faithfulness_rows(pm: PatchedMetrics, masks: torch.Tensor, ablation: str) -> list[Faithfulness]:
    """One :class:`Faithfulness` per row of ``masks`` from the patched metrics of those rows."""
    clean, corr = float(pm.clean.mean()), float(pm.corrupted.mean())
    f = normalise(pm.patched.mean(1).double(), clean, corr)
    E = masks.shape[-1]
    return [
        Faithfulness(float(f[k]), float(pm.patched[k].mean()), clean, corr, int(masks[k].sum()), E,
                     ablation, pm.patched[k].clone(), pm.clean, pm.corrupted)
        for k in range(masks.shape[0])
    ]


def _check_fits(circuit: Circuit, model: Any, *, pairs: bool = False) -> None:
    """Raise unless ``circuit`` was found on ``model``'s graph; a circuit of (edge, position) pairs
    only where the caller measures pairs (``pairs``): the others patch whole edges."""
    from circuitwise.circuits.graph import graph_of

    if circuit.positional and not pairs:
        raise ConfigError(
            "This circuit keeps some edges at some positions only (its circuit.json's kept_positions), and this "
            "evaluation (random circuits, curve, MIB metrics) patches whole edges. Measure it with "
            "circuitwise.evaluation.faithfulness / completeness, which patch (edge, position) pairs, or drop "
            "kept_positions from the file to evaluate its edges at every position."
        )

    g = graph_of(model)
    if (g.n_layers, g.n_heads, g.has_mlp) != (circuit.graph.n_layers, circuit.graph.n_heads, circuit.graph.has_mlp):
        raise ConfigError(
            f"The circuit is for a {circuit.graph.n_layers}-layer, {circuit.graph.n_heads}-head model "
            f"but this model has {g.n_layers} layers and {g.n_heads} heads. Evaluate it on the model it was found on."
        )


def faithfulness(model: Any, tok: TokenizedTask, circuit: Circuit, *, ablation: Ablation = "corrupted",
                 batch_size: int | None = None, progress: Progress = no_progress, check: bool = True) -> Faithfulness:
    """The circuit alone: every other edge patched (see the module docstring); a circuit chosen as
    (edge, position) pairs: every other pair (:func:`positional_faithfulness`)."""
    _check_fits(circuit, model, pairs=True)
    if circuit.positional:
        if ablation != "corrupted":
            raise ConfigError("Circuits of (edge, position) pairs are measured with corrupted-run patching only; "
                              "use --ablation corrupted.")
        return positional_faithfulness(model, tok, circuit, batch_size=batch_size, progress=progress, check=check)
    return faithfulness_of_masks(model, tok, circuit.edges, ablation=ablation, metric=circuit.metric,
                                 batch_size=batch_size, progress=progress, check=check)[0]


def positional_faithfulness_of_masks(
    model: Any, tok: TokenizedTask, keep: torch.Tensor, positions: PositionSpec, *, metric: str = "logit_diff",
    batch_size: int | None = None, progress: Progress = no_progress, check: bool = True,
) -> list[Faithfulness]:
    """Faithfulness of (edge, position) sets ``[K, edge, column]`` (bool): only the kept edges at the
    kept positions carry the clean run, every other (edge, position) the corrupted run's value.
    Counts (``n_edges``, ``total_edges``) are of (edge, position) pairs."""
    prep = prepare(model, tok, metric, check=check, batch_size=batch_size)
    keep = keep.bool()
    if keep.dim() == 2:
        keep = keep[None]
    pm = positional_patched_metrics(prep, keep, positions, progress=progress)
    return faithfulness_rows(pm, keep.flatten(1), "corrupted")


def _pair_spec(circuit: Circuit, tok: TokenizedTask) -> PositionSpec:
    """The circuit's position columns, checked against the task it is evaluated on."""
    assert circuit.positions is not None
    mine = circuit.positions
    theirs = position_spec(tok, mine.mode)
    if mine.mode == "roles" and not set(theirs.labels) <= set(mine.labels):
        raise ConfigError(f"The circuit keeps edges at the roles {list(mine.labels)} but task {tok.task.name!r} has "
                          f"roles {list(theirs.labels)}. Evaluate it on a task with the same roles.")
    if mine.mode == "tokens" and len(theirs.labels) > len(mine.labels):
        raise ConfigError(f"The circuit keeps edges at {len(mine.labels)} token positions but the prompts of task "
                          f"{tok.task.name!r} have {len(theirs.labels)}. Evaluate it on prompts of its length.")
    return mine


def positional_faithfulness(model: Any, tok: TokenizedTask, circuit: Circuit, *, complement: bool = False,
                            batch_size: int | None = None, progress: Progress = no_progress,
                            check: bool = True) -> Faithfulness:
    """A circuit's (edge, position) pairs alone (or, ``complement``, all the others alone): every
    other pair patched to the corrupted run."""
    _check_fits(circuit, model, pairs=True)
    spec = _pair_spec(circuit, tok)
    keep = circuit.pair_mask()
    if circuit.flows is not None:  # (edge, key, query) units; imported here: kq_faithfulness builds on this module
        from circuitwise.circuits.positional_kq import KQKeep
        from circuitwise.evaluation.kq_faithfulness import kq_faithfulness_of_masks

        units = KQKeep(~keep, ~circuit.flows) if complement else KQKeep(keep, circuit.flows)
        return kq_faithfulness_of_masks(model, tok, units, spec, metric=circuit.metric, batch_size=batch_size,
                                        progress=progress, check=check)[0]
    return positional_faithfulness_of_masks(model, tok, ~keep if complement else keep, spec, metric=circuit.metric,
                                            batch_size=batch_size, progress=progress, check=check)[0]


@dataclass(frozen=True)
class Completeness:
    """What the complement of a circuit does alone; ``completeness = 1 − complement faithfulness``."""

    complement: Faithfulness

    @property
    def completeness(self) -> float:
        return 1.0 - self.complement.faithfulness

    def to_json(self) -> dict[str, Any]:
        return {"completeness": self.completeness, "complement": self.complement.to_json()}


def completeness(model: Any, tok: TokenizedTask, circuit: Circuit, *, ablation: Ablation = "corrupted",
                 batch_size: int | None = None, progress: Progress = no_progress, check: bool = True) -> Completeness:
    """Run the complement of the circuit alone (the circuit's own edges patched)."""
    _check_fits(circuit, model, pairs=True)
    if circuit.positional:
        if ablation != "corrupted":
            raise ConfigError("Circuits of (edge, position) pairs are measured with corrupted-run patching only; "
                              "use --ablation corrupted.")
        return Completeness(positional_faithfulness(model, tok, circuit, complement=True, batch_size=batch_size,
                                                    progress=progress, check=check))
    comp = faithfulness_of_masks(model, tok, ~circuit.edges, ablation=ablation, metric=circuit.metric,
                                 batch_size=batch_size, progress=progress, check=check, what="completeness")[0]
    return Completeness(comp)


__all__ = ["Completeness", "Faithfulness", "completeness", "faithfulness", "faithfulness_of_masks",
           "faithfulness_rows", "positional_faithfulness", "positional_faithfulness_of_masks"]
