"""Exact edge patching: one patched forward per edge (stacked), for small graphs and shortlists.

Two directions, both signed like attribution (positive = the edge's clean value raises the metric):

- ``noise``: run the clean prompts with only this edge read from the corrupted run;
  score = metric(clean) − metric(patched). What removing the edge from the full model costs.
- ``denoise``: run the corrupted prompts with only this edge read from the clean run;
  score = metric(patched) − metric(corrupted). What EAP's gradient at the corrupted run linearises.

``noise`` is what EAP at the clean run linearises, and equals hannamw/EAP-IG's ``exact`` scores under
MIB's loss metric (−logit difference) exactly. At node granularity (:func:`exact_node_scores`) a
node's edges to every later receiver are patched together: one forward per sender, not per edge.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Literal, Sequence

import torch

from circuitwise.circuits.patch import patched_metrics
from circuitwise.circuits.registry import DiscoveryMethod, check_choice, options_config
from circuitwise.circuits.scores import EdgeScores, NodeScores, Progress, no_progress, prepare
from circuitwise.errors import ConfigError
from circuitwise.tasks.tokenize import TokenizedTask

Direction = Literal["noise", "denoise"]

#: Above this many edges, scoring every edge exactly is refused unless ``edges`` names a shortlist.
MAX_EXACT_EDGES = 5000


@dataclass(frozen=True)
class ExactOptions:
    """``direction``: noise (the clean run with the edge corrupted) or denoise (the reverse)."""

    direction: Direction = "noise"

    def __post_init__(self) -> None:
        check_choice("exact", "direction", self.direction, Direction)


def exact_edge_scores(
    model: Any,
    tok: TokenizedTask,
    *,
    edges: Sequence[int] | torch.Tensor | None = None,
    direction: Direction = ExactOptions.direction,
    batch_size: int | None = None,
    metric: str = "logit_diff",
    progress: Progress = no_progress,
    check: bool = True,
) -> EdgeScores:
    """Exact effect of each edge (all edges, or the indices in ``edges``; others are NaN)."""
    options = ExactOptions(direction)
    t0 = time.perf_counter()
    prep = prepare(model, tok, metric, check=check, batch_size=batch_size)
    g = prep.gm.graph
    idx = torch.arange(g.n_edges) if edges is None else torch.as_tensor(edges, dtype=torch.long).flatten()
    if edges is None and g.n_edges > MAX_EXACT_EDGES:
        raise ConfigError(
            f"Exact patching of all {g.n_edges} edges takes one forward per edge. Score a shortlist "
            "instead (edges=…, or `shortlist_agreement`), or use method eap-ig."
        )
    if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= g.n_edges):
        raise ConfigError(f"Edge indices must lie in [0, {g.n_edges}).")
    keep = torch.ones(idx.numel(), g.n_edges, dtype=torch.bool)
    keep[torch.arange(idx.numel()), idx] = False
    base = "clean" if direction == "noise" else "corrupted"
    pm = patched_metrics(prep, keep, batch_size=prep.batch_size, base=base, progress=progress, what=f"exact ({direction})")
    if direction == "noise":
        effect = pm.clean[None] - pm.patched
    else:
        effect = pm.patched - pm.corrupted[None]
    scores = torch.full((g.n_edges,), float("nan"))
    scores[idx] = effect.mean(1)
    return EdgeScores(
        graph=g, scores=scores, method="exact", metric=metric,
        config={**options_config(options), "n_scored": int(idx.numel())},
        clean_metric=float(pm.clean.mean()), corrupted_metric=float(pm.corrupted.mean()),
        n_examples=len(tok), seconds=time.perf_counter() - t0,
    )


def score_exact(model: Any, tok: TokenizedTask, options: ExactOptions, *, batch_size: int | None = None,
                metric: str = "logit_diff", progress: Progress = no_progress, check: bool = True) -> EdgeScores:
    return exact_edge_scores(model, tok, direction=options.direction, batch_size=batch_size, metric=metric,
                             progress=progress, check=check)


def exact_node_scores(model: Any, tok: TokenizedTask, options: ExactOptions, *, batch_size: int | None = None,
                      metric: str = "logit_diff", progress: Progress = no_progress,
                      check: bool = True) -> NodeScores:
    """Exact effect of each sender (input, head, MLP): all its outgoing edges patched at once."""
    t0 = time.perf_counter()
    prep = prepare(model, tok, metric, check=check, batch_size=batch_size)
    g = prep.gm.graph
    s_idx, _ = g.edge_index
    keep = s_idx[None, :] != torch.arange(len(g.senders))[:, None]  # [sender, edge]: all but its edges
    base = "clean" if options.direction == "noise" else "corrupted"
    pm = patched_metrics(prep, keep, batch_size=prep.batch_size, base=base, progress=progress,
                         what=f"exact nodes ({options.direction})")
    effect = pm.clean[None] - pm.patched if options.direction == "noise" else pm.patched - pm.corrupted[None]
    return NodeScores(
        graph=g, scores=effect.mean(1).float(), method="exact", metric=metric,
        config={**options_config(options), "granularity": "node"},
        clean_metric=float(pm.clean.mean()), corrupted_metric=float(pm.corrupted.mean()),
        n_examples=len(tok), seconds=time.perf_counter() - t0,
    )


METHOD = DiscoveryMethod(
    "exact", "Exact patching of every edge, one forward each (small graphs); nodes: one forward per sender.",
    ExactOptions, score_exact, nodes=exact_node_scores,
)

__all__ = ["MAX_EXACT_EDGES", "METHOD", "Direction", "ExactOptions", "exact_edge_scores", "exact_node_scores",
           "score_exact"]
