"""Interventions that check a graph: change features in the *unfrozen* model, compare with the graph.

The unfrozen model here is the model with each MLP replaced by its transcoders plus that prompt's
clean error node (:func:`~circuitwise.features.replacement.live_forward`): attention, norms and every
feature are recomputed, so a change travels through everything the frozen graph holds fixed.
Unchanged, it is the model itself.

- :func:`intervene`: ablate (``scale=0``) or scale chosen features; the target moves by ``actual``;
  the graph predicts ``predicted`` (the change propagated through the graph's own edges, features
  responding linearly with their gates frozen — exact in the frozen replacement) and
  ``predicted_direct`` (the chosen features' direct edges alone). ``actual_frozen_norms`` is the same
  intervention with every residual norm's scale held at the clean run's (attention and features live):
  the graph freezes norms, so ``actual − actual_frozen_norms`` is the norms' response. On the bundled
  models the graph tracks the frozen-norm movement closely (single-feature correlation 0.95); the final
  LayerNorm's response can halve the fully unfrozen one where the logit difference is large.
- :func:`feature_faithfulness`: the graph's features alone against all features, in the terms of
  circuitwise's edge circuits: ``(m_graph − m_none) / (m_all − m_none)``, where ``m_graph`` keeps
  only the graph's features (every other feature, at every position, is zero), ``m_none`` zeroes
  every feature and ``m_all`` is the model; error nodes stay at their clean values throughout.
  Never clipped; a near-zero gap raises :class:`~circuitwise.errors.DegenerateMetricError`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from circuitwise.errors import ConfigError, DegenerateMetricError
from circuitwise.features.attribute import target_read
from circuitwise.features.graph import AttributionGraph
from circuitwise.features.replacement import CleanRun, Edit, check_model, clean_run, live_forward
from circuitwise.features.transcoder import TranscoderSet

FeatureRef = int | tuple[int, int, int]


@dataclass(frozen=True)
class InterventionResult:
    """One intervention: what the model did against what the graph predicted (target's units)."""

    features: tuple[tuple[int, int, int], ...]  # (layer, position, feature)
    scale: float  # each chosen activation × scale (0: ablated)
    target: str
    clean: float
    after: float
    actual: float  # after − clean
    predicted: float  # through the graph's edges
    predicted_direct: float  # the direct edges alone
    # The same intervention with every residual norm's scale frozen (attention and features live): the
    # part of ``actual − predicted`` that is the norms' response is ``actual − actual_frozen_norms``.
    actual_frozen_norms: float = float("nan")


@dataclass(frozen=True)
class FeatureFaithfulness:
    faithfulness: float
    graph_metric: float
    all_metric: float
    none_metric: float
    n_features: int


def _single(graph: AttributionGraph) -> None:
    if graph.positions != "absolute" or len(graph.tokens) != 1:
        raise ConfigError("this needs one prompt's graph (absolute positions); for a task graph, intervene on "
                          "each prompt's own graph")


def graph_run(model: Any, transcoders: TranscoderSet, graph: AttributionGraph) -> tuple[CleanRun, TranscoderSet]:
    """One prompt's clean run (and the set on its device and dtype), which :func:`intervene`,
    :func:`feature_faithfulness` and :func:`~circuitwise.features.heads.head_loadings` read: pass it as
    ``prepared=`` to several of them so the model runs once."""
    _single(graph)
    w = check_model(model, transcoders)
    tcs = transcoders.to(w.device, w.dtype)
    return clean_run(model, tcs, torch.tensor(graph.tokens[0]), w), tcs


def _indices(graph: AttributionGraph, features: Sequence[FeatureRef]) -> list[int]:
    where = {(n.layer, n.position, n.feature): i for i, n in enumerate(graph.nodes) if n.kind == "feature"}
    out = []
    for f in features:
        if isinstance(f, int):
            if not (graph.features.start <= f < graph.features.stop):
                raise ConfigError(f"node {f} is not a feature node of this graph")
            out.append(f)
        elif tuple(f) in where:
            out.append(where[tuple(f)])  # type: ignore[index]
        else:
            raise ConfigError(f"feature {f} (layer, position, feature) is not active in this graph")
    return out


def predict(graph: AttributionGraph, nodes: Sequence[int], scale: float, target: int = 0) -> tuple[float, float]:
    """``(through the graph, direct)`` change of target ``target`` when ``nodes`` are scaled by ``scale``.

    Per unit of each sender, ``D = A / value``; the chosen nodes move by ``(scale − 1)·value``, every other
    feature by ``D`` of the moves before it (errors and tokens stay), the target by its row of ``D``.
    """
    a = graph.adjacency.double()
    vals = graph.values
    safe = torch.where(vals != 0, vals, torch.ones_like(vals))
    d = a / safe[None, :]
    d[:, vals == 0] = 0
    delta = torch.zeros(graph.n_nodes, dtype=torch.float64)
    pinned = torch.zeros(graph.n_nodes, dtype=torch.bool)
    pinned[list(nodes)] = True
    delta[pinned] = (scale - 1.0) * vals[pinned]
    free = torch.zeros_like(pinned)
    free[graph.features] = True
    free &= ~pinned
    for _ in range(graph.n_nodes + 1):
        new = torch.where(free, d @ delta, delta)
        if torch.equal(new, delta):
            break
        delta = new
    row = graph.target_nodes.start + target
    direct = torch.zeros_like(delta)
    direct[pinned] = delta[pinned]
    return float(d[row] @ delta), float(d[row] @ direct)


def _metric(run: CleanRun, tcs: TranscoderSet, graph: AttributionGraph, target: int, edit: Edit | None,
            freeze_norms: bool = False) -> float:
    u, c = target_read(graph, run.w, target)
    pos = graph.nodes[graph.target_nodes.start + target].position
    return float(live_forward(run, tcs, edit, freeze_norms)[pos] @ u) + c


def intervene(model: Any, transcoders: TranscoderSet, graph: AttributionGraph, features: Sequence[FeatureRef],
              *, scale: float = 0.0, target: int = 0,
              prepared: tuple[CleanRun, TranscoderSet] | None = None) -> InterventionResult:
    """Scale ``features`` (node indices or ``(layer, position, feature)``) by ``scale`` in the unfrozen
    model and compare the target's move with the graph's prediction (see the module docstring)."""
    _single(graph)
    if not features:
        raise ConfigError("name at least one feature to intervene on")
    nodes = _indices(graph, features)
    run, tcs = prepared or graph_run(model, transcoders, graph)
    keys = tuple((graph.nodes[i].layer, graph.nodes[i].position, graph.nodes[i].feature) for i in nodes)
    edit = Edit(set_to=tuple((l, p, f, scale * float(run.acts[l][p, f])) for l, p, f in keys))
    clean = _metric(run, tcs, graph, target, None)
    after = _metric(run, tcs, graph, target, edit)
    predicted, direct = predict(graph, nodes, scale, target)
    frozen_norms = _metric(run, tcs, graph, target, edit, freeze_norms=True) - clean
    return InterventionResult(keys, scale, graph.nodes[graph.target_nodes.start + target].label, clean, after,
                              after - clean, predicted, direct, frozen_norms)


def feature_faithfulness(model: Any, transcoders: TranscoderSet, graph: AttributionGraph, target: int = 0, *,
                         prepared: tuple[CleanRun, TranscoderSet] | None = None) -> FeatureFaithfulness:
    """The graph's features alone against all of them, in the unfrozen model (see the module docstring)."""
    _single(graph)
    run, tcs = prepared or graph_run(model, transcoders, graph)
    keep = [torch.zeros_like(a, dtype=torch.bool) for a in run.acts]
    n = 0
    for node in graph.nodes[graph.features]:
        keep[node.layer][node.position, node.feature] = True
        n += 1
    m_all = _metric(run, tcs, graph, target, None)
    m_none = _metric(run, tcs, graph, target, Edit(keep=tuple(torch.zeros_like(k) for k in keep)))
    m_graph = _metric(run, tcs, graph, target, Edit(keep=tuple(keep)))
    gap = m_all - m_none
    if abs(gap) <= 1e-6 * (1.0 + abs(m_all)):
        raise DegenerateMetricError(f"the target moves by {gap:.3g} when every feature is removed, so a share of "
                                    "it is undefined; pick a target the features carry (another token or the metric)")
    return FeatureFaithfulness((m_graph - m_none) / gap, m_graph, m_all, m_none, n)


__all__ = ["FeatureFaithfulness", "InterventionResult", "feature_faithfulness", "graph_run", "intervene", "predict"]
