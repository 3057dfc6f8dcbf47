"""The model's computational graph: senders, receivers and the edges between them.

Senders write into the residual stream: the input (token + positional embedding), every
attention head (its own ``z @ W_O``, without ``b_O``, which belongs to no head) and every MLP.
Receivers read from it: every head's query, key and value inputs separately, every MLP's input,
and the logits (the final residual). An edge joins a sender to every receiver after it. Edges are
position-agnostic: one edge stands for the sender→receiver write at every token position, as in
EAP (Syed et al.; Hanna et al.). In TransformerLens's position-resolved graph
(``attribution_patching.enumerate_edges``) one of our edges is that edge at every position.

Layout. Senders: ``input``, then per layer its heads ``L{l}H{h}`` and its ``MLP{l}``. Receivers:
per layer the queries ``L{l}H{h}.q`` of all heads, then the keys, the values, then ``MLP{l}``;
last ``logits``. Edges are numbered receiver by receiver, senders in order within a receiver.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Literal

import torch

from circuitwise.errors import ConfigError

SenderKind = Literal["input", "head", "mlp"]
ReceiverKind = Literal["q", "k", "v", "mlp", "logits"]
QKV: tuple[Literal["q", "k", "v"], ...] = ("q", "k", "v")


@dataclass(frozen=True)
class Sender:
    name: str
    kind: SenderKind
    layer: int  # -1 for the input
    head: int | None = None

    def tl_node(self) -> dict[str, Any]:
        """This sender as TransformerLens's ``attribution_patching.Node`` fields (minus position)."""
        kind = {"input": "embed", "head": "attn_head_out", "mlp": "mlp_out"}[self.kind]
        return {"kind": kind, "layer": None if self.kind == "input" else self.layer, "head": self.head}


@dataclass(frozen=True)
class Receiver:
    name: str
    kind: ReceiverKind
    layer: int  # n_layers for the logits
    head: int | None = None

    @property
    def node(self) -> str:
        """The graph node this receiver belongs to (a head's q/k/v all belong to the head)."""
        return self.name.split(".")[0]

    def tl_node(self, n_layers: int) -> dict[str, Any]:
        kind = {"q": "q_input", "k": "k_input", "v": "v_input", "mlp": "mlp_in", "logits": "logits"}[self.kind]
        layer = n_layers - 1 if self.kind == "logits" else self.layer
        return {"kind": kind, "layer": layer, "head": self.head}


