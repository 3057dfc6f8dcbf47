"""EAP-IG: edge attribution with integrated gradients on the input embedding (Hanna et al., 2024).

The gradient of the metric with respect to every receiver's input is averaged over ``steps``
points on the straight line from the corrupted to the clean input embedding (token + position),
at the midpoints ``α = (k + ½) / steps`` (the midpoint rule, the most accurate Riemann sum for a
given number of forwards), and dotted with each sender's clean − corrupted output difference.
EAP's single gradient at α = 0 saturates where the model is far from linear; integrating along
the path repairs much of that.
"""

from __future__ import annotations

from typing import Any

from circuitwise.circuits.gradients import gradient_edge_scores
from circuitwise.circuits.scores import EdgeScores, Progress, no_progress, prepare
from circuitwise.errors import ConfigError
from circuitwise.tasks.tokenize import TokenizedTask

DEFAULT_STEPS = 5


def ig_alphas(steps: int) -> list[float]:
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ConfigError(f"EAP-IG needs a positive whole number of steps, got {steps!r} (5 to 20 is usual).")
    return [(k + 0.5) / steps for k in range(steps)]


def eap_ig(
    model: Any,
    tok: TokenizedTask,
    *,
    steps: int = DEFAULT_STEPS,
    batch_size: int | None = None,
    metric: str = "logit_diff",
    progress: Progress = no_progress,
    check: bool = True,
) -> EdgeScores:
    """Score every edge by ``(clean_s − corrupted_s) · mean_α ∂metric/∂input_r(x(α))``."""
    alphas = ig_alphas(steps)
    prep = prepare(model, tok, metric, check=check, batch_size=batch_size)
    return gradient_edge_scores(prep, alphas, batch_size=prep.batch_size, method="eap-ig",
                                config={"steps": steps, "interpolation": "input-embedding", "rule": "midpoint"},
                                progress=progress)


__all__ = ["DEFAULT_STEPS", "eap_ig", "ig_alphas"]
