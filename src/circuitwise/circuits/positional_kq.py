"""Key × query split of position-aware attention edges: how much of an edge into a head's key or
value at key position k flows to each query position q (issue 24).

Position-aware edges (:mod:`circuitwise.circuits.positional`) score an edge into a head's key or
value input at the key/value position k where the head reads it; from there it reaches every later
query through the head's attention. PEAP (Haklay et al., 2025, "Position-aware Automatic Circuit
Discovery") scores those attention-mediated ("crossing") flows separately: its code
(technion-cs-nlp/PEAP, ``pos_aware_edge_attribution_patching.py``) adds, per head, edges from the
head's key or value at one span to the head's output at a later span (or the same one), scored as
``∂m/∂result_h[q] · (result_h[q] with k_h or v_h at the key span corrupted − result_h[q])`` — the
softmax recomputed for a corrupted key — beside the within-position edges into k/v inputs. Here the
split is applied to our edges themselves, one triple per (sender, key/value input, key, query) and
first order throughout (EAP's own approximation, no recomputed softmax), so one number says how much
the sender's write at k matters *through the attention from q*:

    score(s → r, k, q) = (clean_s − corr_s)[k] · g_r^(q)[k],
    g_r^(q)[k] = (∂z_h[q] / ∂in_r[k])ᵀ · ∂m/∂z_h[q],

for ``r`` the key or value input of head ``h`` and ``z_h[q]`` the head's mixed value at query ``q``
(before ``W_O``). A key or value at k reaches the metric only through the rows ``z_h[q]``, q ≥ k (the
attention row of q is the only place where ``k_h[k]`` and ``v_h[k]`` meet query q), so
``Σ_q g_r^(q)[k] = ∂m/∂in_r[k]`` and the triples sum over query positions to the per-key-position
score, and over both to EAP's. EAP-IG integrates the gradient along the input path as usual
(``g^(q)`` at each integration point, weighted). It is the first-order effect of giving in_r[k] its
corrupted value for query q's attention only (the key/value at k seen from the other queries kept):
the quantity ``tests/unit/circuits/test_positional_kq.py`` checks against TransformerLens hooks.

Columns are those of :class:`~circuitwise.circuits.positional.PositionSpec` on both axes (tokens or
roles), ``by_pair[kv edge, key column, query column]``. Edges into queries, MLPs and the logits keep
their one position (``by_position``): their receiver reads at the position where it computes.

Computation (the design's memory rule): during the gradient pass each layer's ``z`` gradient is
taken as it arrives, and for each query column the layer's attention is re-run from its detached
keys and values and pulled back from that column's rows only, then through the projection and the
norm (:func:`circuitwise.circuits.forward._on_kq_grad`), giving the key/value input gradients of
that column ``[2H, batch, pos, d]``; they are contracted with the sender differences and summed
into key columns at once. Held: one layer's gradients of one column and their contraction
(``[sender, 2H, batch, pos]``, smaller than the sender differences the gradient pass holds anyway),
and the sums ``[sender, layer, 2H, C, C]``; nothing per prompt × edge × position beyond one layer
and column at a time.

Circuits of such units (:func:`select_kq`, :func:`kq_patched_metrics`): an (edge, key column, query
column) triple kept means the queries of that column see the edge's live value at the keys of that
column; every other flow of the edge reads the corrupted run.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch

from circuitwise.circuits.gradients import combine_points, gradient_sums, score_dtype
from circuitwise.circuits.patch import PatchedMetrics
from circuitwise.circuits.positional import (
    PositionalEdgeScores,
    PositionSpec,
    position_spec,
    positional_patched_metrics,
)
from circuitwise.circuits.scores import Prepared, Progress, no_progress
from circuitwise.errors import ConfigError
from circuitwise.tasks.tokenize import TokenizedTask

#: The ``kv_positions`` option of EAP and EAP-IG (with ``positions`` tokens or roles): ``key`` scores
#: an edge into a head's key or value at its key position; ``key-query`` also splits that score over
#: the query positions it reaches through the head's attention.
KVPositions = Literal["key", "key-query"]


#: The most key x query scores ``to_json`` writes (``by_pair``; about 20 MB of JSON): GPT-2 small with
#: 14 token columns has 4.1 million.
MAX_JSON_PAIRS = 1_000_000


def kv_edges(graph: Any) -> torch.Tensor:
    """Ids of the edges whose receiver is a head's key or value input, in edge order."""
    _, r = graph.edge_index
    kinds = torch.tensor([rec.kind in ("k", "v") for rec in graph.receivers])
    return kinds[r].nonzero().flatten()


