"""The two unpatched runs of one batch: the run being patched (base) and the one patched in (source).

``denoise`` patches clean activations into the corrupted run (base = corrupted, source = clean);
``noise`` patches corrupted activations into the clean run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable

import torch

from circuitwise.metrics import Targets, gather_last, readout, targets_of
from circuitwise.models import placement
from circuitwise.tasks.tokenize import TokenizedTask

MetricFn = Callable[[torch.Tensor], torch.Tensor]


@dataclass
class PairRun:
    tok: TokenizedTask
    direction: str
    base_tokens: torch.Tensor
    base: dict[str, torch.Tensor]
    src: dict[str, torch.Tensor]
    base_metric: torch.Tensor  # [batch]
    src_metric: torch.Tensor  # [batch]

    @property
    def clean_metric(self) -> torch.Tensor:
        return self.src_metric if self.direction == "denoise" else self.base_metric

    @property
    def corrupted_metric(self) -> torch.Tensor:
        return self.base_metric if self.direction == "denoise" else self.src_metric


def answer_logits_from_final(model: Any, final: torch.Tensor, answers: torch.Tensor | Targets) -> torch.Tensor:
    """The metric's read-out columns (the two answer logits first) from ``ln_final.hook_out`` rows ``[batch, d_model]``.

    Two unembedding columns instead of the whole vocabulary where the metric allows: the same
    numbers as the model's logits at those tokens (to float rounding).
    """
    cap = getattr(model.cfg, "output_logits_soft_cap", -1.0) or -1.0
    return readout(final, model.W_U, getattr(model, "b_U", None), answers, float(cap) if cap > 0 else None)


def _run(model: Any, tokens: torch.Tensor, names: set[str], tok: TokenizedTask, metric: MetricFn):
    want = names | {"ln_final.hook_out"}
    _, cache = model.run_with_cache(tokens, names_filter=lambda n: n in want, return_type=None,
                                    device=placement.cache_device(model))
    final = gather_last(cache["ln_final.hook_out"], tok.last)
    m = metric(answer_logits_from_final(model, final, targets_of(tok)))
    return {n: cache[n] for n in names}, m


def cache_pair(
    model: Any,
    tok: TokenizedTask,
    direction: str,
    metric: MetricFn,
    base_names: Iterable[str],
    src_names: Iterable[str],
) -> PairRun:
    """Run both prompts of a batch once, keeping only the named activations."""
    assert tok.corrupted is not None
    clean, corrupted = tok.clean, tok.corrupted
    base_tokens, src_tokens = (corrupted, clean) if direction == "denoise" else (clean, corrupted)
    base, base_metric = _run(model, base_tokens, set(base_names), tok, metric)
    src, src_metric = _run(model, src_tokens, set(src_names), tok, metric)
    return PairRun(tok, direction, base_tokens, base, src, base_metric, src_metric)


__all__ = ["MetricFn", "PairRun", "answer_logits_from_final", "cache_pair"]
