"""Baseline: the model's own answer on each clean prompt (logit difference, accuracy, top-k)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch

from circuitwise.metrics import columns, gather_last, get_metric, logit_diff, targets_of
from circuitwise.tasks.tokenize import TokenizedTask
from circuitwise.types import Shows


@dataclass(frozen=True)
class TopToken:
    token: str
    id: int
    logit: float
    prob: float


@dataclass(frozen=True, repr=False)
class Baseline(Shows):
    """Per-example answer logits and the top-k next tokens on the clean prompts."""

    answer_logits: torch.Tensor  # [batch, 2]
    answer_probs: torch.Tensor  # [batch, 2]
    correct_rank: torch.Tensor  # [batch] 0 = the model's top prediction
    top_k: tuple[tuple[TopToken, ...], ...]
    # The chosen metric per prompt when it is not the logit difference (prob, logprob, kl).
    metric: str = "logit_diff"
    metric_values: torch.Tensor | None = None  # [batch]

    @property
    def values(self) -> torch.Tensor:
        """The chosen metric per prompt (the logit difference unless another was asked for)."""
        return self.logit_diff if self.metric_values is None else self.metric_values

    @property
    def logit_diff(self) -> torch.Tensor:
        return logit_diff(self.answer_logits)

    @property
    def accuracy(self) -> float:
        return float((self.logit_diff > 0).float().mean())

    def __repr__(self) -> str:
        return (f"Baseline({len(self.top_k)} prompts: mean logit diff {float(self.logit_diff.mean()):+.3f}, "
                f"accuracy {self.accuracy:.0%})")

    def to_json(self) -> dict[str, Any]:
        ld = self.logit_diff
        return {
            "logit_diff": {"per_prompt": ld.tolist(), "mean": float(ld.mean())},
            "accuracy": self.accuracy,
            "answer_logits": self.answer_logits.tolist(),
            "answer_probs": self.answer_probs.tolist(),
            "correct_rank": self.correct_rank.tolist(),
            "top_k": [[t.__dict__ for t in row] for row in self.top_k],
            **({} if self.metric_values is None else
               {"metric": {"name": self.metric, "per_prompt": self.metric_values.tolist(),
                           "mean": float(self.metric_values.mean())}}),
        }


@torch.inference_mode()
def baseline(model: Any, tok: TokenizedTask, *, top_k: int = 10, batch_size: int = 32,
             progress: Callable[[int, int], None] | None = None, metric: str = "logit_diff") -> Baseline:
    """Run the clean prompts and read each at its own last token; ``progress(done, total)`` per batch.

    ``metric`` other than the logit difference is also read per prompt (``tok`` set up for it by
    :func:`circuitwise.metrics.prepared_for`: kl compares with the reference it carries).
    """
    chosen = get_metric(metric)
    ans_l, ans_p, ranks, tops, values = [], [], [], [], []
    n_batches = -(-len(tok) // batch_size)
    for bi, b in enumerate(tok.batches(batch_size)):
        if progress is not None:
            progress(bi, n_batches)
        last_logits = gather_last(model(b.clean), b.last).float()  # [batch, vocab]
        logprobs = last_logits.log_softmax(-1)
        a = last_logits.gather(-1, b.answers)
        ans_l.append(a)
        if chosen.name != "logit_diff":
            values.append(chosen.fn(columns(last_logits, targets_of(b))).float())
        ans_p.append(logprobs.gather(-1, b.answers).exp())
        ranks.append((last_logits > a[:, :1]).sum(-1))
        k = min(top_k, last_logits.shape[-1])
        vals, ids = last_logits.topk(k, dim=-1)
        for row_v, row_i, row_lp in zip(vals, ids, logprobs):
            tops.append(tuple(
                TopToken(model.tokenizer.decode([int(i)]), int(i), float(v), float(row_lp[i].exp()))
                for v, i in zip(row_v, row_i)
            ))
    if progress is not None:
        progress(n_batches, n_batches)
    return Baseline(torch.cat(ans_l).cpu(), torch.cat(ans_p).cpu(), torch.cat(ranks).cpu(), tuple(tops),
                    chosen.name, torch.cat(values).cpu() if values else None)


__all__ = ["Baseline", "TopToken", "baseline"]
