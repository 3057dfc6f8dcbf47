"""The attribution graph: typed nodes, one dense adjacency, and what it was computed from.

Node order is fixed: features, then errors, then tokens, then targets (circuit-tracer's order), so
the blocks of the adjacency are slices. ``adjacency[i, j]`` is the *direct* effect of node ``j`` on
node ``i`` through the frozen replacement model (attention patterns, norm scales and LayerNorm's
centring frozen at the clean run; every other node held at its clean value). A row is a receiver,
a column a sender: feature rows hold the edges into a feature's pre-activation, target rows the
edges into a logit (its token's logit minus the mean logit) or the task's metric direction.

What no node carries (biases, seen through the frozen model) is ``bias``: for every receiver
``adjacency[i].sum() + bias[i] == value[i]`` (the test of completeness of the decomposition).

For a graph over a whole task (:func:`circuitwise.features.task_graph.task_graph`), positions are
relative to the answer position (``0`` is the position whose logits are read, ``-1`` the one before …)
and every number is a mean over all ``meta["n_prompts"]`` prompts, a node absent from a prompt counting
as zero there (so rows still close); ``meta["node_counts"]`` says in how many prompts each node occurs
and ``meta["position_labels"]`` names its aligned position (an offset, or a role such as ``ADJ+1``).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Literal

import torch

from circuitwise.errors import ConfigError

NodeKind = Literal["feature", "error", "token", "target"]
Positions = Literal["absolute", "relative"]
NODE_ORDER: tuple[NodeKind, ...] = ("feature", "error", "token", "target")


@dataclass(frozen=True)
class Node:
    """One node of an attribution graph.

    - ``feature``: transcoder ``layer``'s feature ``feature`` at ``position``; ``value`` is its activation.
    - ``error``: what layer ``layer``'s transcoders miss of the MLP's output at ``position``
      (a constant node); ``value`` is that error vector's norm.
    - ``token``: the embedding (token and learned position) at ``position``; ``layer`` is −1,
      ``token`` the token id, ``value`` the embedding's norm.
    - ``target``: a logit row or the metric's direction read at ``position``; ``layer`` is
      ``n_layers``; ``token`` the logit's token id (−1 for a metric); ``value`` the target's value
      (logit minus mean logit, or the metric); ``probability`` the model's probability of ``token``.
    """

    kind: NodeKind
    layer: int
    position: int
    feature: int = -1
    value: float = 0.0
    token: int = -1
    label: str = ""
    probability: float | None = None

    @property
    def key(self) -> tuple[str, int, int, int, int]:
        """What identifies the node across prompts (task graphs align by it)."""
        return (self.kind, self.layer, self.position, self.feature, self.token if self.kind == "target" else -1)


@dataclass(frozen=True, eq=False)
class AttributionGraph:
    """Nodes, their direct effects on one another, and where they came from (see the module docstring).

    ``adjacency`` is ``[N, N]`` float32 on the CPU, ``bias`` and ``influence`` ``[N]``.
    ``prompts`` / ``tokens`` / ``token_strs`` are per prompt (one for a prompt's graph).
    ``targets`` says how targets were chosen (``"salient"``, ``"tokens"`` or ``"metric"``).
    ``transcoders`` describes the set (its model, kind, activation, per-layer widths, its ``meta``).
    ``scores`` holds ``replacement`` and ``completeness`` once computed
    (:func:`~circuitwise.features.prune.prune_graph`).
    """

    nodes: tuple[Node, ...]
    adjacency: torch.Tensor
    bias: torch.Tensor
    model: str
    n_layers: int
    prompts: tuple[str, ...]
    tokens: tuple[tuple[int, ...], ...]
    token_strs: tuple[tuple[str, ...], ...]
    targets: str
    transcoders: dict[str, Any]
    dtype: str
    positions: Positions = "absolute"
    influence: torch.Tensor | None = None
    scores: dict[str, float] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.nodes)
        if tuple(self.adjacency.shape) != (n, n) or tuple(self.bias.shape) != (n,):
            raise ConfigError(f"an attribution graph of {n} nodes needs a [{n}, {n}] adjacency and [{n}] bias; "
                              f"got {tuple(self.adjacency.shape)} and {tuple(self.bias.shape)}")
        kinds = [NODE_ORDER.index(x.kind) for x in self.nodes]
        if kinds != sorted(kinds):
            raise ConfigError("an attribution graph's nodes are ordered features, errors, tokens, targets")

    # --- slices of the node order -------------------------------------------------------------
    def _span(self, kind: NodeKind) -> slice:
        idx = [i for i, x in enumerate(self.nodes) if x.kind == kind]
        return slice(idx[0], idx[-1] + 1) if idx else slice(0, 0)

    @property
    def features(self) -> slice:
        return self._span("feature")

    @property
    def errors(self) -> slice:
        return self._span("error")

    @property
    def token_nodes(self) -> slice:
        return self._span("token")

    @property
    def target_nodes(self) -> slice:
        return self._span("target")

    @property
    def n_nodes(self) -> int:
        return len(self.nodes)

    @property
    def values(self) -> torch.Tensor:
        """Each node's ``value`` as a tensor ``[N]``."""
        return torch.tensor([x.value for x in self.nodes], dtype=torch.float64)

    @property
    def target_weights(self) -> torch.Tensor:
        """How much each target counts in influence and scores: its probability (renormalised over the
        targets) for logit targets, equal shares otherwise."""
        t = [self.nodes[i] for i in range(self.target_nodes.start, self.target_nodes.stop)]
        p = torch.tensor([x.probability if x.probability is not None else float("nan") for x in t],
                         dtype=torch.float64)
        if len(t) == 0:
            return p
        if torch.isnan(p).any() or float(p.sum()) <= 0:
            return torch.full((len(t),), 1.0 / len(t), dtype=torch.float64)
        return p / p.sum()

    def edges(self, min_abs: float = 0.0) -> list[tuple[int, int, float]]:
        """``(receiver, sender, weight)`` for every non-zero entry with ``|weight| > min_abs``."""
        a = self.adjacency
        idx = (a.abs() > min_abs).nonzero().tolist()
        return [(i, j, float(a[i, j])) for i, j in idx]

    def with_(self, **changes: Any) -> AttributionGraph:
        """A copy with fields replaced (the graph is frozen)."""
        return replace(self, **changes)


__all__ = ["NODE_ORDER", "AttributionGraph", "Node", "NodeKind", "Positions"]
