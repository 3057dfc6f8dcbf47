"""A graph over a whole task: one graph per prompt, nodes aligned across prompts, everything averaged.

Each prompt's graph (:func:`~circuitwise.features.attribute.attribution_graph`, target: the task's
own metric, correct − incorrect logit, at the prompt's last token) is mapped onto shared nodes:

- ``align="relative"``: a position is its offset from the answer position (0 is the last token);
- ``align="role"``: a position is named by the last role at or before it and the offset from that
  role (``ADJ+1``), so prompts of different lengths line up word by word (the task's roles); positions
  before the first role fall back to their offset from the answer.

A node is ``(kind, layer, aligned position, feature)``. Adjacency, bias and node values are means
over all prompts, a node absent from a prompt counting as zero there, so the sums still close: every
receiver's averaged row plus its averaged bias is its averaged value. ``meta["node_counts"]`` says in
how many prompts each node occurs, ``meta["position_labels"]`` names each node's aligned position.
Memory: the prompts' graphs are built one at a time (each planned); the union's dense adjacency is
checked against the budget before it is allocated.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Literal

import torch

from circuitwise.errors import ConfigError, DegenerateMetricError, MemoryBudgetError
from circuitwise.features.attribute import DEFAULT_BATCH_ROWS, LogitDiff, attribution_graph
from circuitwise.features.graph import NODE_ORDER, AttributionGraph, Node
from circuitwise.features.interventions import FeatureFaithfulness
from circuitwise.features.replacement import Edit, check_model, clean_run, live_forward
from circuitwise.features.transcoder import TranscoderSet
from circuitwise.models.memory import Shapes, budget_of, resident
from circuitwise.sizes import human
from circuitwise.tasks import Task
from circuitwise.tasks.tokenize import tokenize_task

Align = Literal["relative", "role"]


def _position_key(p: int, last: int, roles: dict[str, int] | None, align: Align) -> str:
    if align == "role" and roles:
        before = [(pos, name) for name, pos in roles.items() if pos <= p]
        if before:
            pos, name = max(before)
            return name if p == pos else f"{name}+{p - pos}"
    return str(p - last)


def task_graph(model: Any, transcoders: TranscoderSet, task: Task, *, align: Align = "relative",
               max_prompts: int | None = None, batch_rows: int = DEFAULT_BATCH_ROWS,
               budget: int | None = None) -> AttributionGraph:
    """The task's averaged attribution graph (see the module docstring)."""
    if max_prompts is not None and len(task) > max_prompts:
        task = task.subset(range(max_prompts))
    tt, _ = tokenize_task(model, task)
    n = len(tt)
    index: dict[tuple[Any, ...], int] = {}
    first: list[Node] = []
    labels: list[str] = []
    counts: list[int] = []
    value_sum: list[float] = []
    entries: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
    bias_parts: list[tuple[torch.Tensor, torch.Tensor]] = []
    prompts, tokens, token_strs = [], [], []
    ref: AttributionGraph | None = None
    for i in range(n):
        last = int(tt.last[i])
        toks = tt.clean[i, : last + 1]
        a, b = (int(x) for x in tt.answers[i])
        g = attribution_graph(model, transcoders, toks, LogitDiff(a, b), batch_rows=batch_rows, budget=budget)
        ref = ref or g
        roles = tt.roles[i] if tt.roles is not None else None
        ids = []
        for node in g.nodes:
            pk = _position_key(node.position, last, roles, align)
            key = (NODE_ORDER.index(node.kind), node.layer, pk, node.feature)
            if key not in index:
                index[key] = len(first)
                rel = node.position - last
                first.append(replace(node, position=rel, token=-1 if node.kind != "target" else node.token,
                                     value=0.0, label=_label(node, pk)))
                labels.append(pk)
                counts.append(0)
                value_sum.append(0.0)
            k = index[key]
            counts[k] += 1
            value_sum[k] += node.value
            ids.append(k)
        idx = torch.tensor(ids)
        nz = g.adjacency.nonzero()
        entries.append((idx[nz[:, 0]], idx[nz[:, 1]], g.adjacency[nz[:, 0], nz[:, 1]]))
        bias_parts.append((idx, g.bias))
        prompts.append(g.prompts[0])
        tokens.append(g.tokens[0])
        token_strs.append(g.token_strs[0])
    assert ref is not None  # tokenize_task refuses an empty task
    # Node order: features, errors, tokens, targets (then as first seen).
    order = sorted(range(len(first)), key=lambda k: (NODE_ORDER.index(first[k].kind), first[k].layer
                                                     if first[k].kind != "token" else 0, k))
    N = len(order)
    need = 4 * N * N
    avail = budget if budget is not None else budget_of(model) - int(resident(Shapes.from_model(model),
                                                                                model.W_E.device))
    if need > avail:
        raise MemoryBudgetError(f"the task graph's {N} aligned nodes need a {human(need)} adjacency, over the "
                                f"{human(avail)} left. Fixes: fewer prompts (max_prompts), a sparser transcoder "
                                "set, or a larger --max-memory")
    pos_of = torch.empty(len(first), dtype=torch.long)
    pos_of[torch.tensor(order)] = torch.arange(N)
    adj = torch.zeros(N, N, dtype=torch.float64)
    bias = torch.zeros(N, dtype=torch.float64)
    for (r, c, v), (bi, bv) in zip(entries, bias_parts, strict=True):
        adj.index_put_((pos_of[r], pos_of[c]), v.double(), accumulate=True)
        bias.index_put_((pos_of[bi],), bv.double(), accumulate=True)
    nodes = tuple(replace(first[k], value=value_sum[k] / n) for k in order)
    meta = {"n_prompts": n, "align": align, "node_counts": [counts[k] for k in order],
            "position_labels": [labels[k] for k in order], "task": task.name}
    return AttributionGraph(
        nodes=nodes, adjacency=(adj / n).float(), bias=(bias / n).float(), model=ref.model, n_layers=ref.n_layers,
        prompts=tuple(prompts), tokens=tuple(tokens), token_strs=tuple(token_strs), targets="metric",
        transcoders=ref.transcoders, dtype=ref.dtype, positions="relative", meta=meta)


