"""Exact edge patching: the metric with chosen edges read from a reference run.

``patched_metrics`` runs the clean prompts with every edge *outside* each given edge set read
from the corrupted run (or from the mean over the task's clean prompts), many edge sets stacked
in one forward. Circuit selection, faithfulness and exact edge scores are all built on it.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import dataclass, field
from functools import partial
from typing import Callable, Iterator, Literal, get_args

import numpy as np
import torch

from circuitwise.circuits.forward import GraphModel, Prefix, Resume, first_difference, run_graph, shared_prefix
from circuitwise.circuits.graph import Graph
from circuitwise.circuits.prune import prune_rows
from circuitwise.circuits.scores import Prepared, Progress, no_progress, sender_outputs, stack_budget
from circuitwise.errors import ConfigError, DegenerateMetricError
from circuitwise.metrics import Targets, targets_of
from circuitwise.models.memory import MEMO_BYTES, STACK_BYTES
from circuitwise.models.parallel import map_pieces
from circuitwise.tasks.tokenize import TokenizedTask

Ablation = Literal["corrupted", "mean"]


def check_ablation(ablation: str) -> Ablation:
    if ablation not in get_args(Ablation):
        raise ConfigError(f"Unknown ablation {ablation!r}. Choose one of: {', '.join(get_args(Ablation))}.")
    return ablation  # type: ignore[return-value]


@dataclass(frozen=True)
class PatchedMetrics:
    """Per-example metrics: ``patched[k, n]`` for edge set k, and the clean and corrupted runs."""

    patched: torch.Tensor  # [K, N]
    clean: torch.Tensor  # [N]
    corrupted: torch.Tensor  # [N]

    def rows(self, start: int, stop: int) -> "PatchedMetrics":
        """The metrics of edge sets ``start:stop`` (one stacked call, several measurements)."""
        return PatchedMetrics(self.patched[start:stop], self.clean, self.corrupted)


@torch.no_grad()
def mean_outputs(gm: GraphModel, tok: TokenizedTask, batch_size: int) -> torch.Tensor:
    """Each sender's output averaged over the clean prompts, per position ``[sender, 1, pos, d]``.

    Positions past an example's last token are left out of that position's mean.
    """
    P = tok.clean.shape[1]
    total = torch.zeros(len(gm.graph.senders), 1, P, gm.d_model, dtype=gm.dtype, device=gm.device)
    count = torch.zeros(P, dtype=gm.dtype, device=gm.device)
    for b in tok.batches(batch_size):
        out, _ = sender_outputs(gm, b.clean, b.last, targets_of(b))
        Pb = out.shape[2]
        valid = (torch.arange(Pb, device=gm.device)[None] <= b.last[:, None]).to(gm.dtype)
        total[:, 0, :Pb] += torch.einsum("np,snpd->spd", valid, out)
        count[:Pb] += valid.sum(0)
    return total / count.clamp_min(1)[None, None, :, None]


# STACK_BYTES (bytes of sender activations one stacked forward holds) lives with the memory plan
# that counts it (models.memory); this module's name is what tests set.


@torch.no_grad()
def patched_metrics(
    prep: Prepared,
    keep_edges: torch.Tensor,
    *,
    ablation: Ablation = "corrupted",
    batch_size: int | None = None,
    base: Literal["clean", "corrupted"] = "clean",
    progress: Progress = no_progress,
    what: str = "patching",
) -> PatchedMetrics:
    """Metrics with, for each row of ``keep_edges`` ``[K, edge]`` (bool), the other edges patched.

    ``base="clean"`` runs the clean prompts with dropped edges from the corrupted run (or the
    mean); ``base="corrupted"`` runs the corrupted prompts with dropped edges from the clean run
    (denoising), used for exact single-edge scores.

    Each distinct edge set runs once (a curve's budgets, MIB's two rankings and the random
    circuits often repeat one), and the sets whose result is the base or the replacement run by
    definition — every edge kept, or, with run replacements, none — are those runs' metrics.
    """
    check_ablation(ablation)
    gm, tok, metric = prep.gm, prep.tok, prep.metric
    batch_size = batch_size or prep.batch_size
    g = gm.graph
    if keep_edges.dim() == 1:
        keep_edges = keep_edges[None]
    if keep_edges.shape[-1] != g.n_edges:
        raise ConfigError(f"An edge set has {keep_edges.shape[-1]} entries but the graph has {g.n_edges} edges.")
    uniq, inverse = torch.unique(keep_edges.bool().cpu(), dim=0, return_inverse=True)
    if ablation == "corrupted" and base == "clean":
        # Dangling edges carry what dropping them would (circuits.prune): pruned, most random
        # circuits are empty or tiny and many edge sets become one.
        uniq, again = torch.unique(prune_rows(g, uniq), dim=0, return_inverse=True)
        inverse = again[inverse]
    memo = _memo(gm, tok, prep.metric_name, ablation, base)
    keys = [_digest(row) for row in uniq]
    known = torch.tensor([k in memo.rows for k in keys], dtype=torch.bool)
    full = uniq.all(1)
    empty = ~uniq.any(1) & (ablation == "corrupted")  # a mean-ablated empty circuit is no run of ours
    run_rows = (~full & ~empty & ~known).nonzero().flatten()
    full_rows, empty_rows = full.nonzero().flatten(), empty.nonzero().flatten()
    # Each set starts at the first layer one of its dropped edges enters, from the base run's state
    # there (nothing before it differs): single edges and the complements of small circuits skip
    # most of the model. Sets are stacked in order of that layer.
    first = _first_layers(g, uniq[run_rows]) if base == "clean" else torch.zeros(len(run_rows), dtype=torch.long)
    order = torch.argsort(first, descending=True, stable=True)
    run_rows, first = run_rows[order], first[order]
    resumable = bool((first > 0).any())
    todo = uniq[run_rows].to(gm.device)
    patched_u = torch.empty(uniq.shape[0], len(tok), dtype=torch.float32)
    for i in (known & ~full & ~empty).nonzero().flatten().tolist():
        patched_u[i] = memo.rows[keys[i]]
    if todo.shape[0] == 0 and memo.clean is not None:
        # Everything measured before: no forward at all.
        patched_u[full_rows] = (memo.clean if base == "clean" else memo.corrupted)[None]
        patched_u[empty_rows] = (memo.corrupted if base == "clean" else memo.clean)[None]
        progress(1, 1, what)
        return PatchedMetrics(patched_u[inverse], memo.clean.clone(), memo.corrupted.clone())
    means = mean_outputs(gm, tok, batch_size) if ablation == "mean" else None
    if means is None and tok.corrupted is not None:
        # The batch is planned for runs over every position; a patched run holds the positions
        # after the shared prefix only, so proportionally more examples fit in the same memory,
        # and the stacked forwards' matrix products get the rows they need to run near full speed.
        T = int(tok.clean.shape[1])
        start = first_difference(tok.clean, tok.corrupted, tok.last)
        batch_size = min(len(tok), max(batch_size, batch_size * T // max(1, T - start)))
    clean = torch.empty(len(tok))
    corr = torch.empty(len(tok))
    n_batches = -(-len(tok) // batch_size)
    # Progress counts patched variants; each batch stacks as many as fit after its shared prefix.
    total = n_batches * max(1, todo.shape[0])
    done = 0

    def tick(_: int, m: torch.Tensor) -> None:  # in the caller's thread (models.parallel)
        nonlocal done
        done += m.shape[0]
        progress(done, total, what)

    for rows, b in _batches_by_length(tok, batch_size):
        x_c, x_k = gm.embed(b.clean), gm.embed(b.corrupted)
        # Positions before the prompts' first difference hold the same tokens in both prompts, so
        # every run of the batch — clean, corrupted and each patched one (the replacement equals
        # the live output there) — shares them: computed once, later queries read their keys and
        # values. Mean replacements differ from the live outputs everywhere: no shared prefix.
        start = first_difference(b.clean, b.corrupted, b.last) if means is None else 0
        prefix = shared_prefix(gm, x_c, start)
        x_c, x_k = x_c[:, start:], x_k[:, start:]
        # Only the replacement run's sender outputs are needed; the other run gives its metric.
        need_k = base == "clean" and means is None
        resids: list[torch.Tensor] = []
        run_c = run_graph(gm, x_c, b.last, b.answers, record=base == "corrupted" or resumable, prefix=prefix,
                          _resid=resids if resumable else None)
        run_k = run_graph(gm, x_k, b.last, b.answers, record=need_k, prefix=prefix)
        clean[rows] = metric(run_c.answer_logits[0]).float().cpu()
        corr[rows] = metric(run_k.answer_logits[0]).float().cpu()
        if base == "clean":
            x0, rep = x_c, run_k.outputs if means is None else means[:, :, : b.clean.shape[1]]
            base_out = run_c.outputs
        else:
            x0, rep, base_out = x_k, run_c.outputs, None
        del run_c, run_k
        # Every edge kept is the base run itself; none kept (run replacements) the other run.
        base_m, other_m = (clean, corr) if base == "clean" else (corr, clean)
        patched_u[full_rows[:, None], rows[None]] = base_m[rows][None]
        patched_u[empty_rows[:, None], rows[None]] = other_m[rows][None]
        here = stack_budget(gm, len(rows), x0.shape[1], budget_bytes=STACK_BYTES)  # positions after the prefix
        spans = list(_stacks(first, here))
        assert rep is not None
        stack = partial(_patched_stack, gm=gm, todo=todo, first=first, x0=x0, batch=b, rep=rep, prefix=prefix,
                        resids=resids, base_out=base_out, metric=metric)
        for (k0, k1), m in zip(spans, map_pieces(stack, spans, gm.device, on_done=tick), strict=True):
            patched_u[run_rows[k0:k1, None], rows[None]] = m
        if todo.shape[0] == 0:
            tick(0, torch.empty(1))
    memo.remember(clean, corr, [keys[i] for i in run_rows.tolist()], patched_u[run_rows])
    return PatchedMetrics(patched_u[inverse], clean, corr)


def _patched_stack(span: tuple[int, int], *, gm: GraphModel, todo: torch.Tensor, first: torch.Tensor,
                   x0: torch.Tensor, batch: _Batch, rep: torch.Tensor, prefix: Prefix | None,
                   resids: list[torch.Tensor], base_out: torch.Tensor | None,
                   metric: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """The metrics ``[K, N]`` of edge sets ``todo[span]`` (which start at the same layer)."""
    k0, k1 = span
    g = gm.graph
    keep = g.to_dense(todo[k0:k1].to(gm.dtype), fill=1.0)
    l0 = int(first[k0])
    resume = None
    if l0 > 0:
        assert base_out is not None
        resume = Resume(l0, resids[l0], base_out[: g.senders_before_attn(l0)])
    run = run_graph(gm, x0, batch.last, batch.answers, keep=keep, replacement=rep, prefix=prefix, resume=resume)
    return metric(run.answer_logits).float().cpu()


def _stacks(first: torch.Tensor, most: int) -> Iterator[tuple[int, int]]:
    """Row ranges of at most ``most`` sets that start at the same layer (``first`` is sorted)."""
    k0, n = 0, len(first)
    while k0 < n:
        k1 = min(n, k0 + most)
        same = int((first[k0:k1] == first[k0]).sum())
        yield k0, k0 + same
        k0 += same


def _first_layers(g: Graph, keep: torch.Tensor) -> torch.Tensor:
    """For each edge set ``[K, edge]``, the first layer that one of its dropped edges enters (the
    logits count as the last layer, which then runs at the last position only)."""
    layer = torch.tensor([g.receivers[int(r)].layer for r in g.edge_index[1]], dtype=torch.int16)
    out = torch.empty(keep.shape[0], dtype=torch.long)
    for c0 in range(0, keep.shape[0], 256):
        k = keep[c0 : c0 + 256]
        out[c0 : c0 + 256] = torch.where(k, g.n_layers, layer[None]).amin(1).long()
    return out.clamp_max(g.n_layers - 1)


@dataclass
class _Memo:
    """One task's measured edge sets on one model (per metric, ablation and base run)."""

    clean: torch.Tensor | None = None  # [N] metric of the clean run
    corrupted: torch.Tensor | None = None
    rows: "OrderedDict[bytes, torch.Tensor]" = field(default_factory=OrderedDict)  # edge set -> [N]

    def remember(self, clean: torch.Tensor, corrupted: torch.Tensor, keys: list[bytes], values: torch.Tensor) -> None:
        self.clean, self.corrupted = clean.clone(), corrupted.clone()
        for k, v in zip(keys, values):
            self.rows[k] = v.clone()
        room = max(1, int(MEMO_BYTES // (4 * max(1, clean.numel()))))
        while len(self.rows) > room:
            self.rows.popitem(last=False)


# Tasks remembered per model; an older task's measurements are dropped first.
_MEMO_TASKS = 4


def _memo(gm: GraphModel, tok: TokenizedTask, metric: str, ablation: str, base: str) -> _Memo:
    """The memo of this task (its tokens, answers and lengths) under this metric, ablation and base."""
    h = hashlib.blake2b(digest_size=16)
    for t in (tok.clean, tok.corrupted, tok.answers, tok.last):
        if t is not None:
            h.update(str(tuple(t.shape)).encode())
            h.update(t.detach().cpu().numpy().tobytes())
    key = (h.digest(), metric, ablation, base)
    memos = gm.memo
    if key not in memos:
        memos[key] = _Memo()
        while len(memos) > _MEMO_TASKS:
            memos.pop(next(iter(memos)))
    return memos[key]


def _digest(row: torch.Tensor) -> bytes:
    """A 128-bit name of an edge set (bool ``[edge]``)."""
    return hashlib.blake2b(np.packbits(row.numpy()).tobytes(), digest_size=16).digest()


@dataclass(frozen=True)
class _Batch:
    clean: torch.Tensor
    corrupted: torch.Tensor
    last: torch.Tensor
    answers: Targets


def _batches_by_length(tok: TokenizedTask, batch_size: int) -> Iterator[tuple[torch.Tensor, _Batch]]:
    """Batches of examples of similar length (each trimmed to its longest), with their row indices.

    Every example's metric depends on its own row only, so grouping by length changes no number
    and pads ~20% fewer positions on tasks of mixed templates.
    """
    assert tok.corrupted is not None
    order = torch.sort(tok.last.cpu(), stable=True).indices
    for i in range(0, len(order), batch_size):
        rows = order[i : i + batch_size]
        at = rows.to(tok.clean.device)
        width = int(tok.last[at].max()) + 1
        yield rows, _Batch(tok.clean[at, :width], tok.corrupted[at, :width], tok.last[at], targets_of(tok)[at])


def normalise(patched: torch.Tensor | float, clean: float, corrupted: float) -> torch.Tensor:
    """``(patched − corrupted) / (clean − corrupted)``, never clipped; a near-zero gap raises."""
    gap = clean - corrupted
    if not abs(gap) > 1e-4 * max(1.0, abs(clean), abs(corrupted)):
        raise DegenerateMetricError(
            f"The clean and corrupted runs give almost the same metric ({clean:.4g} vs "
            f"{corrupted:.4g}), so a normalised faithfulness is meaningless. Use a corruption that "
            "changes the answer (e.g. --corruption flip), or more examples."
        )
    return (torch.as_tensor(patched, dtype=torch.float64) - corrupted) / gap


__all__ = ["Ablation", "PatchedMetrics", "STACK_BYTES", "check_ablation", "mean_outputs", "normalise", "patched_metrics"]
