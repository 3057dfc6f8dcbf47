"""Faithfulness of circuits of units: (edge, position) pairs and (key/value edge, key position, query
position) triples (:mod:`circuitwise.circuits.positional_kq`).

Only the kept units carry the clean run; every other one reads the corrupted run: an edge into a
query, MLP or the logits at a position, or a key/value edge's flow from one key column to one query
column (the queries of that column see the corrupted sender at those keys, the other queries
whatever their own units say). Normalised as every circuit is (0 = corrupted, 1 = clean), counts
are of units.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from circuitwise.circuits.positional import PositionSpec
from circuitwise.circuits.positional_kq import KQKeep, kq_patched_metrics, kv_edges
from circuitwise.circuits.scores import Progress, no_progress, prepare
from circuitwise.evaluation.faithfulness import Faithfulness, faithfulness_rows
from circuitwise.tasks.tokenize import TokenizedTask


def unit_flat(keep: KQKeep, graph: Any) -> torch.Tensor:
    """A unit set as one flat bool vector: the other edges' pairs, then the key/value triples."""
    other = torch.ones(graph.n_edges, dtype=torch.bool)
    other[kv_edges(graph)] = False
    return torch.cat([keep.pairs.bool()[other].flatten(), keep.triples.bool().flatten()])


def kq_faithfulness_of_masks(model: Any, tok: TokenizedTask, keeps: KQKeep | Sequence[KQKeep],
                             positions: PositionSpec, *, metric: str = "logit_diff", batch_size: int | None = None,
                             progress: Progress = no_progress, check: bool = True) -> list[Faithfulness]:
    """Faithfulness of each unit set (module docstring); ``n_edges`` / ``total_edges`` count units."""
    prep = prepare(model, tok, metric, check=check, batch_size=batch_size)
    keeps = [keeps] if isinstance(keeps, KQKeep) else list(keeps)
    pm = kq_patched_metrics(prep, keeps, positions, progress=progress)
    return faithfulness_rows(pm, torch.stack([unit_flat(k, prep.gm.graph) for k in keeps]), "corrupted")


__all__ = ["kq_faithfulness_of_masks", "unit_flat"]
