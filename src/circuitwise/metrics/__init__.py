"""Stage 3: metrics. A metric maps each example's read-out columns to one number.

The engines read the final residual into a few columns per example (:func:`readout`) instead of
full-vocabulary logits, so fast paths touch two unembedding columns where the metric allows:

- answer metrics (``logit_diff``): ``[..., 2]`` = the correct and incorrect answer's logits;
- vocabulary metrics (``prob``, ``logprob``, ``kl``): ``[..., 4]`` = those two, the log-sum-exp
  of every logit (the softmax's normaliser), and ``KL(ref ‖ softmax(logits))`` for ``kl``'s
  reference ``ref``, the clean run's next-token distribution (zero without one). The KL is summed
  term by term from log-probabilities: as ``lse − ref·logits − H(ref)`` it would cancel to 1e-6.

Every vocabulary column is exact (no sampling); the logits are built in row chunks so a stacked
run of many variants never holds a ``rows × vocab`` matrix at once.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Callable

import torch

from circuitwise.models.precision import wide_dtype

# Rows of full-vocabulary logits built at once by a vocabulary metric's read-out (chunks keep a
# stacked run's transient small: 32 rows × vocab × ~40 bytes, 64 MB at GPT-2's vocabulary, 164 MB at
# Llama 3's; see held_bytes).
READOUT_ROWS = 32


def logit_diff(answer_logits: torch.Tensor) -> torch.Tensor:
    """Correct minus incorrect logit, per example: ``[batch, k] -> [batch]``."""
    return answer_logits[..., 0] - answer_logits[..., 1]


def logprob(cols: torch.Tensor) -> torch.Tensor:
    """Log-probability of the correct answer: ``logit(correct) − logsumexp(logits)``."""
    return cols[..., 0] - cols[..., 2]


def prob(cols: torch.Tensor) -> torch.Tensor:
    """Probability of the correct answer."""
    return logprob(cols).exp()


def kl(cols: torch.Tensor) -> torch.Tensor:
    """KL divergence from the clean next-token distribution: 0 on the clean run, larger is further."""
    return cols[..., 3]


@dataclass(frozen=True)
class Metric:
    name: str
    fn: Callable[[torch.Tensor], torch.Tensor]
    description: str
    # Reads every vocabulary logit (the softmax), so the read-out gives four columns, not two.
    vocab: bool = False
    # Compares with the clean run's distribution, computed once per task before the work.
    reference: bool = False
    # Linear in the final residual (before the final norm's scale): DLA decomposes it exactly.
    linear: bool = False
    # Larger means closer to the clean run (all but kl); reports say "higher is better" or not.
    higher_is_clean: bool = True
    # In a sentence: "the clean and corrupted prompts give almost the same {label}".
    label: str = ""


METRICS: dict[str, Metric] = {
    "logit_diff": Metric("logit_diff", logit_diff, "logit(correct) − logit(incorrect) at the last token",
                         linear=True, label="logit difference"),
    "prob": Metric("prob", prob, "probability of the correct answer at the last token", vocab=True,
                   label="probability of the correct answer"),
    "logprob": Metric("logprob", logprob, "log-probability of the correct answer at the last token", vocab=True,
                      label="log-probability of the correct answer"),
    "kl": Metric("kl", kl, "KL divergence of the last token's distribution from the clean run's (0 = clean)",
                 vocab=True, reference=True, higher_is_clean=False, label="KL divergence from the clean run"),
}


def held_bytes(metric: Metric | str, n_prompts: int, d_vocab: int) -> int:
    """Memory a metric holds beside a stage's own: kl's clean reference (``N × vocab`` float32, for the
    whole run) and a vocabulary metric's read-out chunk (float32 logits and float64 copies of them, of
    the reference and of the terms: about 40 bytes per row and token). The memory plan adds it."""
    m = get_metric(metric) if isinstance(metric, str) else metric
    held = 4 * n_prompts * d_vocab if m.reference else 0
    return held + (40 * READOUT_ROWS * d_vocab if m.vocab else 0)


def get_metric(name: str) -> Metric:
    from circuitwise.errors import ConfigError

    if name not in METRICS:
        raise ConfigError(f"Unknown metric {name!r}. Choose one of: {', '.join(METRICS)}.")
    return METRICS[name]


@dataclass(frozen=True)
class Targets:
    """What the read-out needs per example: the answer ids and, for vocabulary metrics, the reference.

    Rows follow the task's examples; engines slice, index and repeat it along with their batch.
    """

    answers: torch.Tensor  # [N, 2] correct id, incorrect id
    vocab: bool = False
    ref: torch.Tensor | None = None  # [N, vocab] the clean run's next-token log-probabilities (kl)

    @property
    def width(self) -> int:
        return 4 if self.vocab else 2

    def __len__(self) -> int:
        return int(self.answers.shape[0])

    def __getitem__(self, idx: Any) -> Targets:
        return replace(self, answers=self.answers[idx], ref=None if self.ref is None else self.ref[idx])

    def repeat(self, k: int) -> Targets:
        """``k`` copies one after another, as a stacked run's rows are."""
        if k == 1:
            return self
        return replace(self, answers=self.answers.repeat(k, 1), ref=None if self.ref is None else self.ref.repeat(k, 1))

    def to(self, device: torch.device | str) -> Targets:
        return replace(self, answers=self.answers.to(device), ref=None if self.ref is None else self.ref.to(device))


