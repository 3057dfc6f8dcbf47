"""Stage 3: metrics. A metric maps the two answer logits of each example to one number.

Working on ``[batch, 2]`` answer logits (correct, incorrect) instead of full-vocabulary logits
lets fast paths compute only the two unembedding columns they need.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch


def logit_diff(answer_logits: torch.Tensor) -> torch.Tensor:
    """Correct minus incorrect logit, per example: ``[batch, 2] -> [batch]``."""
    return answer_logits[..., 0] - answer_logits[..., 1]


@dataclass(frozen=True)
class Metric:
    name: str
    fn: Callable[[torch.Tensor], torch.Tensor]
    description: str


METRICS: dict[str, Metric] = {
    "logit_diff": Metric("logit_diff", logit_diff, "logit(correct) − logit(incorrect) at the last token"),
}


def get_metric(name: str) -> Metric:
    from circuitwise.errors import ConfigError

    if name not in METRICS:
        raise ConfigError(f"Unknown metric {name!r}. Choose one of: {', '.join(METRICS)}.")
    return METRICS[name]


def gather_last(x: torch.Tensor, last: torch.Tensor) -> torch.Tensor:
    """``x[b, last[b]]`` for ``x`` of shape ``[batch, pos, ...]``."""
    idx = last.to(x.device).view(-1, *([1] * (x.dim() - 1))).expand(-1, 1, *x.shape[2:])
    return x.gather(1, idx).squeeze(1)


def answer_logits(logits: torch.Tensor, last: torch.Tensor, answers: torch.Tensor) -> torch.Tensor:
    """Answer logits ``[batch, 2]`` from full logits ``[batch, pos, vocab]`` at each last token."""
    return gather_last(logits, last).gather(-1, answers.to(logits.device))


def answer_directions(model: Any, answers: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Residual directions and unembedding-bias of the logit difference, per example.

    Returns ``(direction [batch, d_model], bias [batch])`` with
    ``logit_diff = ln_final(resid) @ direction + bias``.
    """
    W_U = model.W_U
    dirs = W_U[:, answers[:, 0]].T - W_U[:, answers[:, 1]].T
    b_U = getattr(model, "b_U", None)
    if b_U is None:
        bias = torch.zeros(answers.shape[0], device=W_U.device, dtype=W_U.dtype)
    else:
        bias = b_U[answers[:, 0]] - b_U[answers[:, 1]]
    return dirs, bias


__all__ = ["METRICS", "Metric", "answer_directions", "answer_logits", "gather_last", "get_metric", "logit_diff"]
