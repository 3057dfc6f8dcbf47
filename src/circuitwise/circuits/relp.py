"""RelP: relevance patching — EAP with LRP's propagation coefficients in place of the gradient.

``score(s → r) = (clean_s − corrupted_s) · R_r``, where ``R_r`` is what Layer-wise Relevance
Propagation sends back to receiver ``r``'s input instead of ``∂metric/∂input_r`` (Jafari, Eberle,
Khakzar and Nanda 2025, "RelP: Faithful and Efficient Circuit Discovery via Relevance Patching").
The rules are :mod:`circuitwise.models.relevance`'s: the LN-rule for every norm (final norm
included), the identity rule for activations, the half rule for gated MLPs, and, with
``attention_rule=True``, the AH-rule (attention weights constant: query and key edges then score 0).
RelP's reference defaults (``LN-rule``, ``Identity-rule``, ``Half-rule``) are these defaults. Like EAP,
one forward pair and one backward per batch; ``gradient`` is the run the coefficients are taken at
(clean: attribution patching's noising convention, as RelP's paper computes them).

Defined where the rules are: not for soft-capped attention scores or logits (Gemma 2), which are
refused before any work.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from circuitwise.circuits.eap import EAPOptions, score_eap
from circuitwise.circuits.forward import graph_model
from circuitwise.circuits.registry import DiscoveryMethod, Gradient, check_choice, options_config
from circuitwise.circuits.scores import EdgeScores, Progress, no_progress
from circuitwise.errors import ConfigError
from circuitwise.models.relevance import Rules, relevance, undefined_for
from circuitwise.models.weights import supports
from circuitwise.tasks.tokenize import TokenizedTask


@dataclass(frozen=True)
class RelPOptions:
    """``gradient``: the run the relevance coefficients are taken at; ``attention_rule``: also hold
    attention weights constant (AH-rule; off in RelP's reference defaults)."""

    gradient: Gradient = "clean"
    attention_rule: bool = False

    def __post_init__(self) -> None:
        check_choice("relp", "gradient", self.gradient, Gradient)
        if not isinstance(self.attention_rule, bool):
            raise ConfigError(f"relp's attention_rule is true or false, not {self.attention_rule!r}.")


def cannot_relp(model: Any) -> str | None:
    """Why RelP's rules do not cover ``model`` (before any work), or None."""
    why = supports(model)
    if why is not None:
        return None  # the engine's own refusal says it, as for every method
    return undefined_for(graph_model(model).w)


def score_relp(model: Any, tok: TokenizedTask, options: RelPOptions, *, batch_size: int | None = None,
               metric: str = "logit_diff", progress: Progress = no_progress, check: bool = True) -> EdgeScores:
    why = cannot_relp(model)
    if why is not None:
        raise ConfigError(f"relp cannot run on this model: {why}.")
    # EAP's own scoring (its kl refusal, checks and engine), backpropagating by the rules: forwards are unchanged.
    with relevance(Rules(attention=options.attention_rule)):
        scores = score_eap(model, tok, EAPOptions(options.gradient), batch_size=batch_size, metric=metric,
                           progress=progress, check=check)
    return replace(scores, method="relp", config=options_config(options))


def relp(model: Any, tok: TokenizedTask, *, gradient: Gradient = RelPOptions.gradient,
         attention_rule: bool = RelPOptions.attention_rule, batch_size: int | None = None,
         metric: str = "logit_diff", progress: Progress = no_progress, check: bool = True) -> EdgeScores:
    """Score every edge by ``(clean_s − corrupted_s) · R_r`` (relevance patching)."""
    return score_relp(model, tok, RelPOptions(gradient, attention_rule), batch_size=batch_size, metric=metric,
                      progress=progress, check=check)


METHOD = DiscoveryMethod(
    "relp", "Relevance patching: EAP with LRP's propagation rules (LN, identity, half) in place of the gradient.",
    RelPOptions, score_relp, supports=cannot_relp,
)

__all__ = ["METHOD", "RelPOptions", "cannot_relp", "relp", "score_relp"]
