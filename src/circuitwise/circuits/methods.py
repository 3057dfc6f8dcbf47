"""The discovery-method registry: a frozen entry per method, all with one signature.

Every method is called as ``method.run(model, tok, *, batch_size, metric, progress, check,
**options)`` and returns :class:`~circuitwise.circuits.scores.EdgeScores`.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Callable, Literal, Mapping

from circuitwise.circuits.eap import eap
from circuitwise.circuits.eap_ig import DEFAULT_STEPS, eap_ig
from circuitwise.circuits.exact import exact_edge_scores
from circuitwise.circuits.scores import EdgeScores
from circuitwise.errors import ConfigError
from circuitwise.tasks.tokenize import TokenizedTask

MethodName = Literal["eap", "eap-ig", "exact"]


@dataclass(frozen=True)
class DiscoveryMethod:
    name: str
    description: str
    run: Callable[..., EdgeScores]
    options: Mapping[str, Any]  # method-specific keyword options and their defaults


METHODS: Mapping[str, DiscoveryMethod] = MappingProxyType({
    m.name: m
    for m in (
        DiscoveryMethod("eap", "Edge attribution patching: one gradient at the corrupted run.", eap, {}),
        DiscoveryMethod("eap-ig", "EAP with integrated gradients on the input embedding.", eap_ig,
                        {"steps": DEFAULT_STEPS}),
        DiscoveryMethod("exact", "Exact patching of every edge, one forward each (small graphs).",
                        exact_edge_scores, {"direction": "noise"}),
    )
})


def get_method(name: str) -> DiscoveryMethod:
    if name not in METHODS:
        raise ConfigError(f"Unknown discovery method {name!r}. Choose one of: {', '.join(METHODS)}.")
    return METHODS[name]


def score_edges(model: Any, tok: TokenizedTask, method: str = "eap-ig", **kwargs: Any) -> EdgeScores:
    """Score every edge with a registered method; method options (``steps=``…) pass through."""
    m = get_method(method)
    common = {"batch_size", "metric", "progress", "check"}
    unknown = set(kwargs) - common - set(m.options)
    if unknown:
        raise ConfigError(
            f"Method {method!r} has no option {sorted(unknown)[0]!r}; its options are "
            f"{sorted(m.options) or 'none'} (plus batch_size, metric)."
        )
    return m.run(model, tok, **kwargs)


__all__ = ["METHODS", "DiscoveryMethod", "MethodName", "get_method", "score_edges"]