def _kv_slot(graph: Any, r: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(layer, index among the layer's key then value receivers) of receivers ``r``."""
    per, H = graph.per_layer_receivers, graph.n_heads
    return r // per, r % per - H


@dataclass(frozen=True, eq=False)
class KQEdgeScores(PositionalEdgeScores):
    """Position-aware scores with each key/value edge split by query column:
    ``by_pair[i, key column, query column]`` for edge ``kv_edges[i]``; summed over the query columns
    it is ``by_position[kv_edges[i]]``."""

    kv_edges: torch.Tensor = field(default_factory=lambda: torch.empty(0, dtype=torch.long))
    by_pair: torch.Tensor = field(default_factory=lambda: torch.empty(0))

    def __post_init__(self) -> None:
        super().__post_init__()
        C = len(self.positions.labels)
        if self.by_pair.shape != (len(self.kv_edges), C, C):
            raise ValueError(f"by_pair has shape {tuple(self.by_pair.shape)}, "
                             f"expected ({len(self.kv_edges)}, {C}, {C})")

    def unit_scores(self) -> torch.Tensor:
        """Every unit's score, flat: the (edge, column) pairs of the edges that are not key/value
        edges (in ``[edge, column]`` order, the key/value edges' entries NaN), then the key/value
        triples (``[kv edge, key column, query column]`` order)."""
        pairs = self.by_position.clone()
        pairs[self.kv_edges] = float("nan")
        return torch.cat([pairs.flatten(), self.by_pair.flatten()])

    def units(self, flat: torch.Tensor) -> list[tuple[str, str, str | None]]:
        """``(edge, position or key position, query position or None)`` of flat unit indices."""
        labels, C, E = self.positions.labels, len(self.positions.labels), self.graph.n_edges
        out: list[tuple[str, str, str | None]] = []
        for i in flat.tolist():
            if i < E * C:
                e, c = divmod(i, C)
                out.append((self.graph.edge_names[e], labels[c], None))
            else:
                j, rest = divmod(i - E * C, C * C)
                kc, qc = divmod(rest, C)
                out.append((self.graph.edge_names[int(self.kv_edges[j])], labels[kc], labels[qc]))
        return out

    def ranking_units(self) -> torch.Tensor:
        """Flat unit indices (:meth:`unit_scores`), strongest first."""
        key = torch.nan_to_num(self.unit_scores().abs(), nan=-float("inf"))
        return torch.argsort(key, descending=True, stable=True)

    def top_units(self, k: int) -> list[tuple[str, str, str | None, float]]:
        idx = self.ranking_units()[:k]
        vals = self.unit_scores()[idx].tolist()
        return [(*u, v) for u, v in zip(self.units(idx), vals, strict=True)]

    def to_json(self, *, all_edges: bool = True) -> dict[str, Any]:
        out = super().to_json(all_edges=all_edges)
        out["top_kq"] = [{"edge": e, "key_position": k, "query_position": q, "score": s}
                         for e, k, q, s in self.top_units(20) if q is not None]
        if all_edges and self.by_pair.numel() <= MAX_JSON_PAIRS:
            out["kv_edges"] = self.kv_edges.tolist()
            out["by_pair"] = self.by_pair.tolist()
        elif all_edges:
            out["by_pair_note"] = (f"{self.by_pair.numel():,} key x query scores are more than a JSON file should hold "
                                   f"({MAX_JSON_PAIRS:,}); top_kq lists the strongest, and select_kq_circuit's "
                                   "circuit.json every kept edge's flow_scores. Use positions=roles for fewer columns.")
        return out


def kq_gradient_scores(prep: Prepared, alphas: Sequence[float], weights: Sequence[float], mode: str, *,
                       method: str, config: dict, progress: Progress = no_progress) -> KQEdgeScores:
    """EAP / EAP-IG scores per (edge, position) with key/value edges per (key, query) column pair
    (module docstring); ``alphas``/``weights`` as :func:`~circuitwise.circuits.gradients.gradient_edge_scores`."""
    t0 = time.perf_counter()
    gm, tok = prep.gm, prep.tok
    g = gm.graph
    spec = position_spec(tok, mode)
    C, H = len(spec.labels), g.n_heads
    pair_sums = torch.zeros(len(g.senders), g.n_layers, 2 * H, C, C, dtype=score_dtype(gm), device=gm.device)
    lock = threading.Lock()

    def hooks(b: TokenizedTask, start: int, w: torch.Tensor, Nb: int, delta: Callable[[], torch.Tensor]):
        cols = spec.index(b).to(gm.device)[:, start:]  # [Nb, P] (the run's positions)
        uniform = bool((w == w[0]).all())
        present = [j for j in range(C) if bool((cols == j).any())]
        key_cols = torch.zeros(*cols.shape, C + 1, dtype=pair_sums.dtype, device=gm.device)
        key_cols.scatter_(-1, torch.where(cols < 0, C, cols)[..., None], 1.0)  # [Nb, P, C + 1]: −1 → the spare
        query_rows = {j: (cols == j).repeat(int(w.numel()), 1) for j in present}

        def kq_grad(l: int, split: Callable[[torch.Tensor], torch.Tensor]) -> None:
            n_send = g.senders_before_attn(l)
            d = delta()[:n_send]
            part = torch.zeros(n_send, 2 * H, C, C, dtype=pair_sums.dtype, device=gm.device)
            for qc in present:
                # On a model split over devices the layer's gradients come back to the scores' device.
                gsum = combine_points(split(query_rows[qc]).to(d.device), w, Nb, uniform)  # [2H, Nb, P, d]
                # Per (sender, receiver, example, position) for one layer and column: smaller than
                # delta itself (2H numbers for its d_model), and summed into key columns at once.
                per = torch.einsum("snpd,rnpd->srnp", d, gsum).to(part.dtype)
                part[:, :, :, qc] = torch.einsum("srnp,npc->src", per, key_cols)[..., :C]
            with lock:  # batches may run on several workers (models.parallel)
                pair_sums[:n_send, l] += part

        return kq_grad

    sums = gradient_sums(prep, alphas, weights, batch_size=prep.batch_size, method=method, progress=progress,
                         columns=spec.index, n_columns=C, kq=hooks)
    n = len(tok)
    s, r = g.edge_index
    dev = sums.scores.device
    by_pos = sums.scores[s.to(dev), r.to(dev)]
    kv = kv_edges(g)
    layer, slot = _kv_slot(g, r[kv])
    by_pair = (pair_sums / n)[s[kv].to(dev), layer.to(dev), slot.to(dev)]
    return KQEdgeScores(
        graph=g, scores=by_pos.sum(-1).float().cpu(), method=method, metric=prep.metric_name,
        config={**config, "positions": spec.mode, "kv_positions": "key-query"}, clean_metric=sums.clean_sum / n,
        corrupted_metric=sums.corrupted_sum / n, n_examples=n, seconds=time.perf_counter() - t0,
        by_position=by_pos.float().cpu(), positions=spec, kv_edges=kv, by_pair=by_pair.float().cpu(),
    )


def check_kv_positions(method: str, positions: str, kv_positions: str) -> None:
    """``key-query`` needs position columns (said before any work)."""
    if kv_positions == "key-query" and positions == "none":
        raise ConfigError(f"{method}: kv_positions=key-query splits position-aware scores by query position; "
                          "add positions=tokens or positions=roles.")


# -- circuits of (edge, position) pairs and (key/value edge, key column, query column) triples -------


@dataclass(frozen=True)
class KQKeep:
    """A set of units: ``pairs`` ``[edge, column]`` (the key/value edges' entries unused) and
    ``triples`` ``[kv edge, key column, query column]`` (bool)."""

    pairs: torch.Tensor
    triples: torch.Tensor


def kq_edges(graph: Any, keep: KQKeep) -> torch.Tensor:
    """``[edge]`` bool: the edges kept at some position (pair) or some flow (triple)."""
    kv = kv_edges(graph)
    pairs = keep.pairs.clone()
    pairs[kv] = False
    out = pairs.any(-1)
    out[kv] = keep.triples.flatten(1).any(-1)
    return out


def unit_mask(scores: KQEdgeScores, flat: torch.Tensor) -> KQKeep:
    """The units of flat indices ``flat`` (:meth:`KQEdgeScores.unit_scores`) as a :class:`KQKeep`."""
    E, C = scores.graph.n_edges, len(scores.positions.labels)
    m = torch.zeros(E * C + len(scores.kv_edges) * C * C, dtype=torch.bool)
    m[flat] = True
    return KQKeep(m[:E * C].view(E, C).clone(), m[E * C:].view(len(scores.kv_edges), C, C).clone())


def select_kq(scores: KQEdgeScores, n: int) -> KQKeep:
    """The ``n`` units of largest ``|score|`` (pairs of the other edges, triples of key/value edges)."""
    if not isinstance(scores, KQEdgeScores):
        raise ConfigError("Choosing (edge, key position, query position) triples needs scores with "
                          "kv_positions=key-query (and positions=tokens or roles).")
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ConfigError(f"A circuit of units needs a positive number of them n, got {n!r}.")
    scored = int((~scores.unit_scores().isnan()).sum())  # the key/value edges' pair slots are not units
    return unit_mask(scores, scores.ranking_units()[:min(n, scored)])


def all_flows(keep_pairs: torch.Tensor, graph: Any) -> KQKeep:
    """An (edge, position) set as units: each kept key/value (edge, key column) at every query column."""
    kv = kv_edges(graph)
    C = keep_pairs.shape[1]
    return KQKeep(keep_pairs.bool().clone(), keep_pairs.bool()[kv][:, :, None].expand(-1, C, C).clone())


@torch.no_grad()
def kq_patched_metrics(prep: Prepared, keeps: Sequence[KQKeep], spec: PositionSpec, *,
                       progress: Progress = no_progress, what: str = "faithfulness") -> PatchedMetrics:
    """Metrics of the clean prompts with, for each unit set, every unit not in it read from the
    corrupted run: a kept pair carries its position's live value; a kept triple (key/value edge,
    key column, query column) gives the queries of that column the edge's live value at the keys of
    that column (module docstring)."""
    gm = prep.gm
    g = gm.graph
    E, C, H = g.n_edges, len(spec.labels), g.n_heads
    kv = kv_edges(g)
    s_idx, r_idx = g.edge_index
    layer, slot = _kv_slot(g, r_idx[kv])
    for k in keeps:
        if k.pairs.shape != (E, C) or k.triples.shape != (len(kv), C, C):
            raise ConfigError(f"A unit set has pairs {tuple(k.pairs.shape)} and triples {tuple(k.triples.shape)}, "
                              f"but the graph has {E} edges ({len(kv)} into keys/values) and the task {C} columns.")
    flows = torch.ones(len(keeps), len(g.senders), g.n_layers, 2 * H, C, C, dtype=gm.dtype)
    for i, k in enumerate(keeps):
        flows[i, s_idx[kv], layer, slot] = k.triples.to(gm.dtype)
    pairs = torch.stack([k.pairs for k in keeps]) if keeps else torch.zeros(0, E, C, dtype=torch.bool)
    return positional_patched_metrics(prep, pairs, spec, progress=progress, what=what, flows=flows)


__all__ = ["MAX_JSON_PAIRS", "KQEdgeScores", "KQKeep", "KVPositions", "all_flows", "check_kv_positions", "kq_edges",
           "kq_gradient_scores", "kq_patched_metrics", "kv_edges", "select_kq", "unit_mask"]