def task_faithfulness(model: Any, transcoders: TranscoderSet, graph: AttributionGraph,
                      task: Task) -> FeatureFaithfulness:
    """A task graph's features alone against all features, over the task's prompts, as edge circuits
    are scored: ``(mean m_graph − mean m_none) / (mean m_all − mean m_none)`` with the metric (correct −
    incorrect logit) in the unfrozen model, where ``m_graph`` keeps, in each prompt, the features whose
    (layer, aligned position, feature) is a node of ``graph`` (every other feature zero), ``m_none``
    zeroes every feature and ``m_all`` is the model; error nodes stay at each prompt's clean values.
    ``task`` is the one the graph was built from (its first ``meta["n_prompts"]`` prompts are used)."""
    if graph.positions != "relative":
        raise ConfigError("task_faithfulness scores a task graph; for one prompt's graph use feature_faithfulness")
    n = int(graph.meta["n_prompts"])
    tt, _ = tokenize_task(model, task.subset(range(min(n, len(task)))))
    if len(tt) != n or any(tuple(tt.clean[i, : int(tt.last[i]) + 1].tolist()) != graph.tokens[i] for i in range(n)):
        raise ConfigError("this task's prompts are not the ones the graph was built from; pass the same task")
    labels = graph.meta["position_labels"]
    kept = {(x.layer, labels[i], x.feature) for i, x in enumerate(graph.nodes) if x.kind == "feature"}
    w = check_model(model, transcoders)
    tcs = transcoders.to(w.device, w.dtype)
    total = torch.zeros(3, dtype=torch.float64)  # all, none, graph
    for i in range(n):
        last = int(tt.last[i])
        run = clean_run(model, tcs, tt.clean[i, : last + 1], w)
        roles = tt.roles[i] if tt.roles is not None else None
        keys = [_position_key(p, last, roles, graph.meta["align"]) for p in range(last + 1)]
        keep = [torch.zeros_like(a, dtype=torch.bool) for a in run.acts]
        for l, key, f in kept:
            for p, k in enumerate(keys):
                if k == key:
                    keep[l][p, f] = True
        a, b = (int(x) for x in tt.answers[i])
        u = w.W_U[:, a] - w.W_U[:, b]
        c = 0.0 if w.b_U is None else float(w.b_U[a] - w.b_U[b])
        none = Edit(keep=tuple(torch.zeros_like(k) for k in keep))
        for j, edit in enumerate((None, none, Edit(keep=tuple(keep)))):
            total[j] += float(live_forward(run, tcs, edit)[last] @ u) + c
    m_all, m_none, m_graph = (float(v) / n for v in total)
    gap = m_all - m_none
    if abs(gap) <= 1e-6 * (1.0 + abs(m_all)):
        raise DegenerateMetricError(f"the metric moves by {gap:.3g} on average when every feature is removed, so a "
                                    "share of it is undefined; the features do not carry this task's answer")
    return FeatureFaithfulness((m_graph - m_none) / gap, m_graph, m_all, m_none, len(kept))


def _label(node: Node, pk: str) -> str:
    if node.kind == "feature":
        return f"L{node.layer} F{node.feature} @{pk}"
    if node.kind == "error":
        return f"error L{node.layer} @{pk}"
    if node.kind == "token":
        return f"token @{pk}"
    return "metric (correct − incorrect)"


__all__ = ["Align", "task_faithfulness", "task_graph"]
