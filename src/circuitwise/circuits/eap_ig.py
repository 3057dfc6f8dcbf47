"""EAP-IG: edge attribution with integrated gradients on the input embedding (Hanna et al., 2024).

``score(s → r) = (clean_s − corrupted_s) · Σ_k w_k ∂metric/∂input_r(x(α_k))`` with the input
embedding (token + position) on the straight line ``x(α) = e_corr + α (e_clean − e_corr)`` and the
rest of the model running freely from it. The points α_k and weights w_k are the ``quadrature``
(:data:`~circuitwise.circuits.registry.Quadrature`): ``right`` (α = k/n, k = 1…n; circuitkit's
EAP-IG-inputs and EAP-IG's node-level methods), ``left`` (α = k/n, k = 0…n−1; the edge-level
``get_scores_eap_ig`` of hannamw/EAP-IG that MIB runs), ``midpoint`` (circuitwise before 0.2),
``trapezoid``. EAP's single gradient saturates where the model is far from linear; integrating
along the path repairs much of that. With one step, ``right`` is EAP at the clean run and ``left``
EAP at the corrupted run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from circuitwise.circuits.eap import split_gradient_scores
from circuitwise.circuits.gradients import quadrature_points
from circuitwise.circuits.positional import PositionOption, check_positions
from circuitwise.circuits.positional_kq import KVPositions, check_kv_positions
from circuitwise.circuits.registry import DiscoveryMethod, Quadrature, check_choice, check_steps, options_config
from circuitwise.circuits.scores import EdgeScores, Progress, no_progress, prepare
from circuitwise.tasks.tokenize import TokenizedTask


@dataclass(frozen=True)
class EAPIGOptions:
    """``steps``: integration steps (gradients: steps, or steps + 1 for the trapezoid rule);
    ``quadrature``: where along the corrupted → clean path they are taken; ``positions``: also split
    each score over token positions or task roles (:mod:`circuitwise.circuits.positional`);
    ``kv_positions="key-query"``: also split key/value edges by query position
    (:mod:`circuitwise.circuits.positional_kq`)."""

    steps: int = 5
    # MIB's reference (hannamw/EAP-IG's edge-level EAP-IG-inputs at 7af394a, the commit MIB's
    # circuit track pins) sums α = k/n for k = 0…n−1: the default, so scores compare with MIB's.
    quadrature: Quadrature = "left"
    positions: PositionOption = "none"
    kv_positions: KVPositions = "key"

    def __post_init__(self) -> None:
        check_steps("EAP-IG", self.steps)
        check_choice("eap-ig", "quadrature", self.quadrature, Quadrature)
        check_choice("eap-ig", "positions", self.positions, PositionOption)
        check_choice("eap-ig", "kv_positions", self.kv_positions, KVPositions)
        check_kv_positions("eap-ig", self.positions, self.kv_positions)


#: Kept for callers of circuitwise 0.1.
DEFAULT_STEPS = EAPIGOptions.steps


def ig_alphas(steps: int, quadrature: Quadrature = EAPIGOptions.quadrature) -> list[float]:
    """The integration points α (0 = corrupted, 1 = clean) of ``quadrature`` with ``steps`` steps."""
    opts = EAPIGOptions(steps, quadrature)
    return quadrature_points(opts.quadrature, opts.steps)[0]


def score_eap_ig(model: Any, tok: TokenizedTask, options: EAPIGOptions, *, batch_size: int | None = None,
                 metric: str = "logit_diff", progress: Progress = no_progress, check: bool = True) -> EdgeScores:
    alphas, weights = quadrature_points(options.quadrature, options.steps)
    check_positions(model, tok, options)  # the runner's plan has said it already; this guards the library
    prep = prepare(model, tok, metric, check=check, batch_size=batch_size)
    return split_gradient_scores(prep, alphas, weights, options.positions, options.kv_positions, method="eap-ig",
                                 config={**options_config(options), "interpolation": "input-embedding"},
                                 progress=progress)


def eap_ig(
    model: Any,
    tok: TokenizedTask,
    *,
    steps: int = EAPIGOptions.steps,
    quadrature: Quadrature = EAPIGOptions.quadrature,
    positions: PositionOption = EAPIGOptions.positions,
    kv_positions: KVPositions = EAPIGOptions.kv_positions,
    batch_size: int | None = None,
    metric: str = "logit_diff",
    progress: Progress = no_progress,
    check: bool = True,
) -> EdgeScores:
    """Score every edge by ``(clean_s − corrupted_s) · Σ_k w_k ∂metric/∂input_r(x(α_k))``."""
    return score_eap_ig(model, tok, EAPIGOptions(steps, quadrature, positions, kv_positions), batch_size=batch_size,
                        metric=metric, progress=progress, check=check)


METHOD = DiscoveryMethod(
    "eap-ig",
    "EAP with integrated gradients on the input embedding (left points k = 0…n−1 by default, as MIB's reference).",
    EAPIGOptions, score_eap_ig, check_prompts=check_positions,
)

__all__ = ["DEFAULT_STEPS", "METHOD", "EAPIGOptions", "eap_ig", "ig_alphas", "score_eap_ig"]
