"""ACDC (Conmy et al. 2023, "Towards Automated Circuit Discovery"): prune edges one at a time.

Starting from the full graph, receivers are visited from the logits back to the input (each
layer's MLP before its attention, heads from last to first), and each receiver's incoming edges
from the latest sender to the earliest. An edge is removed (it then reads its sender's corrupted
output) when removing it raises the loss by less than ``threshold``; otherwise it stays. The loss
is ACDC's KL divergence of the last token's distribution from the clean run's (``objective="kl"``)
or the task metric turned into a loss (``objective="metric"``: ``−logit_diff``, ``−prob``, …), and the
threshold is by default a share of the loss gap between the clean and corrupted runs. A node
whose output no longer reaches the logits is skipped: its incoming edges matter to nothing.

Exact and batched: ACDC's decisions are sequential (each test sees the graph as the previous
decisions left it), but most edges are removed, so one stacked call tries the next edges'
removals *cumulatively* — variant j removes edges 1…j — which are exactly the sequential tests
for as long as every edge before j was removed. At the first edge that stays, the variants after
it are dropped and the next call starts from there. The calls number the kept edges plus the
receivers visited, not the edges; every variant runs on the one engine (``patched_metrics``:
pruned of dangling edges, started at its first patched layer, remembered per task).

Scores: each tested edge's loss increase when it was tried, signed like every method's
(positive = its clean value helps). Edges never tried (their node was already cut off) score 0.
ACDC's own circuit, the edges it kept, is ``config["circuit"]`` (:func:`acdc_circuit`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Literal

import torch

from circuitwise.circuits.graph import Graph
from circuitwise.circuits.patch import patched_metrics
from circuitwise.circuits.registry import DiscoveryMethod, check_choice, options_config
from circuitwise.circuits.scores import EdgeScores, Progress, no_progress, prepare
from circuitwise.errors import ConfigError, DegenerateMetricError
from circuitwise.metrics import get_metric
from circuitwise.tasks.tokenize import TokenizedTask

Objective = Literal["kl", "metric"]

#: Above this many edges `benchmark` skips ACDC (up to one forward per edge); `circuit` runs it.
MAX_BENCHMARK_EDGES = 5000

#: Removals tried per stacked call (cumulatively). Large enough that a receiver's run of removed
#: edges is usually one call; each variant costs a (partial) forward of every prompt.
SPECULATE = 32


@dataclass(frozen=True)
class ACDCOptions:
    """``threshold``: an edge whose removal raises the loss by less than this is removed;
    ``relative``: the threshold is a share of the loss gap between the clean and corrupted runs
    (scale-free: a KL is 1e-5 nats on a near-uniform model and several on a trained one), else in
    the loss's own units as in ACDC's code; ``objective``: kl (ACDC's) or the task metric."""

    threshold: float = 0.01
    relative: bool = True
    objective: Objective = "kl"

    def __post_init__(self) -> None:
        check_choice("acdc", "objective", self.objective, Objective)
        t = self.threshold
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not t >= 0:
            raise ConfigError(f"acdc: threshold must be a number ≥ 0 (0.01 of the clean–corrupted gap is usual), "
                              f"got {t!r}.")
        if not isinstance(self.relative, bool):
            raise ConfigError(f"acdc: relative must be true or false, got {self.relative!r}.")


def receiver_order(g: Graph) -> list[int]:
    """Receivers from the logits back to the input: per layer (last first) the MLP, then the heads
    from last to first (each head's v, k, q)."""
    order = [g.logits_receiver]
    for layer in reversed(range(g.n_layers)):
        if g.has_mlp:
            order.append(g.mlp_receiver(layer))
        qkv = g.qkv_receivers(layer)
        for h in reversed(range(g.n_heads)):
            order += [qkv.start + 2 * g.n_heads + h, qkv.start + g.n_heads + h, qkv.start + h]
    return order


def _node_sender(g: Graph, r: int) -> int | None:
    """The sender whose inputs receiver ``r`` carries (None for the logits)."""
    rec = g.receivers[r]
    if rec.kind == "logits":
        return None
    if rec.kind == "mlp":
        return g.mlp_sender(rec.layer)
    assert rec.head is not None
    return g.head_senders(rec.layer).start + rec.head


def score_acdc(model: Any, tok: TokenizedTask, options: ACDCOptions, *, batch_size: int | None = None,
               metric: str = "logit_diff", progress: Progress = no_progress, check: bool = True) -> EdgeScores:
    """ACDC's pruning of every edge; the scores are each edge's loss increase when it was tried."""
    t0 = time.perf_counter()
    run_metric = get_metric(metric)
    loss_metric = get_metric("kl") if options.objective == "kl" else run_metric
    sign = 1.0 if not loss_metric.higher_is_clean else -1.0  # loss = sign · metric (lower is closer to clean)
    prep = prepare(model, tok, loss_metric.name, check=check, batch_size=batch_size)
    g = prep.gm.graph
    senders, receivers = g.edge_index
    keep = torch.ones(g.n_edges, dtype=torch.bool)
    scores = torch.zeros(g.n_edges)
    tried = torch.zeros(g.n_edges, dtype=torch.bool)
    order = receiver_order(g)

    def losses(masks: torch.Tensor) -> tuple[torch.Tensor, Any]:
        pm = patched_metrics(prep, masks, batch_size=prep.batch_size, what="acdc")
        return sign * pm.patched.double().mean(1), pm

    current, pm0 = losses(keep[None])
    current_loss = float(current[0])
    calls = 1
    # The loss of the empty circuit (the corrupted run) less the full one's: what "relative" scales by.
    gap = sign * float(pm0.corrupted.double().mean() - pm0.clean.double().mean())
    if options.relative and not gap > 1e-12:
        raise DegenerateMetricError(
            f"ACDC's loss ({loss_metric.name}) is no higher on the corrupted run than on the clean one (gap "
            f"{gap:.3g}), so a threshold relative to that gap means nothing. Use a corruption that changes the "
            "answer, or -O relative=false with a threshold in the loss's units.")
    tau = options.threshold * gap if options.relative else options.threshold
    for done, r in enumerate(order):
        progress(done, len(order), "acdc")
        incoming = (receivers == r).nonzero().flatten()
        node = _node_sender(g, r)
        if node is not None and not bool(keep[senders == node].any()):
            keep[incoming] = False  # the node no longer reaches the logits: its inputs matter to nothing
            continue
        queue = incoming[senders[incoming].argsort(descending=True, stable=True)].tolist()
        i = 0
        while i < len(queue):
            chunk = queue[i:i + SPECULATE]
            masks = keep.repeat(len(chunk), 1)
            for j in range(len(chunk)):
                masks[j:, chunk[j]] = False  # variant j: chunk[0..j] all removed
            trial, _ = losses(masks)
            calls += 1
            step = len(chunk)
            for j, e in enumerate(chunk):
                delta = float(trial[j]) - current_loss
                scores[e], tried[e] = delta, True
                if delta < tau:
                    keep[e] = False
                    current_loss = float(trial[j])
                else:
                    step = j + 1  # kept: the later variants assumed it removed
                    break
            i += step
    progress(len(order), len(order), "acdc")
    return EdgeScores(
        graph=g, scores=scores.float(), method="acdc", metric=run_metric.name,
        config={**options_config(options), "circuit": [g.edge_names[i] for i in keep.nonzero().flatten().tolist()],
                "loss": "kl" if options.objective == "kl" else f"{'-' if sign < 0 else ''}{loss_metric.name}",
                "threshold_loss": tau, "final_loss": current_loss, "n_tried": int(tried.sum()),
                "stacked_calls": calls},
        clean_metric=float(pm0.clean.mean()), corrupted_metric=float(pm0.corrupted.mean()),
        n_examples=len(tok), seconds=time.perf_counter() - t0,
    )


def acdc_circuit(scores: EdgeScores) -> torch.Tensor:
    """ACDC's own circuit (``config["circuit"]``, the edges it kept) as a bool ``[edge]`` mask."""
    named = scores.config.get("circuit")
    if scores.method != "acdc" or not isinstance(named, list):
        raise ConfigError(f"These scores come from {scores.method!r}, not ACDC; select a circuit from them "
                          "with select_circuit instead.")
    keep = torch.zeros(scores.graph.n_edges, dtype=torch.bool)
    keep[[scores.graph.edge_ids[n] for n in named]] = True
    return keep


METHOD = DiscoveryMethod(
    "acdc", "ACDC: remove edges one at a time, logits to input, while the loss (KL to the clean run) rises less "
    "than a threshold (Conmy et al. 2023); exact, with removals tried cumulatively in stacked calls.",
    ACDCOptions, score_acdc,
)

__all__ = ["ACDCOptions", "MAX_BENCHMARK_EDGES", "METHOD", "Objective", "SPECULATE", "acdc_circuit", "receiver_order",
           "score_acdc"]
