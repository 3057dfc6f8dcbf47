"""EAP: edge attribution patching — one gradient at the corrupted run (Syed et al., 2023).

Equal to TransformerLens's ``attribution_patch(granularity="edge")`` summed over positions and
averaged over examples (tested), computed for all edges and a whole batch in one backward.
"""

from __future__ import annotations

from typing import Any

from circuitwise.circuits.gradients import gradient_edge_scores
from circuitwise.circuits.scores import EdgeScores, Progress, no_progress, prepare
from circuitwise.tasks.tokenize import TokenizedTask


def eap(
    model: Any,
    tok: TokenizedTask,
    *,
    batch_size: int | None = None,
    metric: str = "logit_diff",
    progress: Progress = no_progress,
    check: bool = True,
) -> EdgeScores:
    """Score every edge by ``(clean_s − corrupted_s) · ∂metric/∂input_r`` at the corrupted run."""
    prep = prepare(model, tok, metric, check=check, batch_size=batch_size)
    return gradient_edge_scores(prep, [0.0], batch_size=prep.batch_size, method="eap", config={}, progress=progress)


__all__ = ["eap"]
