"""evaluate_circuit(): faithfulness, completeness, random baseline, curve and exact agreement at once."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import plotly.graph_objects as go
import torch

from circuitwise.circuits.circuit import Circuit
from circuitwise.circuits.draw import circuit_figure
from circuitwise.circuits.node_select import kept_nodes, node_edge_rows, random_node_rows
from circuitwise.circuits.patch import Ablation, PatchedMetrics, check_ablation, patched_metrics
from circuitwise.circuits.scores import EdgeScores, Progress, no_progress, prepare
from circuitwise.errors import ConfigError
from circuitwise.evaluation.bootstrap import Resampling
from circuitwise.evaluation.baselines import Agreement, RandomBaseline, agreement_from, noise_masks, shortlist_edges
from circuitwise.evaluation.curve import FaithfulnessCurve, curve_from, curve_masks, default_sizes, random_masks
from circuitwise.evaluation.faithfulness import Completeness, Faithfulness, _check_fits, faithfulness_rows
from circuitwise.evaluation.mib import MIBResult, mib_from_metrics, mib_masks
from circuitwise.evaluation.stability import EdgeStability
from circuitwise.evaluation.figures import agreement_figure, faithfulness_curve_figure, mib_figure
from circuitwise.tasks.tokenize import TokenizedTask
from circuitwise.types import Shows


@dataclass(frozen=True, eq=False, repr=False)
class CircuitEvaluation(Shows):
    circuit: Circuit
    faithfulness: Faithfulness
    completeness: Completeness
    random: RandomBaseline | None = None
    curve: FaithfulnessCurve | None = None
    agreement: Agreement | None = None
    mib: MIBResult | None = None
    # Set by the front-ends after discovery (evaluation.stability needs the scoring method).
    stability: EdgeStability | None = None

    def __repr__(self) -> str:
        f, c = self.faithfulness, self.completeness
        parts = [f"{f.n_edges} of {f.total_edges} edges", f"faithfulness {f.faithfulness:.3f}",
                 f"completeness {c.completeness:.3f}"]
        if self.random is not None:
            parts.append(f"random {self.random.mean:.3f} ± {self.random.std:.3f}")
        if self.mib is not None:
            parts.append(f"CPR {self.mib.cpr:.3f}, CMD {self.mib.cmd:.3f}")
        return f"CircuitEvaluation({'; '.join(parts)})"

    def to_json(self) -> dict[str, Any]:
        return {
            "faithfulness": self.faithfulness.to_json(),
            "completeness": self.completeness.to_json(),
            "random_baseline": None if self.random is None else self.random.to_json(),
            "curve": None if self.curve is None else self.curve.to_json(),
            "agreement": None if self.agreement is None else self.agreement.to_json(),
            "mib": None if self.mib is None else self.mib.to_json(),
            **({"stability": self.stability.to_json()} if self.stability is not None else {}),
        }

    def figures(self) -> dict[str, go.Figure]:
        """``circuit``, and where measured ``faithfulness_curve`` and ``agreement``."""
        figs = {"circuit": circuit_figure(self.circuit)}
        if self.curve is not None:
            target = self.circuit.selection.get("target") if self.circuit.selection.get("kind") == "target" else None
            figs["faithfulness_curve"] = faithfulness_curve_figure(
                self.curve, circuit_edges=self.circuit.n_edges,
                circuit_faithfulness=self.faithfulness.faithfulness, target=target)
        if self.mib is not None:
            figs["mib"] = mib_figure(self.mib)
        if self.agreement is not None:
            figs["agreement"] = agreement_figure(self.agreement)
        return figs


def evaluate_circuit(
    model: Any, tok: TokenizedTask, circuit: Circuit, *, scores: EdgeScores | None = None,
    ablation: Ablation = "corrupted", random_samples: int = 20, curve: bool = True, shortlist: int = 0,
    mib: bool = True, seed: int = 0, batch_size: int | None = None, progress: Progress = no_progress,
    bootstrap: Resampling | None = None,
) -> CircuitEvaluation:
    """Everything that makes a circuit's faithfulness number mean something.

    The curve ranks edges by ``scores`` (default: the circuit's own scores, which cover only its
    edges). ``shortlist > 0`` also patches that many top edges exactly; ``mib`` adds MIB's
    metrics where the ranking scores every edge. Every edge set — circuit, complement, random
    circuits, the curve's points and their random circuits, the shortlist, MIB's budgets — runs
    in one stacked call of the engine (the clean and corrupted runs once per batch): the same
    numbers as the separate functions (tested), at a fraction of the forwards' overhead.

    ``bootstrap`` (the front-ends pass config's ``BOOTSTRAP_*``) adds intervals over prompts to the
    circuit's and the complement's faithfulness and to CPR/CMD; they resample the per-prompt metrics
    already measured, so they cost no forward.
    """
    _check_fits(circuit, model)
    check_ablation(ablation)
    if random_samples < 0 or shortlist < 0:
        raise ConfigError("random_samples and shortlist must be 0 or more.")
    E = circuit.graph.n_edges
    gen = torch.Generator().manual_seed(seed)
    blocks: dict[str, torch.Tensor] = {"circuit": circuit.edges[None], "complement": (~circuit.edges)[None]}
    nodes = kept_nodes(circuit)
    if random_samples and nodes is not None:
        # A node circuit's null: node sets of its size (their edge circuits), pruned as it was.
        rows = random_node_rows(circuit.graph, int(nodes.sum()), random_samples, gen)
        blocks["random"] = node_edge_rows(circuit.graph, rows, prune=bool(circuit.selection.get("pruned", True)))
    elif random_samples:
        blocks["random"] = random_masks(circuit.graph, circuit.n_edges, random_samples, gen)
    ranking = scores
    if ranking is None and circuit.scores is not None and bool((~circuit.scores.isnan()).any()):
        ranking = EdgeScores(circuit.graph, circuit.scores, circuit.method or "circuit", circuit.metric)
    cm = idx = mib_parts = None
    if curve and ranking is not None:
        cm = curve_masks(ranking, random_samples=min(random_samples, 3), seed=seed, sizes=curve_sizes(ranking))
        blocks["curve"] = cm.masks
    if shortlist and ranking is not None:
        idx = shortlist_edges(ranking, shortlist)
        # Exact patching corrupts one edge of the clean run: the corrupted-ablation stack's own
        # edge sets. Under mean ablation it needs corrupted replacements, so a call of its own.
        if ablation == "corrupted":
            blocks["shortlist"] = noise_masks(E, idx)
    if mib and ranking is not None and not bool(ranking.scores.isnan().any()):
        mib_parts = mib_masks(ranking)
        blocks["mib"] = mib_parts[0]
    prep = prepare(model, tok, circuit.metric, batch_size=batch_size)
    stack = torch.cat(list(blocks.values()))
    pm = patched_metrics(prep, stack, ablation=ablation, batch_size=prep.batch_size, progress=progress,
                         what="evaluating the circuit")
    at: dict[str, PatchedMetrics] = {}
    start = 0
    for name, m in blocks.items():
        at[name] = pm.rows(start, start + m.shape[0])
        start += m.shape[0]
    main = faithfulness_rows(at["circuit"], blocks["circuit"], ablation)[0]
    comp = faithfulness_rows(at["complement"], blocks["complement"], ablation)[0]
    if bootstrap is not None:
        main, comp = main.with_interval(bootstrap), comp.with_interval(bootstrap)
    rnd = None
    if random_samples:
        rnd = RandomBaseline(main.faithfulness,
                             [r.faithfulness for r in faithfulness_rows(at["random"], blocks["random"], ablation)],
                             circuit.n_edges, "connected" if nodes is None else "node-set")
    crv = agr = mres = None
    if cm is not None and ranking is not None:
        crv = curve_from(cm, faithfulness_rows(at["curve"], cm.masks, ablation), ranking, ablation)
    if idx is not None and ranking is not None:
        if "shortlist" in at:
            agr = agreement_from(ranking, idx, at["shortlist"])
        else:
            agr = agreement_from(ranking, idx, patched_metrics(prep, noise_masks(E, idx), progress=progress,
                                                               what="exact shortlist"))
    if mib_parts is not None and ranking is not None:
        mres = mib_from_metrics(ranking, at["mib"], mib_parts[1], mib_parts[2], ablation=ablation,
                                n_examples=len(tok), bootstrap=bootstrap)
    return CircuitEvaluation(circuit, main, Completeness(comp), rnd, crv, agr, mres)


def curve_sizes(scores: EdgeScores) -> list[int]:
    """The curve's sizes in a circuit study: the geometric grid up to the scored edges that growing
    a circuit measures first (so after growing, the curve's own points cost nothing)."""
    scored = int((~scores.scores.isnan()).sum())
    return default_sizes(max(scored, 1))


__all__ = ["CircuitEvaluation", "curve_sizes", "evaluate_circuit"]
