"""Feature-level attribution graphs: transcoders, the replacement model with error nodes, graphs.

Transcoders (:mod:`~circuitwise.features.transcoder`) replace the MLPs. With attention patterns and
norm scales frozen and each MLP's reconstruction error kept as an error node, the model is linear in
its features, so one backward pass per target row gives exact direct effects between features,
tokens, errors and logits. This package sits beside ``circuits`` (it reads models, tasks, metrics and
the stages below them, never the reverse).
"""
