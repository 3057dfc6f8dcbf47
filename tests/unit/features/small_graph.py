"""A small attribution graph built by hand: every kind of node, and a feature whose index equals its
position (where circuit-tracer's old error ids, ``{layer}_{pos}_{pos}``, collided with a feature's)."""

from __future__ import annotations

from circuitwise.features.export import embedding_id, error_id, feature_id, logit_id
from circuitwise.schema.graph import (
    Context,
    GraphEdge,
    GraphFile,
    GraphModel,
    GraphNode,
    GraphSettings,
    GraphTarget,
    GraphTranscoders,
)

TOKENS = ["<|endoftext|>", "A", " tort", " is"]
IDS = [50256, 32, 7619, 318]


def small_graph() -> GraphFile:
    n_layers = 2
    nodes = [GraphNode(id=embedding_id(t, p), kind="embedding", pos=p, feature=t, token=TOKENS[p],
                       influence=0.05 + 0.1 * p) for p, t in enumerate(IDS)]
    ctx = [Context(source="task", tokens=TOKENS, pos=3, activation=2.5, index=0, activations=[0.0, 0.1, 0.4, 2.5]),
           Context(source="corpus", tokens=["The", " cat", " is"], pos=1, activation=1.25, index=7)]
    nodes += [
        GraphNode(id=feature_id(0, 3, 3), kind="feature", layer=0, pos=3, feature=3, activation=2.5, influence=0.4,
                  label="is <b>old</b>", contexts=ctx),
        GraphNode(id=feature_id(0, 1, 2), kind="feature", layer=0, pos=2, feature=1, activation=0.75, influence=0.2),
        GraphNode(id=feature_id(1, 0, 3), kind="feature", layer=1, pos=3, feature=0, activation=1.5, influence=0.7),
        GraphNode(id=error_id(0, 3), kind="error", layer=0, pos=3, influence=0.05),
        GraphNode(id=error_id(1, 3), kind="error", layer=1, pos=3, influence=0.02),
        GraphNode(id=logit_id(42, 3, n_layers), kind="logit", pos=3, feature=42, token=" young", prob=0.625,
                  target=True),
        GraphNode(id=logit_id(7, 3, n_layers), kind="logit", pos=3, feature=7, token=' "old"', prob=0.125),
    ]
    edges = [
        GraphEdge(source="E_7619_2", target="0_1_2", weight=0.5),
        GraphEdge(source="E_318_3", target="0_3_3", weight=1.5),
        GraphEdge(source="0_1_2", target="1_0_3", weight=-0.25),
        GraphEdge(source="0_3_3", target="1_0_3", weight=2.0),
        GraphEdge(source="0_-1_3", target="1_0_3", weight=0.125),
        GraphEdge(source="1_0_3", target="3_42_3", weight=3.0),
        GraphEdge(source="1_-1_3", target="3_42_3", weight=-0.5),
        GraphEdge(source="0_3_3", target="3_7_3", weight=-1.0),
    ]
    return GraphFile(model=GraphModel(name="tiny", n_layers=n_layers, d_model=16, d_vocab=50257), task="opposites",
                     prompt="A tort is", tokens=TOKENS, token_ids=IDS,
                     target=GraphTarget(mode="token", description='the logit of " young"'),
                     transcoders=GraphTranscoders(source="bundled", kind="per-layer", n_features=[8, 8],
                                                  activation="relu"),
                     settings=GraphSettings(node_threshold=0.8, edge_threshold=0.98), nodes=nodes, edges=edges)