@dataclass(frozen=True, eq=False)
class Graph:
    """Senders, receivers and the ``[sender, receiver]`` adjacency of one model's graph."""

    n_layers: int
    n_heads: int
    has_mlp: bool = True
    parallel_attn_mlp: bool = False
    # A post-attention norm (Gemma 2/3, OLMo 2) scales every head's write by the layer's live total,
    # so what one head writes moves the others' writes: circuits.prune treats the heads as one node.
    shared_head_norm: bool = False
    senders: tuple[Sender, ...] = field(init=False)
    receivers: tuple[Receiver, ...] = field(init=False)

    def __post_init__(self) -> None:
        if self.n_layers < 1 or self.n_heads < 1:
            raise ConfigError(f"A graph needs at least one layer and one head, got {self.n_layers}×{self.n_heads}.")
        L, H = self.n_layers, self.n_heads
        senders = [Sender("input", "input", -1)]
        receivers: list[Receiver] = []
        for l in range(L):
            for kind in QKV:
                receivers += [Receiver(f"L{l}H{h}.{kind}", kind, l, h) for h in range(H)]
            senders += [Sender(f"L{l}H{h}", "head", l, h) for h in range(H)]
            if self.has_mlp:
                receivers.append(Receiver(f"MLP{l}", "mlp", l))
                senders.append(Sender(f"MLP{l}", "mlp", l))
        receivers.append(Receiver("logits", "logits", L))
        object.__setattr__(self, "senders", tuple(senders))
        object.__setattr__(self, "receivers", tuple(receivers))

    # -- index arithmetic used by the forward ------------------------------------------------

    @property
    def per_layer_senders(self) -> int:
        return self.n_heads + int(self.has_mlp)

    @property
    def per_layer_receivers(self) -> int:
        return 3 * self.n_heads + int(self.has_mlp)

    def head_senders(self, layer: int) -> slice:
        start = 1 + layer * self.per_layer_senders
        return slice(start, start + self.n_heads)

    def mlp_sender(self, layer: int) -> int:
        return 1 + layer * self.per_layer_senders + self.n_heads

    def qkv_receivers(self, layer: int) -> slice:
        """Receivers of layer ``layer``'s attention: ``[q heads, k heads, v heads]``."""
        start = layer * self.per_layer_receivers
        return slice(start, start + 3 * self.n_heads)

    def mlp_receiver(self, layer: int) -> int:
        return layer * self.per_layer_receivers + 3 * self.n_heads

    @property
    def logits_receiver(self) -> int:
        return len(self.receivers) - 1

    def senders_before_attn(self, layer: int) -> int:
        """How many senders (a prefix of ``senders``) the attention of ``layer`` can read."""
        return 1 + layer * self.per_layer_senders

    def senders_before_mlp(self, layer: int) -> int:
        return self.senders_before_attn(layer) + (0 if self.parallel_attn_mlp else self.n_heads)

    def senders_before(self, r: int) -> int:
        rec = self.receivers[r]
        if rec.kind == "logits":
            return len(self.senders)
        if rec.kind == "mlp":
            return self.senders_before_mlp(rec.layer)
        return self.senders_before_attn(rec.layer)

    # -- edges ----------------------------------------------------------------------------------

    @cached_property
    def adjacency(self) -> torch.Tensor:
        """``[sender, receiver]`` bool: which pairs are edges."""
        adj = torch.zeros(len(self.senders), len(self.receivers), dtype=torch.bool)
        for r in range(len(self.receivers)):
            adj[: self.senders_before(r), r] = True
        return adj

    @cached_property
    def edge_index(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(sender, receiver)`` index of every edge, in edge order."""
        r, s = self.adjacency.T.nonzero(as_tuple=True)
        return s, r

    @property
    def n_edges(self) -> int:
        return int(self.edge_index[0].numel())

    @cached_property
    def edge_names(self) -> list[str]:
        s, r = self.edge_index
        return [f"{self.senders[i].name}->{self.receivers[j].name}" for i, j in zip(s.tolist(), r.tolist())]

    @cached_property
    def edge_ids(self) -> dict[str, int]:
        return {n: i for i, n in enumerate(self.edge_names)}

    def edge_id(self, sender: str, receiver: str) -> int:
        key = f"{sender}->{receiver}"
        if key not in self.edge_ids:
            raise ConfigError(
                f"{key} is not an edge of this model's graph ({self.n_layers} layers × {self.n_heads} "
                "heads). Senders are input, L{l}H{h}, MLP{l}; receivers L{l}H{h}.q/.k/.v, MLP{l}, "
                "logits, and a sender only feeds receivers after it. Was the circuit found on another model?"
            )
        return self.edge_ids[key]

    def to_dense(self, edge_values: torch.Tensor, fill: float = 0.0) -> torch.Tensor:
        """``[..., edge]`` values as ``[..., sender, receiver]`` (non-edges get ``fill``)."""
        s, r = self.edge_index
        out = torch.full((*edge_values.shape[:-1], len(self.senders), len(self.receivers)), fill,
                         dtype=edge_values.dtype, device=edge_values.device)
        out[..., s.to(out.device), r.to(out.device)] = edge_values
        return out

    def from_dense(self, dense: torch.Tensor) -> torch.Tensor:
        s, r = self.edge_index
        return dense[..., s.to(dense.device), r.to(dense.device)]

    def describe(self) -> dict[str, Any]:
        return {"n_layers": self.n_layers, "n_heads": self.n_heads, "has_mlp": self.has_mlp,
                "parallel_attn_mlp": self.parallel_attn_mlp, "n_edges": self.n_edges}


def graph_of(model: Any) -> Graph:
    """The graph of a TransformerLens model (bridge), from its config."""
    cfg = model.cfg
    blocks: Any = getattr(model, "blocks", None) or ()
    return Graph(
        n_layers=int(cfg.n_layers),
        n_heads=int(cfg.n_heads),
        has_mlp=not bool(getattr(cfg, "attn_only", False)),
        parallel_attn_mlp=bool(getattr(cfg, "parallel_attn_mlp", False)),
        # The bridge's post-attention norm, as models.weights reads it (post_attn).
        shared_head_norm=bool(blocks) and getattr(blocks[0], "ln1_post", None) is not None,
    )


__all__ = ["Graph", "Receiver", "ReceiverKind", "Sender", "SenderKind", "graph_of"]
