"""EAP-IG-activations: integrated gradients along each node's own activations (as hannamw/EAP-IG defines it).

EAP-IG (``get_scores_ig_activations``, the method MIB calls ``eap-ig-activations``) interpolates
not the input embedding but the output of one *layer node* at a time — the input embedding, all
heads of one attention layer together, or one MLP. For every such node ``X`` and integration point
α_k, the clean prompts are run with ``X``'s output set to ``corr_X + α_k (clean_X − corr_X)`` (a
constant: no gradient flows back through ``X``), everything else computed live, and every edge
collects ``(clean_s − corr_s) · ∂m/∂in_r`` from that run. An edge's score is the weighted sum over
the points, averaged over the ``1 + 2L`` (``1 + L`` without MLPs) layer nodes:

    score(s → r) = (1 / |X|) Σ_X Σ_k w_k (clean_s − corr_s) · ∂m/∂in_r |X at α_k

EAP-IG sums α = k/n for k = 1…n (``quadrature="right"``). On our engine the replacement is an edge
patch: every edge out of ``X``'s senders reads the interpolated value (``keep = 0`` with that
replacement), which is exactly ``X``'s output replaced for every reader, gradient cut included.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import torch

from circuitwise.circuits.forward import run_graph
from circuitwise.circuits.graph import Graph
from circuitwise.circuits.gradients import chunks, contraction_hook, quadrature_points, score_dtype
from circuitwise.circuits.registry import DiscoveryMethod, Quadrature, check_choice, check_steps, options_config
from circuitwise.circuits.scores import EdgeScores, Progress, no_progress, prepare, sender_outputs
from circuitwise.tasks.tokenize import TokenizedTask
from circuitwise.metrics import targets_of


@dataclass(frozen=True)
class EAPIGActivationsOptions:
    """``steps``: integration steps per layer node; ``quadrature``: the points along each node's
    corrupted → clean path (EAP-IG: ``right``)."""

    steps: int = 5
    quadrature: Quadrature = "right"

    def __post_init__(self) -> None:
        check_steps("EAP-IG-activations", self.steps)
        check_choice("eap-ig-activations", "quadrature", self.quadrature, Quadrature)


def layer_nodes(g: Graph) -> list[slice]:
    """EAP-IG's interpolated nodes as sender ranges: the input, each attention layer, each MLP."""
    out = [slice(0, 1)]
    for l in range(g.n_layers):
        out.append(g.head_senders(l))
        if g.has_mlp:
            m = g.mlp_sender(l)
            out.append(slice(m, m + 1))
    return out


def score_eap_ig_activations(model: Any, tok: TokenizedTask, options: EAPIGActivationsOptions, *,
                             batch_size: int | None = None, metric: str = "logit_diff",
                             progress: Progress = no_progress, check: bool = True) -> EdgeScores:
    t0 = time.perf_counter()
    alphas, weights = quadrature_points(options.quadrature, options.steps)
    prep = prepare(model, tok, metric, check=check, batch_size=batch_size)
    gm, tok, m = prep.gm, prep.tok, prep.metric
    g = gm.graph
    nodes = layer_nodes(g)
    scores = torch.zeros(len(g.senders), len(g.receivers), dtype=score_dtype(gm), device=gm.device)
    n = len(tok)
    bs = prep.batch_size
    sizes = [min(bs, n - i) for i in range(0, n, bs)]
    total = sum(2 + len(nodes) * -(-len(alphas) // max(1, bs // nb)) for nb in sizes)
    done = 0
    clean_sum = corr_sum = 0.0
    for b in tok.batches(bs):
        assert b.corrupted is not None
        Nb = len(b)
        out_c, al_c = sender_outputs(gm, b.clean, b.last, targets_of(b))
        out_k, al_k = sender_outputs(gm, b.corrupted, b.last, targets_of(b))
        clean_sum += float(m(al_c).sum())
        corr_sum += float(m(al_k).sum())
        done += 2
        progress(done, total, "eap-ig-activations")
        delta = out_c - out_k
        del out_c
        e_c = gm.embed(b.clean)
        per_fwd = max(1, bs // Nb)
        for node in nodes:
            keep = torch.ones(1, len(g.senders), len(g.receivers), dtype=gm.dtype, device=gm.device)
            keep[0, node] = 0.0
            for chunk, w in chunks(alphas, weights, per_fwd):
                c = len(chunk)
                a = torch.tensor(chunk, dtype=gm.dtype, device=gm.device).view(1, c, 1, 1, 1)
                # Only the node's rows of the replacement are read; the others are never dropped.
                rep = (out_k.unsqueeze(1) + a * delta.unsqueeze(1)).reshape(len(g.senders), c * Nb, *delta.shape[2:])
                on_grad = contraction_hook(g, scores, lambda: delta, b.last,
                                           torch.tensor(w, dtype=gm.dtype, device=gm.device), Nb)
                x0 = e_c.repeat(c, 1, 1).requires_grad_(True)
                with torch.enable_grad():
                    run = run_graph(gm, x0, b.last.repeat(c), targets_of(b).repeat(c), keep=keep,
                                    replacement=rep, receiver_grad=on_grad)
                    torch.autograd.grad(m(run.answer_logits[0]).sum(), x0, allow_unused=True)
                del rep, run
                done += 1
                progress(done, total, "eap-ig-activations")
        del delta, out_k
    scores /= n * len(nodes)
    return EdgeScores(
        graph=g, scores=g.from_dense(scores).float().cpu(), method="eap-ig-activations", metric=prep.metric_name,
        config={**options_config(options), "interpolation": "layer-activations", "layer_nodes": len(nodes)},
        clean_metric=clean_sum / n, corrupted_metric=corr_sum / n, n_examples=n, seconds=time.perf_counter() - t0,
    )


def eap_ig_activations(
    model: Any,
    tok: TokenizedTask,
    *,
    steps: int = EAPIGActivationsOptions.steps,
    quadrature: Quadrature = EAPIGActivationsOptions.quadrature,
    batch_size: int | None = None,
    metric: str = "logit_diff",
    progress: Progress = no_progress,
    check: bool = True,
) -> EdgeScores:
    """Score every edge by integrated gradients along each layer node's activations (module docstring)."""
    return score_eap_ig_activations(model, tok, EAPIGActivationsOptions(steps, quadrature), batch_size=batch_size,
                                    metric=metric, progress=progress, check=check)


METHOD = DiscoveryMethod(
    "eap-ig-activations", "EAP-IG interpolating each layer node's activations (EAP-IG's definition; (1+2L)× EAP-IG's cost).",
    EAPIGActivationsOptions, score_eap_ig_activations,
)

__all__ = ["METHOD", "EAPIGActivationsOptions", "eap_ig_activations", "layer_nodes", "score_eap_ig_activations"]
