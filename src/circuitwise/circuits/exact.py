"""Exact edge patching: one patched forward per edge (stacked), for small graphs and shortlists.

Two directions, both signed like attribution (positive = the edge's clean value raises the metric):

- ``noise``: run the clean prompts with only this edge read from the corrupted run;
  score = metric(clean) − metric(patched). What removing the edge from the full model costs.
- ``denoise``: run the corrupted prompts with only this edge read from the clean run;
  score = metric(patched) − metric(corrupted). What EAP's gradient at the corrupted run linearises.
"""

from __future__ import annotations

import time
from typing import Any, Literal, Sequence, get_args

import torch

from circuitwise.circuits.patch import patched_metrics
from circuitwise.circuits.scores import EdgeScores, Progress, no_progress, prepare
from circuitwise.errors import ConfigError
from circuitwise.tasks.tokenize import TokenizedTask

Direction = Literal["noise", "denoise"]

#: Above this many edges, scoring every edge exactly is refused unless ``edges`` names a shortlist.
MAX_EXACT_EDGES = 5000


def exact_edge_scores(
    model: Any,
    tok: TokenizedTask,
    *,
    edges: Sequence[int] | torch.Tensor | None = None,
    direction: Direction = "noise",
    batch_size: int | None = None,
    metric: str = "logit_diff",
    progress: Progress = no_progress,
    check: bool = True,
) -> EdgeScores:
    """Exact effect of each edge (all edges, or the indices in ``edges``; others are NaN)."""
    if direction not in get_args(Direction):
        raise ConfigError(f"Unknown direction {direction!r}. Choose one of: {', '.join(get_args(Direction))}.")
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
        config={"direction": direction, "n_scored": int(idx.numel())},
        clean_metric=float(pm.clean.mean()), corrupted_metric=float(pm.corrupted.mean()),
        n_examples=len(tok), seconds=time.perf_counter() - t0,
    )


__all__ = ["MAX_EXACT_EDGES", "Direction", "exact_edge_scores"]
