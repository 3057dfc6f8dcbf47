"""Position-aware edges (PEAP; Haklay et al., 2025): edges between (sender, position) and (receiver,
position) pairs, their EAP / EAP-IG scores, circuits of (edge, position) pairs and their patching.

A position-agnostic edge (:mod:`circuitwise.circuits.graph`) is the sender→receiver write at every
token position. Here it is split by the position where the receiver reads it: a residual edge at
position p is the sender's output at p entering the receiver's input at p; for a head's query that
is the query position, for its key or value the key/value position (the edge then reaches every
later query through the head's attention). The EAP score of ``(s → r, p)`` is the position-agnostic
score before its sum over positions, ``(clean_s − corr_s)[p] · ∂m/∂in_r[p]`` (EAP-IG: the gradient
integrated along the input path), so summing over positions gives the EAP / EAP-IG score back.

Positions are columns (:class:`PositionSpec`): ``tokens`` — each token position, for prompts of one
token length; ``roles`` — each of the task's roles (``S1``, ``END`` …; prompts of different lengths
aligned role by role, as :func:`circuitwise.patching.positions.sweep_positions` aligns them), plus an
``other`` column for the tokens no role names, so nothing is lost from the sum. Scores are summed
over prompts as they come; nothing per prompt × edge × position is held.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch

from circuitwise.circuits.forward import KQPatch, run_graph
from circuitwise.circuits.gradients import gradient_sums
from circuitwise.circuits.graph import graph_of
from circuitwise.circuits.patch import PatchedMetrics
from circuitwise.circuits.scores import EdgeScores, Prepared, Progress, no_progress, sender_outputs, stack_budget
from circuitwise.errors import ConfigError, MemoryBudgetError, TaskError
from circuitwise.metrics import targets_of
from circuitwise.models import parallel
from circuitwise.models.memory import Shapes, budget_of, estimate
from circuitwise.patching.positions import sweep_positions, token_labels
from circuitwise.sizes import human
from circuitwise.tasks.tokenize import TokenizedTask

#: The ``positions`` option of EAP and EAP-IG: ``none`` (the position-agnostic score), ``tokens``
#: (one column per token position; prompts of one length) or ``roles`` (one per task role + other).
PositionOption = Literal["none", "tokens", "roles"]
PositionMode = Literal["tokens", "roles"]
OTHER = "other"


@dataclass(frozen=True)
class PositionSpec:
    """The position columns of a task: their labels, and how each example's tokens map onto them."""

    mode: PositionMode
    labels: tuple[str, ...]

    def index(self, tok: TokenizedTask) -> torch.Tensor:
        """``[N, P]`` column of each example's each position (−1 past its last token)."""
        N, P = tok.clean.shape
        last = tok.last.cpu()
        pos = torch.arange(P)[None].expand(N, P)
        if self.mode == "tokens":
            if P > len(self.labels):
                raise TaskError(f"These prompts have {P} tokens but there are {len(self.labels)} position columns; "
                                "use prompts of the length the columns were made for.")
            return torch.where(pos <= last[:, None], pos, -1)
        col = {name: j for j, name in enumerate(self.labels)}
        out = torch.where(pos <= last[:, None], col.get(OTHER, -1), -1)
        assert tok.roles is not None  # position_spec checked the roles
        for i, roles in enumerate(tok.roles):
            for name, p in roles.items():
                if name not in col:
                    raise TaskError(f"Example {i} has the role {name!r}, which is not among the position columns "
                                    f"{list(self.labels)}; use a task with the same roles.")
                out[i, p] = col[name]
        return out


def check_column_memory(model: Any, tok: TokenizedTask, spec: PositionSpec, *, key_query: bool = False) -> None:
    """Refuse, before any work, position-resolved scores whose buffers do not fit beside the model and
    one example of the scoring pass: senders × receivers × columns per worker (the batches' buffers are
    summed as they come back), and with ``key_query`` senders × layers × 2·heads × columns² as well."""
    g = graph_of(model)
    C, S, R = len(spec.labels), len(g.senders), len(g.receivers)
    copies = parallel.WORKERS + 2  # one buffer a worker, the running total, and the mean
    width = 8 if getattr(model.cfg, "dtype", None) == torch.float64 else 4
    need = copies * S * R * C * width
    if key_query:
        need += copies * S * g.n_layers * 2 * g.n_heads * C * C * width
    s = Shapes.from_model(model)
    T = int(tok.clean.shape[1])
    left = budget_of(model) - estimate("edges", s, T, 1, model.W_E.device)
    if need > left:
        what = "key × query scores" if key_query else "position-resolved scores"
        raise MemoryBudgetError(
            f"The {what} of {S} senders × {R} receivers over {C} position columns need about {human(need)} of "
            f"score buffers, beside the model and one prompt's pass only {human(max(left, 0))} is left. Fixes: "
            + ("positions=roles (a column per role, not per token), " if spec.mode == "tokens" else "")
            + ("kv_positions=key (key columns only), " if key_query else "")
            + "shorter prompts, or a larger --max-memory if more is free.")