def targets_of(tok: Any) -> Targets:
    """A tokenized task's (or batch's) targets: its answers and what its metric reads besides."""
    return Targets(tok.answers, bool(tok.vocab), tok.reference)


@torch.no_grad()
def clean_reference(model: Any, tok: Any, batch_size: int = 16) -> torch.Tensor:
    """kl's reference: the model's next-token log-probabilities on each clean prompt.

    ``[N, vocab]`` float32 on the task's device (``N × vocab × 4`` bytes: 40 MB for 200 prompts of
    GPT-2's vocabulary).
    """
    out = [reference_of(gather_last(model(b.clean), b.last)).to(tok.answers.device)
           for b in tok.batches(batch_size)]
    return torch.cat(out)


def prepared_for(model: Any, tok: Any, metric: Metric | str, batch_size: int = 16) -> Any:
    """``tok`` set up for ``metric`` on ``model`` (kl's reference computed here, once)."""
    from dataclasses import replace as _replace

    m = get_metric(metric) if isinstance(metric, str) else metric
    if m.reference and tok.reference is not None:
        return _replace(tok, vocab=True)
    ref = clean_reference(model, tok, batch_size) if m.reference else None
    return _replace(tok, vocab=m.vocab, reference=ref)


def as_targets(answers: torch.Tensor | Targets) -> Targets:
    return answers if isinstance(answers, Targets) else Targets(answers)


def reference_of(logits: torch.Tensor) -> torch.Tensor:
    """kl's reference from last-token logits ``[N, vocab]``: their log-probabilities (computed in
    float64, kept in float32 at least: its rounding then adds ~1e-9 to a KL)."""
    logp = logits.to(wide_dtype(logits.device)).log_softmax(-1)
    return logp if logits.dtype == torch.float64 else logp.float()


def readout(x: torch.Tensor, W_U: torch.Tensor, b_U: torch.Tensor | None, targets: Targets | torch.Tensor,
            soft_cap: float | None = None) -> torch.Tensor:
    """The metric's columns ``[n, width]`` from normed final residuals ``x`` ``[n, d]``.

    ``W_U`` is ``[d, vocab]``. Answer metrics read two unembedding columns per row; vocabulary
    metrics build each row's logits (in chunks of :data:`READOUT_ROWS` rows) and reduce them at once.
    """
    t = as_targets(targets)
    if not t.vocab:
        # The answer columns come to the rows (a split model's unembedding may be on another device).
        ans = t.answers.to(W_U.device)
        logits = torch.einsum("nd,dnk->nk", x, W_U[:, ans].to(x.device, x.dtype))
        if b_U is not None:
            logits = logits + b_U[ans].to(x.device, x.dtype)
        return _cap(logits, soft_cap)
    parts = []
    for lo in range(0, x.shape[0], READOUT_ROWS):
        # Whole rows of logits: the rows go to the unembedding, their read-out columns come back.
        logits = x[lo:lo + READOUT_ROWS].to(W_U.device) @ W_U.to(x.dtype)
        if b_U is not None:
            logits = logits + b_U.to(x.dtype)
        parts.append(columns(_cap(logits, soft_cap), t[lo:lo + READOUT_ROWS]).to(x.device))
    return torch.cat(parts) if parts else x.new_zeros(0, 4)


def columns(logits: torch.Tensor, targets: Targets | torch.Tensor) -> torch.Tensor:
    """The read-out columns ``[n, width]`` from full last-token logits ``[n, vocab]``."""
    t = as_targets(targets)
    ans = t.answers.to(logits.device)
    if not t.vocab:
        return logits.gather(-1, ans)
    # Reduced in float64: logprob and kl are small differences of terms near log(vocab) ≈ 11, where
    # float32's spacing (1e-6) would be the whole KL of a small patch (on MPS, which has no float64,
    # that is the precision). Returned in float32 at least.
    full = logits.to(wide_dtype(logits.device))
    lse = full.logsumexp(-1, keepdim=True)
    cols = [full.gather(-1, ans), lse]
    if t.ref is not None:
        ref = t.ref.to(full.device, full.dtype)
        p = ref.exp()
        # 0 · log 0 = 0: a token the clean run never predicts adds nothing (its log-prob is −inf).
        terms = torch.where(p > 0, p * (ref - (full - lse)), torch.zeros((), dtype=full.dtype, device=full.device))
        cols.append(terms.sum(-1, keepdim=True))
    else:
        cols.append(torch.zeros_like(lse))
    out = torch.float32 if logits.dtype in (torch.float16, torch.bfloat16) else logits.dtype
    return torch.cat(cols, -1).to(out)


def _cap(logits: torch.Tensor, soft_cap: float | None) -> torch.Tensor:
    return logits if soft_cap is None else torch.tanh(logits / soft_cap) * soft_cap


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


__all__ = ["METRICS", "READOUT_ROWS", "Metric", "Targets", "answer_directions", "answer_logits", "as_targets",
           "columns", "gather_last", "get_metric", "kl", "logit_diff", "logprob", "prob", "readout",
           "clean_reference", "held_bytes", "prepared_for", "reference_of", "targets_of"]
