"""Edge attribution from gradients: ``(clean_s − corrupted_s) · ∂metric/∂input_r``, all edges at once.

For each batch: a forward records every sender's clean output, one its corrupted output, and
forwards with gradients give ∂metric/∂input_r for every receiver ``r`` (its own input tensor, so a
head's q, k and v get separate gradients). Backward hooks on the receiver inputs contract each
layer's gradients with the sender differences as they arrive, so the per-receiver gradients never
all live in memory together. Scores are summed over positions, averaged over examples, and
weighted over the integration points (weights summing to one).

:func:`gradient_edge_scores` takes the gradients at input embeddings
``x(α) = e_corr + α · (e_clean − e_corr)``: α = 1 alone is EAP at the clean run, α = 0 alone EAP at
the corrupted run (TransformerLens's ``attribution_patch(granularity="edge")`` summed over
positions), several α EAP-IG with integrated gradients on the input embedding (Hanna et al., 2024).

Per-prompt scores of a few edges (:func:`per_prompt_scores`): the same contraction, kept per example
for those edges only, while a scoring pass runs; nothing per prompt is held for the other edges.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch

from circuitwise.circuits.forward import (
    GraphModel,
    KQGrad,
    Prefix,
    ReceiverGrad,
    first_difference,
    run_graph,
    shared_prefix,
)
from circuitwise.circuits.graph import Graph
from circuitwise.circuits.registry import Quadrature
from circuitwise.circuits.scores import EdgeScores, Prepared, Progress, no_progress, sender_outputs
from circuitwise.metrics import targets_of
from circuitwise.models import parallel
from circuitwise.models.parallel import map_pieces
from circuitwise.tasks.tokenize import TokenizedTask


def quadrature_points(rule: Quadrature, steps: int) -> tuple[list[float], list[float]]:
    """Integration points α on [0, 1] (0 = corrupted, 1 = clean) and their weights (sum 1)."""
    n = steps
    if rule == "right":
        return [k / n for k in range(1, n + 1)], [1 / n] * n
    if rule == "left":
        return [k / n for k in range(n)], [1 / n] * n
    if rule == "midpoint":
        return [(k + 0.5) / n for k in range(n)], [1 / n] * n
    if rule == "trapezoid":
        return [k / n for k in range(n + 1)], [0.5 / n] + [1 / n] * (n - 1) + [0.5 / n]
    raise ValueError(rule)


def combine_points(grad: torch.Tensor, weights: torch.Tensor, Nb: int, uniform: bool) -> torch.Tensor:
    """``Σ_c w_c · grad[:, c]`` of a receiver gradient ``[R, c·Nb, …]`` over its ``c`` integration points."""
    g5 = grad.reshape(grad.shape[0], int(weights.numel()), Nb, *grad.shape[2:])
    if uniform:
        return g5.sum(1) * weights[0]
    return torch.einsum("rc...,c->r...", g5, weights.to(grad.dtype))


@dataclass
class PerPrompt:
    """Per-example scores of the edges ``senders[i] → receivers[i]`` (dense indices), filled by every
    gradient scoring pass that runs while :func:`per_prompt_scores` is active: one ``[E, n]`` part
    per pass, in the order the passes ran (each the pass's examples in order)."""

    senders: torch.Tensor
    receivers: torch.Tensor
    parts: list[torch.Tensor] = field(default_factory=list)
    # Every edge, in edge order (every_edge_scores): each receiver's contraction is then run per example.
    every: bool = False

    def values(self, n: int) -> torch.Tensor | None:
        """``[E, n]``: the passes' parts side by side, or None unless they cover exactly ``n`` examples
        (a method that does not score through :func:`gradient_sums` leaves no parts)."""
        if sum(p.shape[1] for p in self.parts) != n:
            return None
        return torch.cat(self.parts, dim=1) if self.parts else torch.zeros(len(self.senders), 0, dtype=torch.float64)


# A context variable, not a parameter: scoring functions share one signature across the registry, and
# only the gradient engine can keep these terms cheaply (see per_prompt_scores).
_PER_PROMPT: ContextVar[PerPrompt | None] = ContextVar("circuitwise_per_prompt", default=None)


@contextmanager
def per_prompt_scores(graph: Graph, edges: Sequence[int]) -> Iterator[PerPrompt]:
    """While active, each gradient scoring pass (EAP, EAP-IG, RelP) also keeps the per-example score
    of the given edge ids (their mean over the examples is the pass's score of each): ``O(E × n)``
    numbers for a few edges, where per-example scores of every edge would be ``O(edges × n)``."""
    s, r = graph.edge_index
    idx = torch.as_tensor(list(edges), dtype=torch.long)
    track = PerPrompt(s[idx].clone(), r[idx].clone())
    token = _PER_PROMPT.set(track)
    try:
        yield track
    finally:
        _PER_PROMPT.reset(token)


@contextmanager
def every_edge_scores(graph: Graph) -> Iterator[PerPrompt]:
    """:func:`per_prompt_scores` of every edge, for a pass whose ``[edge, n]`` terms fit in memory
    (``models.memory.EVERY_EDGE_BYTES``): each receiver's contraction then runs per example (the same
    products, kept apart) and the pass's scores are their sum, so nothing is computed twice. Edge
    stability reads its blocks of prompts from these instead of scoring them again."""
    s, r = graph.edge_index
    track = PerPrompt(s, r, every=True)
    token = _PER_PROMPT.set(track)
    try:
        yield track
    finally:
        _PER_PROMPT.reset(token)


def contraction_hook(g: Graph, scores: torch.Tensor, delta: Callable[[], torch.Tensor], last: torch.Tensor,
                     weights: torch.Tensor, Nb: int, per_prompt: tuple[PerPrompt, torch.Tensor] | None = None
                     ) -> ReceiverGrad:
    """A ``receiver_grad`` that adds ``Σ_c w_c · delta_s · grad_r`` into ``scores[s, r]``.

    The batch of the run is ``c`` integration points × ``Nb`` examples; ``delta()`` is the senders'
    clean − corrupted outputs ``[S, Nb, P, d]``. ``per_prompt``: the tracked edges and their
    ``[E, Nb]`` buffer, which gets the same terms per example.
    """
    rows = torch.arange(Nb, device=scores.device)
    uniform = bool((weights == weights[0]).all())
    every = per_prompt is not None and per_prompt[0].every
    # Every edge's id at [sender, receiver] (every_edge_scores), and the senders' differences by example.
    ids = g.to_dense(torch.arange(g.n_edges, device=scores.device), fill=-1) if every else None
    by_example: list[torch.Tensor] = []  # the hook's one delta, by example (a hook serves one chunk)

    def on_grad(rs: slice | int, grad: torch.Tensor) -> None:
        gsum = combine_points(grad, weights, Nb, uniform)
        d = delta()
        if every:
            assert per_prompt is not None and ids is not None
            _every_edge(g, scores, per_prompt[1], ids, by_example, rs, d, gsum, rows, last)
            return
        if per_prompt is not None:
            _per_example(g, per_prompt, rs, d, gsum, rows, last)
        if rs == g.logits_receiver:  # gsum [1, Nb, d] at each example's last position
            scores[:, rs] += torch.einsum("snd,nd->s", d[:, rows, last], gsum[0])
            return
        n_send = g.senders_before(rs.start if isinstance(rs, slice) else rs)
        part = d[:n_send].reshape(n_send, -1) @ gsum.reshape(gsum.shape[0], -1).T
        scores[:n_send, rs] += part if isinstance(rs, slice) else part[:, 0]

    return on_grad


def _every_edge(g: Graph, scores: torch.Tensor, out: torch.Tensor, ids: torch.Tensor,
                by_example: list[torch.Tensor], rs: slice | int, d: torch.Tensor, gsum: torch.Tensor,
                rows: torch.Tensor, last: torch.Tensor) -> None:
    """:func:`contraction_hook`'s sums for receivers ``rs``, per example: ``out`` ``[edge, Nb]`` gets
    each example's terms and ``scores`` their sum (the same products as the summed matmul)."""
    Nb = rows.numel()
    if rs == g.logits_receiver:
        per = torch.einsum("snd,nd->ns", d[:, rows, last], gsum[0])  # [Nb, senders]
        scores[:, rs] += per.sum(0)
        out[ids[:, rs]] += per.T.to(out.dtype)
        return
    lo = rs.start if isinstance(rs, slice) else rs
    n_send = g.senders_before(lo)
    if not by_example:  # once per hook: [Nb, senders, positions · d_model]
        by_example.append(d.permute(1, 0, 2, 3).reshape(Nb, d.shape[0], -1))
    dn = by_example[0][:, :n_send]
    gn = gsum.permute(1, 0, 2, 3).reshape(Nb, gsum.shape[0], -1)
    per = torch.bmm(dn, gn.transpose(1, 2))  # [Nb, n_send, receivers in rs]
    if isinstance(rs, slice):
        scores[:n_send, rs] += per.sum(0)
        out[ids[:n_send, rs].reshape(-1)] += per.reshape(Nb, -1).T.to(out.dtype)
    else:
        scores[:n_send, rs] += per.sum(0)[:, 0]
        out[ids[:n_send, rs]] += per[:, :, 0].T.to(out.dtype)


def _per_example(g: Graph, per_prompt: tuple[PerPrompt, torch.Tensor], rs: slice | int, d: torch.Tensor,
                 gsum: torch.Tensor, rows: torch.Tensor, last: torch.Tensor) -> None:
    """Add the tracked edges' terms of receivers ``rs`` into their ``[E, Nb]`` buffer, per example."""
    track, out = per_prompt
    lo, hi = (rs.start, rs.stop) if isinstance(rs, slice) else (rs, rs + 1)
    for e in ((track.receivers >= lo) & (track.receivers < hi)).nonzero().flatten().tolist():
        s, r = int(track.senders[e]), int(track.receivers[e])
        if r == g.logits_receiver:
            out[e] += (d[s, rows, last] * gsum[0]).sum(-1).to(out.dtype)
        else:
            out[e] += (d[s] * gsum[r - lo]).sum((-2, -1)).to(out.dtype)


def positional_contraction_hook(g: Graph, scores: torch.Tensor, delta: Callable[[], torch.Tensor],
                                last: torch.Tensor, weights: torch.Tensor, Nb: int, columns: torch.Tensor
                                ) -> ReceiverGrad:
    """:func:`contraction_hook` per position column: adds into ``scores[s, r, c]`` the part of
    ``Σ_c w_c · delta_s · grad_r`` at the positions ``columns`` ``[Nb, P]`` assigns to column ``c``
    (−1: none, padding past the last token, where every gradient is zero).

    Each column is one masked matrix product, so nothing per example × edge × position is held.
    """
    rows = torch.arange(Nb, device=scores.device)
    C = scores.shape[-1]
    uniform = bool((weights == weights[0]).all())
    masks = [columns == j for j in range(C)]
    at_last = columns[rows, last]  # the logits receiver's column, per example

    def on_grad(rs: slice | int, grad: torch.Tensor) -> None:
        gsum = combine_points(grad, weights, Nb, uniform)  # as contraction_hook combines them
        d = delta()
        if rs == g.logits_receiver:  # gsum [1, Nb, d] at each example's last position
            per = torch.einsum("snd,nd->sn", d[:, rows, last], gsum[0])
            for j in range(C):
                scores[:, rs, j] += per[:, at_last == j].sum(1)
            return
        n_send = g.senders_before(rs.start if isinstance(rs, slice) else rs)
        flat = d[:n_send].reshape(n_send, -1)
        for j in range(C):
            gj = gsum * masks[j].to(gsum.dtype)[None, :, :, None]
            part = flat @ gj.reshape(gj.shape[0], -1).T
            scores[:n_send, rs, j] += part if isinstance(rs, slice) else part[:, 0]

    return on_grad


# kq(batch, start, weights, Nb, delta) -> the gradient run's kq_grad (gradient_sums).
KQHooks = Callable[[TokenizedTask, int, torch.Tensor, int, Callable[[], torch.Tensor]], KQGrad]


def score_dtype(gm: GraphModel) -> torch.dtype:
    return torch.float64 if gm.dtype == torch.float64 else torch.float32


def chunks(alphas: Sequence[float], weights: Sequence[float], per_fwd: int):
    for start in range(0, len(alphas), per_fwd):
        yield list(alphas[start : start + per_fwd]), list(weights[start : start + per_fwd])


def gradient_edge_scores(
    prep: Prepared,
    alphas: Sequence[float],
    weights: Sequence[float],
    *,
    batch_size: int,
    method: str,
    config: dict,
    progress: Progress = no_progress,
) -> EdgeScores:
    t0 = time.perf_counter()
    sums = gradient_sums(prep, alphas, weights, batch_size=batch_size, method=method, progress=progress)
    g, n = prep.gm.graph, len(prep.tok)
    return EdgeScores(
        graph=g,
        scores=g.from_dense(sums.scores).float().cpu(),
        method=method,
        metric=prep.metric_name,
        config=config,
        clean_metric=sums.clean_sum / n,
        corrupted_metric=sums.corrupted_sum / n,
        n_examples=n,
        seconds=time.perf_counter() - t0,
    )


@dataclass(frozen=True)
class GradientSums:
    """Edge scores ``[sender, receiver]`` (or ``[sender, receiver, column]``) averaged over examples,
    and the clean and corrupted metrics summed over them."""

    scores: torch.Tensor
    clean_sum: float
    corrupted_sum: float


def gradient_sums(
    prep: Prepared,
    alphas: Sequence[float],
    weights: Sequence[float],
    *,
    batch_size: int,
    method: str,
    progress: Progress = no_progress,
    columns: Callable[[TokenizedTask], torch.Tensor] | None = None,
    n_columns: int = 0,
    kq: KQHooks | None = None,
) -> GradientSums:
    """The engine of :func:`gradient_edge_scores`; with ``columns`` (a batch's ``[N, P]`` position
    columns, −1 for none) the scores keep ``n_columns`` position columns (circuits.positional).
    ``kq(batch, start, weights, Nb, delta)`` gives each gradient run's ``kq_grad`` (key/value
    gradients split by query rows; circuits.positional_kq), which keeps its own sums."""
    gm, tok, metric = prep.gm, prep.tok, prep.metric
    g = gm.graph
    track = _PER_PROMPT.get() if columns is None else None
    # A single gradient at an end point records that run's sender outputs on the way: one forward fewer.
    at_end = alphas[0] if len(alphas) == 1 and alphas[0] in (0.0, 1.0) else None
    n = len(tok)
    # Batches run on the engines' workers (models.parallel), each with its own score buffer; the
    # planned batch is shared out among them, so the examples in flight stay what the plan counted.
    batch_size = max(1, -(-batch_size // max(1, min(parallel.WORKERS, -(-n // batch_size)))))
    sizes = [min(batch_size, n - i) for i in range(0, n, batch_size)]
    total = sum(1 + int(at_end is None) + -(-len(alphas) // max(1, batch_size // nb)) for nb in sizes)
    done = 0
    lock = threading.Lock()

    def step() -> None:
        nonlocal done
        with lock:  # workers report from their own threads
            done += 1
            progress(done, total, method)

    def one(b: TokenizedTask) -> tuple[torch.Tensor, float, float, torch.Tensor | None]:
        """One batch's summed edge scores, its clean and corrupted metric sums, and its tracked edges'
        per-example scores (:func:`per_prompt_scores`)."""
        assert b.corrupted is not None
        shape = (len(g.senders), len(g.receivers)) + ((n_columns,) if columns is not None else ())
        scores = torch.zeros(shape, dtype=score_dtype(gm), device=gm.device)
        tracked = None if track is None else (track, torch.zeros(len(track.senders), len(b), dtype=scores.dtype,
                                                                 device=gm.device))
        clean_sum = corr_sum = 0.0
        Nb = len(b)
        state: dict[str, torch.Tensor] = {}
        outs: dict[float, torch.Tensor] = {}
        for a, tokens in ((1.0, b.clean), (0.0, b.corrupted)):
            if a == at_end:
                continue
            outs[a], al = sender_outputs(gm, tokens, b.last, targets_of(b))
            if a == 1.0:
                clean_sum += float(metric(al).sum())
            else:
                corr_sum += float(metric(al).sum())
            step()
        e_c, e_k = gm.embed(b.clean), gm.embed(b.corrupted)
        # Before the prompts' first difference every interpolated input is the same and every
        # sender's clean − corrupted difference is zero, so those positions add nothing to any
        # score: they are run once, and the gradient runs start after them.
        start = 0 if at_end is not None else first_difference(b.clean, b.corrupted, b.last)
        prefix = shared_prefix(gm, e_c, start)
        if at_end is None:
            state["delta"] = (outs.pop(1.0) - outs.pop(0.0))[:, :, start:].contiguous()
        # Integration points per forward: keep about batch_size rows per forward.
        per_fwd = max(1, batch_size // Nb)
        for chunk, w in chunks(alphas, weights, per_fwd):
            c = len(chunk)
            w_t = torch.tensor(w, dtype=gm.dtype, device=gm.device)
            if columns is None:
                on_grad = contraction_hook(g, scores, lambda: state["delta"], b.last - start, w_t, Nb, tracked)
            else:
                on_grad = positional_contraction_hook(g, scores, lambda: state["delta"], b.last - start, w_t, Nb,
                                                      columns(b).to(gm.device)[:, start:])
            alpha = torch.tensor(chunk, dtype=gm.dtype, device=gm.device).view(c, 1, 1, 1)
            x0 = (e_k.unsqueeze(0) + alpha * (e_c - e_k).unsqueeze(0))[:, :, start:].reshape(c * Nb, -1, e_c.shape[-1])
            x0 = x0.detach().requires_grad_(True)
            pre = None if prefix is None else Prefix(start, tuple((k.repeat(c, 1, 1, 1), v.repeat(c, 1, 1, 1))
                                                                  for k, v in prefix.kv))
            kq_grad = None if kq is None else kq(b, start, w_t, Nb, lambda: state["delta"])
            with torch.enable_grad():
                run = run_graph(gm, x0, b.last.repeat(c), targets_of(b).repeat(c), record=at_end is not None,
                                receiver_grad=on_grad, prefix=pre, kq_grad=kq_grad)
                if at_end is not None:
                    assert run.outputs is not None
                    m_here = float(metric(run.answer_logits[0].detach()).sum())
                    (other,) = outs.values()
                    if at_end == 1.0:
                        clean_sum += m_here
                        state["delta"] = run.outputs - other
                    else:
                        corr_sum += m_here
                        state["delta"] = other - run.outputs
                torch.autograd.grad(metric(run.answer_logits[0]).sum(), x0)
            step()
        return scores, clean_sum, corr_sum, None if tracked is None else tracked[1]

    # Each batch's buffer is added in as it comes back and dropped: with position columns a buffer is
    # senders × receivers × columns, which one per batch held together would multiply by the batches.
    summed: list[torch.Tensor] = []
    sums = [0.0, 0.0]
    per_example: list[torch.Tensor] = []

    def add(_i: int, part: tuple[torch.Tensor, float, float, torch.Tensor | None]) -> None:
        if summed:
            summed[0] += part[0]
        else:
            summed.append(part[0])
        sums[0] += part[1]
        sums[1] += part[2]
        if part[3] is not None:
            per_example.append(part[3])

    map_pieces(one, list(tok.batches(batch_size)), gm.device, on_done=add, keep=False)
    scores = summed[0] / n
    if track is not None:  # batches come back in order, so their examples line up with tok's
        # On the CPU first (MPS has no float64); every edge's terms stay float32 (their size is planned).
        whole = torch.cat(per_example, dim=1).cpu()
        track.parts.append(whole.float() if track.every else whole.double())
    return GradientSums(scores, sums[0], sums[1])


__all__ = ["GradientSums", "PerPrompt", "chunks", "combine_points", "contraction_hook", "every_edge_scores",
           "gradient_edge_scores", "gradient_sums", "per_prompt_scores", "positional_contraction_hook",
           "quadrature_points", "score_dtype"]