def check_positions(model: Any, tok: TokenizedTask, options: Any) -> None:
    """Refuse, before any work, ``options.positions`` the prompts cannot line up, or whose buffers do not fit."""
    if getattr(options, "positions", "none") != "none":
        check_column_memory(model, tok, position_spec(tok, options.positions),
                            key_query=getattr(options, "kv_positions", "key") == "key-query")


def position_spec(tok: TokenizedTask, mode: str) -> PositionSpec:
    """The task's position columns, or a TaskError saying why it has none of this kind."""
    if mode == "tokens":
        if not tok.same_length:
            lengths = sorted({int(n) for n in tok.lengths})
            raise TaskError(
                f"Position-resolved edges by token need prompts of one token length; task {tok.task.name!r} "
                f"has lengths {lengths}. Give its examples roles and use positions=roles (aligned role by "
                "role), or use prompts of one length."
            )
        return PositionSpec("tokens", tuple(token_labels(tok.str_tokens[0])))
    if mode != "roles":
        raise ConfigError(f"positions must be 'tokens' or 'roles', not {mode!r}.")
    if tok.roles is None or not any(tok.roles):
        raise TaskError(
            f"positions=roles needs the task's roles (S1, END …), but task {tok.task.name!r} defines none. "
            "Add roles to its examples (character offsets of each role's word), or use positions=tokens "
            "for prompts of one token length."
        )
    # sweep_positions checks that every example has every role and orders them as the sentence reads.
    cols = sweep_positions(tok, "role")
    for i in range(len(tok)):
        row = cols.index[i].tolist()
        if len(set(row)) < len(row):
            raise TaskError(
                f"Example {i} of task {tok.task.name!r} puts two roles on one token "
                f"({dict(zip(cols.labels, row, strict=True))}), so its edges at that token belong to neither alone. "
                "Give each role its own word."
            )
    covered = int(cols.index.shape[1] * len(tok))
    other = int(tok.lengths.sum()) > covered
    if OTHER in cols.labels:
        raise TaskError(f"A role may not be called {OTHER!r}: that column holds the tokens no role names.")
    return PositionSpec("roles", tuple(cols.labels) + ((OTHER,) if other else ()))


@dataclass(frozen=True, eq=False)
class PositionalEdgeScores(EdgeScores):
    """Edge scores with their split over positions: ``by_position[edge, column]``.

    ``scores`` (what every position-agnostic consumer reads) is ``by_position`` summed over the
    columns: the method's own position-agnostic score.
    """

    by_position: torch.Tensor = field(default_factory=lambda: torch.empty(0))
    positions: PositionSpec = PositionSpec("tokens", ())

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.by_position.shape != (self.graph.n_edges, len(self.positions.labels)):
            raise ValueError(f"by_position has shape {tuple(self.by_position.shape)}, expected "
                             f"({self.graph.n_edges}, {len(self.positions.labels)})")

    def ranking_pairs(self) -> torch.Tensor:
        """Flat ``edge * C + column`` indices of the (edge, position) pairs, strongest first."""
        key = torch.nan_to_num(self.by_position.abs().flatten(), nan=-float("inf"))
        return torch.argsort(key, descending=True, stable=True)

    def top_pairs(self, k: int) -> list[tuple[str, str, float]]:
        C = len(self.positions.labels)
        out = []
        for i in self.ranking_pairs()[:k].tolist():
            e, c = divmod(i, C)
            out.append((self.graph.edge_names[e], self.positions.labels[c], float(self.by_position[e, c])))
        return out

    def to_json(self, *, all_edges: bool = True) -> dict[str, Any]:
        out = super().to_json(all_edges=all_edges)
        out["positions"] = {"mode": self.positions.mode, "labels": list(self.positions.labels)}
        out["top_positional"] = [{"edge": e, "position": p, "score": s} for e, p, s in self.top_pairs(20)]
        if all_edges:
            out["by_position"] = self.by_position.tolist()
        return out


def positional_gradient_scores(prep: Prepared, alphas: Sequence[float], weights: Sequence[float], mode: str, *,
                               method: str, config: dict, progress: Progress = no_progress) -> PositionalEdgeScores:
    """EAP / EAP-IG scores per (edge, position column) (module docstring); ``alphas``/``weights`` as
    :func:`~circuitwise.circuits.gradients.gradient_edge_scores` takes them."""
    t0 = time.perf_counter()
    spec = position_spec(prep.tok, mode)
    sums = gradient_sums(prep, alphas, weights, batch_size=prep.batch_size, method=method, progress=progress,
                         columns=spec.index, n_columns=len(spec.labels))
    g, n = prep.gm.graph, len(prep.tok)
    s, r = g.edge_index
    dev = sums.scores.device
    by_pos = sums.scores[s.to(dev), r.to(dev)]  # [edge, column]
    return PositionalEdgeScores(
        graph=g, scores=by_pos.sum(-1).float().cpu(), method=method, metric=prep.metric_name,
        config={**config, "positions": spec.mode}, clean_metric=sums.clean_sum / n,
        corrupted_metric=sums.corrupted_sum / n, n_examples=n, seconds=time.perf_counter() - t0,
        by_position=by_pos.float().cpu(), positions=spec,
    )


