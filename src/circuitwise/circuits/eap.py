"""EAP: edge attribution patching — one gradient per edge (Syed et al., 2023).

``score(s → r) = (clean_s − corrupted_s) · ∂metric/∂input_r``, the gradient taken at the clean run
(``gradient="clean"``, noising: the EAP-IG / MIB / auto-circuit convention, ≈ what corrupting the
edge alone in the clean run costs) or at the corrupted run (``gradient="corrupted"``, denoising:
TransformerLens's ``attribution_patch(granularity="edge")`` summed over positions, ≈ what restoring
the edge alone in the corrupted run gains). Computed for all edges and a batch in one backward.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from circuitwise.circuits.gradients import gradient_edge_scores
from circuitwise.circuits.positional import (
    PositionOption,
    check_positions,
    positional_gradient_scores,
)
from circuitwise.circuits.positional_kq import KVPositions, check_kv_positions, kq_gradient_scores
from circuitwise.circuits.registry import DiscoveryMethod, Gradient, check_choice, options_config
from circuitwise.circuits.scores import EdgeScores, Prepared, Progress, no_progress, prepare
from circuitwise.errors import ConfigError
from circuitwise.metrics import get_metric
from circuitwise.tasks.tokenize import TokenizedTask


@dataclass(frozen=True)
class EAPOptions:
    """``gradient``: the run the gradient is taken at (see the module docstring); ``positions``:
    also split each score over token positions or task roles (:mod:`circuitwise.circuits.positional`);
    ``kv_positions="key-query"``: also split key/value edges by query position
    (:mod:`circuitwise.circuits.positional_kq`)."""

    gradient: Gradient = "clean"
    positions: PositionOption = "none"
    kv_positions: KVPositions = "key"

    def __post_init__(self) -> None:
        check_choice("eap", "gradient", self.gradient, Gradient)
        check_choice("eap", "positions", self.positions, PositionOption)
        check_choice("eap", "kv_positions", self.kv_positions, KVPositions)
        check_kv_positions("eap", self.positions, self.kv_positions)


def score_eap(model: Any, tok: TokenizedTask, options: EAPOptions, *, batch_size: int | None = None,
              metric: str = "logit_diff", progress: Progress = no_progress, check: bool = True) -> EdgeScores:
    if options.gradient == "clean" and get_metric(metric).reference:
        # circuits.methods.check_metric says it to the front ends before any work; this guards the library.
        raise ConfigError("kl has zero gradient at the clean run, so EAP (or RelP) with its gradient there scores "
                          "every edge 0; use gradient='corrupted', or eap-ig.")
    check_positions(model, tok, options)  # the runner's plan has said it already; this guards the library
    prep = prepare(model, tok, metric, check=check, batch_size=batch_size)
    alpha = 1.0 if options.gradient == "clean" else 0.0
    return split_gradient_scores(prep, [alpha], [1.0], options.positions, options.kv_positions, method="eap",
                                 config=options_config(options), progress=progress)


def split_gradient_scores(prep: Prepared, alphas: Sequence[float], weights: Sequence[float],
                          positions: PositionOption, kv_positions: KVPositions, *, method: str,
                          config: dict[str, Any], progress: Progress) -> EdgeScores:
    """Gradient edge scores at the points ``alphas`` (weights ``weights``), split as ``positions`` and
    ``kv_positions`` ask: EAP's one point and EAP-IG's path take the same three engines."""
    config = dict(config)
    del config["kv_positions"]  # recorded by key-query scores only: other scores record what they always did
    if kv_positions == "key-query":
        return kq_gradient_scores(prep, alphas, weights, positions, method=method, config=config,
                                  progress=progress)
    if positions != "none":
        return positional_gradient_scores(prep, alphas, weights, positions, method=method, config=config,
                                          progress=progress)
    del config["positions"]  # position-agnostic scores record what they always did
    return gradient_edge_scores(prep, alphas, weights, batch_size=prep.batch_size, method=method,
                                config=config, progress=progress)


def eap(
    model: Any,
    tok: TokenizedTask,
    *,
    gradient: Gradient = EAPOptions.gradient,
    positions: PositionOption = EAPOptions.positions,
    kv_positions: KVPositions = EAPOptions.kv_positions,
    batch_size: int | None = None,
    metric: str = "logit_diff",
    progress: Progress = no_progress,
    check: bool = True,
) -> EdgeScores:
    """Score every edge by ``(clean_s − corrupted_s) · ∂metric/∂input_r`` at the ``gradient`` run."""
    return score_eap(model, tok, EAPOptions(gradient, positions, kv_positions), batch_size=batch_size, metric=metric,
                     progress=progress, check=check)


METHOD = DiscoveryMethod(
    "eap", "Edge attribution patching: one gradient, at the clean run (or --gradient corrupted).",
    EAPOptions, score_eap, check_prompts=check_positions,
)

__all__ = ["METHOD", "EAPOptions", "eap", "score_eap"]
