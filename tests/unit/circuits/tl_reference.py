"""Helpers mapping circuitwise's position-agnostic edges onto TransformerLens's positional graph."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator

from circuitwise.circuits.graph import Graph


def sender_name(node: Any) -> str:
    return {"embed": "input", "attn_head_out": f"L{node.layer}H{node.head}", "mlp_out": f"MLP{node.layer}"}[node.kind]


def receiver_name(node: Any) -> str:
    if node.kind in ("q_input", "k_input", "v_input"):
        return f"L{node.layer}H{node.head}.{node.kind[0]}"
    return {"mlp_in": f"MLP{node.layer}", "logits": "logits"}[node.kind]


def tl_edges(graph: Graph, edge_ids: list[int], positions: int) -> list[tuple[Any, Any]]:
    """Each of our edges as TransformerLens ``Node`` pairs, one per position."""
    from transformer_lens.tools.analysis.attribution_patching import Node

    s_idx, r_idx = graph.edge_index
    out = []
    for i in edge_ids:
        snd = graph.senders[int(s_idx[i])].tl_node()
        rec = graph.receivers[int(r_idx[i])].tl_node(graph.n_layers)
        for p in range(positions):
            out.append((Node(position=p, **snd), Node(position=p, **rec)))
    return out


@contextmanager
def params_require_grad(model: Any) -> Iterator[None]:
    """TransformerLens's attribution needs a graph through the weights; load_model freezes them."""
    params = list(model.parameters())
    old = [p.requires_grad for p in params]
    try:
        for p in params:
            p.requires_grad_(True)
        yield
    finally:
        for p, r in zip(params, old):
            p.requires_grad_(r)


def answer_metric(answers: Any):
    def metric(logits: Any) -> Any:
        return logits[0, -1, answers[0]] - logits[0, -1, answers[1]]

    return metric