# -- circuits of (edge, position) pairs (a Circuit with ``position_keep``; circuits.select) ----------


def all_positions(circuit_edges: torch.Tensor, spec: PositionSpec) -> torch.Tensor:
    """A position-agnostic edge set ``[edge]`` as (edge, position) pairs ``[edge, column]``."""
    return circuit_edges.bool()[:, None].expand(-1, len(spec.labels)).clone()


# Elements of one stacked [K, sender, receiver, N, pos] keep mask (float): bounds K per forward.
KEEP_ELEMENTS = 2**24


@torch.no_grad()
def positional_patched_metrics(prep: Prepared, keep: torch.Tensor, spec: PositionSpec, *,
                               progress: Progress = no_progress, what: str = "faithfulness",
                               flows: torch.Tensor | None = None) -> PatchedMetrics:
    """Metrics of the clean prompts with, for each ``keep[k]`` ``[edge, column]``, every other
    (edge, position) read from the corrupted run: the edge kept at an example's position carries
    that position's live (clean-run) value, else the corrupted run's. ``flows``
    ``[K, sender, layer, 2·heads, C, C]``: key/value edges kept per (key column, query column)
    (:class:`~circuitwise.circuits.forward.KQPatch`; circuits.positional_kq)."""
    gm, tok, metric = prep.gm, prep.tok, prep.metric
    g = gm.graph
    if keep.dim() == 2:
        keep = keep[None]
    if keep.shape[1:] != (g.n_edges, len(spec.labels)):
        raise ConfigError(f"An (edge, position) set has shape {tuple(keep.shape[1:])}, but the graph has "
                          f"{g.n_edges} edges and the task {len(spec.labels)} position columns.")
    K = keep.shape[0]
    s_idx, r_idx = g.edge_index
    # [K, S, R, C] with non-edges kept (run_graph ignores them).
    dense = torch.ones(K, len(g.senders), len(g.receivers), len(spec.labels), dtype=gm.dtype)
    dense[:, s_idx, r_idx] = keep.to(gm.dtype)
    patched = torch.empty(K, len(tok))
    clean = torch.empty(len(tok))
    corr = torch.empty(len(tok))
    n_batches = -(-len(tok) // prep.batch_size)
    done = 0
    row0 = 0
    for b in tok.batches(prep.batch_size):
        assert b.corrupted is not None
        Nb, P = b.clean.shape
        rows = slice(row0, row0 + Nb)
        row0 += Nb
        targets = targets_of(b)
        out_k, m_k = sender_outputs(gm, b.corrupted, b.last, targets)
        x_c = gm.embed(b.clean)
        m_c = run_graph(gm, x_c, b.last, targets).answer_logits[0]
        clean[rows], corr[rows] = metric(m_c).float().cpu(), metric(m_k).float().cpu()
        # Padding (−1) reads the live value: nothing after an example's last token reaches its answer.
        cols = spec.index(b)
        onehot = torch.zeros(Nb, P, len(spec.labels) + 1, dtype=gm.dtype)
        onehot.scatter_(-1, torch.where(cols < 0, len(spec.labels), cols)[..., None], 1.0)
        per = len(g.senders) * len(g.receivers) * Nb * P
        most = max(1, min(KEEP_ELEMENTS // per, stack_budget(gm, Nb, P)))
        for k0 in range(0, K, most):
            d = torch.cat([dense[k0:k0 + most], torch.ones(*dense[k0:k0 + most].shape[:3], 1, dtype=gm.dtype)], -1)
            keep5 = torch.einsum("ksrc,npc->ksrnp", d, onehot).to(gm.device)
            kq = None if flows is None else KQPatch(flows[k0:k0 + most].to(gm.device), cols)
            run = run_graph(gm, x_c, b.last, targets, keep=keep5, replacement=out_k, kq=kq)
            patched[k0:k0 + most, rows] = metric(run.answer_logits).float().cpu()
            done += 1
            progress(done, n_batches * -(-K // most), what)
    return PatchedMetrics(patched, clean, corr)


__all__ = ["KEEP_ELEMENTS", "OTHER", "PositionMode", "PositionOption", "PositionSpec", "PositionalEdgeScores",
           "all_positions", "check_column_memory", "check_positions", "position_spec", "positional_gradient_scores",
           "positional_patched_metrics"]
