"""Metrics computed the plain way, from a model's full last-token logits: the reference every
engine's read-out columns (circuitwise.metrics.readout) are checked against."""

from __future__ import annotations

import torch

VOCAB_METRICS = ("prob", "logprob", "kl")


def reference_logprobs(model, tokens, last):
    """The clean run's next-token log-probabilities ``[batch, vocab]`` (kl's reference), in float64."""
    with torch.no_grad():
        logits = model(tokens)
    return logits[torch.arange(tokens.shape[0]), last].double().log_softmax(-1)


def plain_metric(name, last_logits, answers, ref_logp=None):
    """``name`` per example from full logits ``[batch, vocab]`` (float64, straight from the definition)."""
    logp = last_logits.double().log_softmax(-1)
    a = last_logits.double().gather(-1, answers)
    if name == "logit_diff":
        return a[:, 0] - a[:, 1]
    correct = logp.gather(-1, answers[:, :1])[:, 0]
    if name == "logprob":
        return correct
    if name == "prob":
        return correct.exp()
    if name == "kl":
        return (ref_logp.exp() * (ref_logp - logp)).sum(-1)
    raise ValueError(name)


def tl_metric(name, tok, ref_logp=None, rows=None, reduce=True):
    """A TransformerLens-style metric callable on logits ``[batch, pos, vocab]`` for ``tok``'s rows."""
    def metric(logits):
        idx = torch.arange(logits.shape[0]) if rows is None else torch.as_tensor(rows)
        last = tok.last[idx].to(logits.device)
        m = plain_metric(name, logits[torch.arange(logits.shape[0]), last], tok.answers[idx].to(logits.device),
                         None if ref_logp is None else ref_logp[idx].to(logits.device))
        return m.mean() if reduce else m

    return metric
