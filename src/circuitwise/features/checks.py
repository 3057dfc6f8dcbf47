"""The checks `circuitwise graph` runs on the graph it writes: does the graph say what the model does?

- **Interventions**: each of the kept graph's most influential features is ablated on its own in the
  *unfrozen* model (:func:`~circuitwise.features.interventions.intervene`); the target's actual move is
  set beside what the graph predicts: through every edge of the full graph (exact in the frozen
  replacement), through the kept graph's edges alone, and through the feature's direct edges.
- **Faithfulness** of the kept features, in the terms of circuitwise's edge circuits
  (:func:`~circuitwise.features.interventions.feature_faithfulness`).
- **Head loadings** of the kept graph's strongest attention-mediated links (sender and receiver at
  different positions) (:func:`~circuitwise.features.heads.head_loadings`):
  which attention heads carry each one, named ``L{m}H{h}`` as circuitwise's head-level circuits name
  them, and summed over those links into the heads that carry the graph's attention traffic.

All three need one prompt's graph (its attention patterns and activations); a task graph (averaged over
prompts) gets none, and says so. A degenerate target (removing every feature moves it by nothing) leaves
the faithfulness out with its reason rather than failing the command.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from circuitwise.errors import DegenerateMetricError
from circuitwise.features.graph import AttributionGraph
from circuitwise.features.heads import HeadLoading, head_loadings
from circuitwise.features.interventions import FeatureFaithfulness, feature_faithfulness, graph_run, intervene, predict
from circuitwise.features.transcoder import TranscoderSet

# How many features are ablated one by one, and how many links get their heads, by default.
DEFAULT_CHECK_FEATURES = 10
DEFAULT_HEAD_LINKS = 20


@dataclass(frozen=True)
class FeatureCheck:
    """One feature ablated (scale 0) in the unfrozen model: the target's move, actual against predicted."""

    node: int  # the feature's index in the kept graph
    layer: int
    position: int
    feature: int
    actual: float
    predicted: float  # through every edge of the full graph
    predicted_kept: float  # through the kept graph's edges
    predicted_direct: float  # the feature's direct edges alone
    actual_frozen_norms: float  # the same ablation with every residual norm's scale frozen


@dataclass(frozen=True)
class GraphCheckResult:
    target: int  # which target row was checked (the most likely logit, or the metric)
    target_label: str
    interventions: tuple[FeatureCheck, ...] = ()
    faithfulness: FeatureFaithfulness | None = None
    loadings: tuple[HeadLoading, ...] = ()
    notes: tuple[str, ...] = field(default_factory=tuple)

    def sign_agreement(self) -> float | None:
        """The share of checked features whose actual move has the predicted sign (moves under 1e-6 skipped)."""
        pairs = [(c.actual, c.predicted) for c in self.interventions
                 if abs(c.actual) > 1e-6 and abs(c.predicted) > 1e-6]
        if not pairs:
            return None
        return sum((a > 0) == (p > 0) for a, p in pairs) / len(pairs)

    def head_totals(self) -> list[tuple[str, float, float, int]]:
        """Per head over the analysed links: ``(name, Σ loading, Σ |loading|, links it carries ≥ 5 % of)``,
        largest Σ |loading| first; heads that carry nothing are left out."""
        if not self.loadings:
            return []
        L, H = self.loadings[0].heads.shape
        signed = sum((x.heads for x in self.loadings[1:]), self.loadings[0].heads.clone())
        absolute = sum((x.heads.abs() for x in self.loadings[1:]), self.loadings[0].heads.abs())
        counts = [[0] * H for _ in range(L)]
        for x in self.loadings:
            total = abs(x.residual) + float(x.heads.abs().sum())
            if total <= 0:
                continue
            for m, h in (x.heads.abs() >= 0.05 * total).nonzero().tolist():
                counts[m][h] += 1
        rows = [(f"L{m}H{h}", float(signed[m, h]), float(absolute[m, h]), counts[m][h])
                for m in range(L) for h in range(H) if float(absolute[m, h]) > 0]
        return sorted(rows, key=lambda r: -r[2])


def checked_target(graph: AttributionGraph) -> int:
    """The target row the checks use: the most likely logit (salient targets), else the first."""
    t = [graph.nodes[i] for i in range(graph.target_nodes.start, graph.target_nodes.stop)]
    probs = [x.probability if x.probability is not None else -1.0 for x in t]
    return max(range(len(t)), key=lambda k: probs[k]) if t else 0


def check_graph(model: Any, transcoders: TranscoderSet, full: AttributionGraph, kept: AttributionGraph, *,
                features: int = DEFAULT_CHECK_FEATURES, links: int = DEFAULT_HEAD_LINKS) -> GraphCheckResult:
    """Interventions on ``kept``'s ``features`` most influential features, its faithfulness, and the head
    loadings of its ``links`` strongest links between positions into features and targets (see the module docstring).
    ``full`` is the unpruned graph ``kept`` came from (:func:`~circuitwise.features.prune.prune_graph`)."""
    target = checked_target(kept)
    label = kept.nodes[kept.target_nodes.start + target].label if kept.target_nodes.stop > kept.target_nodes.start \
        else ""
    if kept.positions != "absolute" or len(kept.tokens) != 1:
        return GraphCheckResult(target, label, notes=("interventions, faithfulness and head loadings need one prompt's "
                                                 "graph (its activations and attention patterns); a task graph "
                                                 "averages many, so they were not run",))
    notes: list[str] = []
    checks: list[FeatureCheck] = []
    prepared = graph_run(model, transcoders, kept)  # one clean run serves every check (full and kept share the prompt)
    feats = [i for i in range(kept.features.start, kept.features.stop)]
    if kept.influence is not None:
        feats.sort(key=lambda i: -float(kept.influence[i]))  # type: ignore[index]
    for i in feats[:features]:
        n = kept.nodes[i]
        r = intervene(model, transcoders, full, [(n.layer, n.position, n.feature)], scale=0.0, target=target,
                      prepared=prepared)
        through_kept, _ = predict(kept, [i], 0.0, target)
        checks.append(FeatureCheck(i, n.layer, n.position, n.feature, r.actual, r.predicted, through_kept,
                                   r.predicted_direct, r.actual_frozen_norms))
    faith = None
    if kept.features.stop > kept.features.start:
        try:
            faith = feature_faithfulness(model, transcoders, kept, target, prepared=prepared)
        except DegenerateMetricError as e:
            notes.append(f"faithfulness left out: {e}")
    else:
        notes.append("faithfulness left out: the kept graph has no features")
    loadings: tuple[HeadLoading, ...] = ()
    if links > 0:
        # Attention-mediated links: sender and receiver at different positions, so every path of the
        # link passes through a head (a same-position link is mostly the residual stream's).
        nodes = kept.nodes
        strongest = sorted(((abs(w), i, j) for i, j, w in kept.edges()
                            if nodes[i].kind in ("feature", "target") and nodes[i].position != nodes[j].position),
                           reverse=True)[:links]
        if strongest:
            pairs = [(i, j) for _, i, j in strongest]
            loadings = tuple(head_loadings(model, transcoders, kept, pairs, prepared=prepared))
        else:
            notes.append("head loadings: the kept graph has no link between two positions")
    return GraphCheckResult(target, label, tuple(checks), faith, loadings, tuple(notes))


__all__ = ["DEFAULT_CHECK_FEATURES", "DEFAULT_HEAD_LINKS", "FeatureCheck", "GraphCheckResult", "check_graph",
           "checked_target"]
