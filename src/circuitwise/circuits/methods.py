"""The discovery-method registry: one frozen entry per method module, all with one signature.

Adding a method is one module defining its options dataclass and ``METHOD`` entry
(:class:`~circuitwise.circuits.registry.DiscoveryMethod`), plus its name here in ``MethodName``
and ``_ENTRIES`` (a test checks the two agree).
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Any, Literal, Mapping, get_args

from circuitwise.circuits.acdc import METHOD as ACDC
from circuitwise.circuits.bootstrap import METHOD as BOOTSTRAP
from circuitwise.circuits.eap import METHOD as EAP
from circuitwise.circuits.eap_ig import METHOD as EAP_IG
from circuitwise.circuits.eap_ig_activations import METHOD as EAP_IG_ACTIVATIONS
from circuitwise.circuits.edge_pruning import METHOD as EDGE_PRUNING
from circuitwise.circuits.exact import METHOD as EXACT
from circuitwise.circuits.registry import COMMON, DiscoveryMethod
from circuitwise.circuits.relp import METHOD as RELP
from circuitwise.circuits.scores import EdgeScores, NodeScores
from circuitwise.errors import ConfigError
from circuitwise.tasks.tokenize import TokenizedTask

MethodName = Literal["eap", "eap-ig", "eap-ig-activations", "exact", "edge-pruning", "acdc", "relp", "bootstrap"]

_ENTRIES: tuple[DiscoveryMethod, ...] = (EAP, EAP_IG, EAP_IG_ACTIVATIONS, EXACT, EDGE_PRUNING, ACDC, RELP, BOOTSTRAP)

METHODS: Mapping[str, DiscoveryMethod] = MappingProxyType({m.name: m for m in _ENTRIES})

if tuple(METHODS) != get_args(MethodName):  # a programming error, caught at import and by a test
    raise RuntimeError(f"MethodName {get_args(MethodName)} and the registry {tuple(METHODS)} disagree")


def check_metric(method: str, options: Any, metric: str) -> None:
    """Refuse, before any work, a method that cannot score anything under ``metric``.

    kl is the divergence from the clean run: it is at its minimum there, so its gradient at the clean
    run is zero and EAP taken there (``gradient=clean``) would score every edge 0.
    """
    from circuitwise.metrics import get_metric

    if get_metric(metric).reference and method in ("eap", "relp") and getattr(options, "gradient", None) == "clean":
        raise ConfigError(f"--metric kl has zero gradient at the clean run (its minimum), so {method} with its "
                          "gradient there scores every edge 0. Use -O gradient=corrupted, or eap-ig.")


def get_method(name: str) -> DiscoveryMethod:
    if name not in METHODS:
        raise ConfigError(f"Unknown discovery method {name!r}. Choose one of: {', '.join(METHODS)}.")
    return METHODS[name]


def check_prompts(method: str, model: Any, tok: TokenizedTask, options: Any = None) -> None:
    """Raise, before any work, what ``method`` with ``options`` refuses for this model (``supports``) and these
    prompts (positions they cannot line up, score buffers over the memory budget); the runners call it as they
    plan."""
    m = get_method(method)
    # What the method cannot score on this model at all (relp under soft-caps): its scoring raised it, after
    # the stages before discovery had run in `run` and `compare`.
    why = m.supports(model) if m.supports is not None else None
    if why is not None:
        raise ConfigError(f"{method} cannot run on this model: {why}.")
    if m.check_prompts is not None and len(tok):
        m.check_prompts(model, tok, m.options(options))


def _split(m: DiscoveryMethod, kwargs: dict[str, Any], options: Any) -> tuple[Any, dict[str, Any]]:
    common = {k: kwargs.pop(k) for k in COMMON if k in kwargs}
    return m.options(options, **kwargs), common


def score_edges(model: Any, tok: TokenizedTask, method: str = "eap-ig", options: Any = None,
                **kwargs: Any) -> EdgeScores:
    """Score every edge with a registered method.

    Method options come as an options object or mapping (``options=``) or as keywords
    (``steps=``, ``quadrature=``, ``gradient=``, ``direction=`` …); an option the method does not
    have is an error. ``batch_size``, ``metric``, ``progress`` and ``check`` go to every method.
    """
    m = get_method(method)
    opts, common = _split(m, dict(kwargs), options)
    return m.score(model, tok, opts, **common)


def score_nodes(model: Any, tok: TokenizedTask, method: str = "eap-ig", options: Any = None,
                **kwargs: Any) -> NodeScores:
    """One score per node (sender: input, head, MLP), the node's effect under ``method``.

    Methods with a cheaper node scorer use it (``exact``: one patched forward per sender); the
    others sum each sender's edge scores, for gradient methods exactly its own attribution.
    """
    m = get_method(method)
    opts, common = _split(m, dict(kwargs), options)
    if m.nodes is not None:
        return m.nodes(model, tok, opts, **common)
    return m.score(model, tok, opts, **common).node_scores()


__all__ = ["check_metric", "check_prompts", "METHODS", "DiscoveryMethod", "MethodName", "get_method", "score_edges",
           "score_nodes"]
