"""LRP propagation rules as kernels whose forward is unchanged and whose backward is the rule's.

Relevance patching (RelP; Jafari, Eberle, Khakzar and Nanda, 2025) replaces attribution patching's
local gradients with Layer-wise Relevance Propagation's coefficients. In gradient × input form each
rule is a forward whose value is the layer's own but whose derivative is the rule's:

- **LN-rule** (Ali et al., 2022): a norm's divisor is a constant — ``x / scale(x).detach()``; a
  LayerNorm's centring (linear) is kept.
- **Identity rule** (Jafari et al., 2024): an elementwise activation passes relevance as if it were
  the identity scaled by its own ratio — ``x · (act(x) / x).detach()``.
- **Half rule** (Arras et al., 2019; Jafari et al., 2024): a multiplicative gate ``a · b`` sends half
  of the relevance to each factor — ``y / 2 + (y / 2).detach()``.
- **AH-rule** (Ali et al., 2022), off by default as in RelP's reference: attention weights are
  constants — ``pattern.detach()``, so no relevance reaches queries and keys.

Linear layers keep their gradient (LRP-0 in gradient × input form). The engines' kernels
(:mod:`circuitwise.models.kernels`, :class:`circuitwise.models.weights.Norm`) read the rules active in
the calling context (:func:`relevance`); outside it nothing changes. Rules are not defined for
soft-capped attention scores or logits (tanh caps), so :func:`undefined_for` names such models.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import torch


@dataclass(frozen=True)
class Rules:
    """Which LRP rules replace the gradient (RelP's reference default: norm, activation, gate)."""

    norm: bool = True
    activation: bool = True
    gate: bool = True
    attention: bool = False


_ACTIVE: ContextVar[Rules | None] = ContextVar("circuitwise_relevance_rules", default=None)


@contextmanager
def relevance(rules: Rules) -> Iterator[None]:
    """Within this block (and the engine threads it starts), the kernels backpropagate by ``rules``."""
    token = _ACTIVE.set(rules)
    try:
        yield
    finally:
        _ACTIVE.reset(token)


def active() -> Rules | None:
    return _ACTIVE.get()


def _stabilize(x: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    # Away from zero, keeping the sign (a zero goes to +eps), so the ratio act(x)/x is finite.
    return x + ((x == 0).to(x.dtype) + x.sign()) * eps


def activation(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``y = act(x)`` with the identity rule's derivative ``act(x)/x`` where the rule is active."""
    rules = _ACTIVE.get()
    if rules is None or not rules.activation:
        return y
    xs = _stabilize(x)
    return xs * (y / xs).detach()


def gate(y: torch.Tensor) -> torch.Tensor:
    """A gated product ``y = a · b`` whose relevance splits half to each factor where the rule is active."""
    rules = _ACTIVE.get()
    if rules is None or not rules.gate:
        return y
    half = y / 2
    return half + half.detach()


def pattern(p: torch.Tensor) -> torch.Tensor:
    """Attention weights, constants under the AH-rule."""
    rules = _ACTIVE.get()
    return p.detach() if rules is not None and rules.attention else p


def norm_rule() -> bool:
    rules = _ACTIVE.get()
    return rules is not None and rules.norm


def undefined_for(w: Any) -> str | None:
    """Why the rules do not cover a model's weights (:class:`~circuitwise.models.weights.Weights`), or None."""
    if getattr(w, "logit_softcap", None) is not None or any(getattr(lw, "softcap", None) is not None
                                                             for lw in w.layers):
        return ("its attention scores or logits are soft-capped (tanh), for which LRP defines no propagation "
                "rule; use eap or eap-ig")
    return None


__all__ = ["Rules", "activation", "active", "gate", "norm_rule", "pattern", "relevance", "undefined_for"]
