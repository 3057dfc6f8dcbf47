"""Feature-level attribution graphs: transcoders, the replacement model with error nodes, graphs.

Transcoders (:mod:`~circuitwise.features.transcoder`) replace the MLPs. With attention patterns and
norm scales frozen and each MLP's reconstruction error kept as an error node, the model is linear in
its features, so one backward pass per target row gives exact direct effects between features,
tokens, errors and logits. This package sits beside ``circuits`` (it reads models, tasks, metrics and
the stages below them, never the reverse).
"""

from circuitwise.features.attribute import LogitDiff, Salient, Tokens, attribution_graph
from circuitwise.features.graph import AttributionGraph, Node
from circuitwise.features.heads import HeadLoading, head_loadings
from circuitwise.features.interventions import InterventionResult, feature_faithfulness, intervene
from circuitwise.features.prune import graph_scores, prune_graph
from circuitwise.features.task_graph import task_faithfulness, task_graph

__all__ = ["AttributionGraph", "HeadLoading", "InterventionResult", "LogitDiff", "Node", "Salient", "Tokens",
           "attribution_graph", "feature_faithfulness", "graph_scores", "head_loadings", "intervene", "prune_graph",
           "task_faithfulness", "task_graph"]
