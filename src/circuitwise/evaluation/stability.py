"""Edge stability: how often each circuit edge is chosen again when the prompts are resampled.

The scoring engines stream sums over prompts and return the mean score only (the design's memory
rule: never a score per prompt per edge), and adding a per-prompt output to them is not this
module's to do. The gradient methods' score is a mean of per-prompt terms, though, so the mean over
any group of prompts is the same method run on that group, and the full score is the size-weighted
mean of the groups' scores (tested). So the prompts are split into ``groups`` contiguous blocks,
each scored on its own (the same FLOPs as one scoring pass, in smaller batches), and a resample
draws ``groups`` blocks with replacement: a block bootstrap over prompts, the per-prompt bootstrap
exactly when ``groups`` equals the number of prompts. Contiguous blocks of a task sorted by template
vary more than random ones would, which widens the spread: the frequencies err towards unstable.

Each resample re-selects the circuit from its resampled scores by the rule that chose it, at the
circuit's own size: the same number of top edges (by ``|score|`` or signed, as chosen) before
pruning, or the same score threshold, then the same pruning. A target-faithfulness circuit is not
grown again per resample (each growth measures faithfulness with patched forwards); its size is
held, which is said in the output.

The same pass also keeps each circuit edge's score on every prompt on its own
(:func:`circuitwise.circuits.gradients.per_prompt_scores`: the gradient engine's terms per example
for those few edges), for the explorer's edge panel; the other edges stay per block.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch

from circuitwise.circuits.bootstrap import ADDITIVE_METHODS, group_bounds, group_scores
from circuitwise.circuits.circuit import Circuit
from circuitwise.circuits.gradients import PerPrompt, every_edge_scores, per_prompt_scores
from circuitwise.circuits.graph import graph_of
from circuitwise.circuits.node_select import reselect_nodes
from circuitwise.circuits.prune import prune_rows
from circuitwise.circuits.scores import Progress, no_progress
from circuitwise.errors import ConfigError
from circuitwise.evaluation.bootstrap import Resampling, resample_counts
from circuitwise.models.memory import EVERY_EDGE_BYTES, budget_of
from circuitwise.tasks.tokenize import TokenizedTask

# Edges outside the circuit that some resample chooses: the most frequent this many are listed.
CONTENDERS = 10
# Circuit edges whose score on each prompt is kept (the strongest by |score|): a few numbers per
# prompt, so that results.json and the report stay small on large circuits and many prompts.
PROMPT_SCORE_EDGES = 100


@dataclass(frozen=True)
class EdgeStability:
    """Selection frequency of every edge over the resamples (``[edge]``, 0..1) and how it was drawn."""

    frequency: torch.Tensor
    circuit: torch.Tensor  # [edge] bool: the circuit's own edges
    edge_names: list[str]
    resamples: int
    groups: int
    n_examples: int
    seed: int
    rule: str
    seconds: float
    # [group, edge] mean scores of the blocks of prompts, and [group] their sizes: the explorer's
    # per-prompt view of an edge (each block one prompt when groups == n_examples).
    group_scores: torch.Tensor | None = None
    group_sizes: torch.Tensor | None = None
    # [edge of prompt_edges, prompt]: those circuit edges' scores on each prompt alone; None where the
    # method does not score through the gradient engine (eap-ig-activations).
    prompt_scores: torch.Tensor | None = None
    prompt_edges: list[int] | None = None  # edge ids: the strongest PROMPT_SCORE_EDGES circuit edges

    def circuit_edges(self) -> list[tuple[str, float]]:
        """The circuit's edges with their frequencies, least stable first."""
        idx = self.circuit.nonzero().flatten().tolist()
        return sorted(((self.edge_names[i], float(self.frequency[i])) for i in idx), key=lambda t: t[1])

    def contenders(self, k: int = CONTENDERS) -> list[tuple[str, float]]:
        """Edges outside the circuit that resamples choose most often (frequency > 0)."""
        f = torch.where(self.circuit, torch.zeros_like(self.frequency), self.frequency)
        top = f.topk(min(k, f.numel()))
        return [(self.edge_names[i], float(v)) for v, i in zip(top.values.tolist(), top.indices.tolist(), strict=True)
                if v > 0]

    def summary(self) -> str:
        edges = self.circuit_edges()
        if not edges:
            return "edge stability: the circuit has no edges"
        solid = sum(f >= 0.95 for _, f in edges)
        name, low = edges[0]
        how = "prompts" if self.groups == self.n_examples else f"{self.groups} blocks of the {self.n_examples} prompts"
        return (f"edge stability over {self.resamples} bootstrap resamples of the {how}: {solid} of {len(edges)} "
                f"circuit edges re-selected in at least 95% of them; least stable {name} ({low:.0%}); "
                f"re-selected as {self.rule}")

    def to_json(self) -> dict[str, Any]:
        def split(name: str) -> dict[str, str]:
            sender, receiver = name.split("->")
            return {"sender": sender, "receiver": receiver}

        index = {n: i for i, n in enumerate(self.edge_names)}
        S, P = self.group_scores, self.prompt_scores
        row = {e: j for j, e in enumerate(self.prompt_edges or [])}

        def scores(name: str) -> dict[str, Any]:
            out: dict[str, Any] = {}
            if S is not None:
                out["scores"] = [v if v == v else None for v in S[:, index[name]].tolist()]
            if P is not None and index[name] in row:
                out["prompt_scores"] = [v if v == v else None for v in P[row[index[name]]].tolist()]
            return out

        sizes = {"group_sizes": [int(n) for n in self.group_sizes.tolist()]} if self.group_sizes is not None else {}
        return {
            "resamples": self.resamples, "groups": self.groups, "n_examples": self.n_examples, "seed": self.seed,
            "rule": self.rule, "seconds": self.seconds,
            "edges": [{**split(n), "frequency": f, **scores(n)} for n, f in self.circuit_edges()],
            "contenders": [{**split(n), "frequency": f} for n, f in self.contenders()],
            **sizes,
        }


def reselect(circuit: Circuit, scores: torch.Tensor) -> tuple[torch.Tensor, str]:
    """``[R, edge]`` bool: the circuit's selection rule applied to each row of ``scores`` ``[R, edge]``."""
    sel = circuit.selection
    if sel.get("level") == "node":  # heads and MLPs chosen by node score (circuits.node_select)
        return reselect_nodes(circuit, scores)
    by = sel.get("by") or "abs"
    key = scores.abs() if by == "abs" else scores
    key = torch.nan_to_num(key, nan=-float("inf"))
    if sel.get("kind") == "threshold" and sel.get("threshold") is not None:
        keep = key >= float(sel["threshold"])
        rule = f"the edges with {'|score|' if by == 'abs' else 'score'} ≥ {sel['threshold']:g}"
    else:
        top = int(sel.get("edges_before_pruning") or circuit.n_edges)
        keep = torch.zeros_like(key, dtype=torch.bool)
        keep.scatter_(1, key.topk(min(top, key.shape[1]), dim=1).indices, True)
        rule = f"the top {top} edges by {'|score|' if by == 'abs' else 'signed score'}"
        if sel.get("kind") == "target":
            # Its size before pruning, which is what the target chose (the circuit's own count is after it).
            before = " before pruning" if top != circuit.n_edges else ""
            rule += f" (the target circuit's size{before}, held)"
    if sel.get("pruned", True):
        keep = prune_rows(circuit.graph, keep)
        rule += ", pruned"
    return keep, rule


@contextmanager
def recording(model: Any, tok: TokenizedTask, method: str, options: Any) -> Iterator[PerPrompt | None]:
    """Around the discovery pass: every edge's per-prompt terms, where the method's scoring pass gives
    them (the gradient methods, position-agnostic) and they fit ``EVERY_EDGE_BYTES`` and a tenth of the
    memory budget; edge stability then reads its blocks of prompts from them instead of scoring them
    again. None otherwise."""
    g = graph_of(model)
    # Held beside the plan's stages, so within a tenth of the budget too (the estimates' own slack):
    # the kept float32 terms, and at most as many again in the batches' buffers in flight.
    room = min(EVERY_EDGE_BYTES, 0.1 * budget_of(model))
    if (method not in ADDITIVE_METHODS or getattr(options, "positions", "none") != "none"
            or 2 * 4 * g.n_edges * len(tok) > room):
        yield None
        return
    with every_edge_scores(g) as track:
        yield track


def with_stability(ev: Any, model: Any, tok: TokenizedTask, circuit: Circuit, *, method: str, options: Any,
                   rs: Resampling, groups: int, batch_size: int | None = None,
                   progress: Progress = no_progress, recorded: PerPrompt | None = None) -> tuple[Any, str | None]:
    """``ev`` (a CircuitEvaluation) with its circuit's edge stability, or unchanged and the reason
    when the method gives no per-prompt scores (the front-ends show it as a note)."""
    from dataclasses import replace

    if method not in ADDITIVE_METHODS:
        return ev, (f"edge stability is not measured for {method}: it rescores blocks of prompts, which gives "
                    f"the task's score only for {', '.join(ADDITIVE_METHODS)}")
    st = edge_stability(model, tok, circuit, method=method, options=options, rs=rs, groups=groups,
                        batch_size=batch_size, progress=progress,
                        every=None if recorded is None else recorded.values(len(tok)))
    return replace(ev, stability=st), None


def edge_stability(model: Any, tok: TokenizedTask, circuit: Circuit, *, method: str, options: Any,
                   rs: Resampling, groups: int, batch_size: int | None = None,
                   progress: Progress = no_progress, every: torch.Tensor | None = None) -> EdgeStability:
    """Selection frequency of each edge across ``rs.resamples`` block-bootstrap resamples (module docstring).

    ``every``: the discovery pass's ``[edge, prompt]`` terms (:func:`recording`); its blocks' means are
    the blocks' scores, so nothing is scored again."""
    if method not in ADDITIVE_METHODS:
        raise ConfigError(f"Edge stability rescores groups of prompts, which gives the task's score only for "
                          f"methods that average per-prompt scores ({', '.join(ADDITIVE_METHODS)}), not {method}.")
    start = time.perf_counter()
    kept = circuit.edges.nonzero().flatten()
    if circuit.scores is not None:
        kept = kept[circuit.scores[kept].abs().argsort(descending=True, stable=True)]
    ids: list[int] = kept[:PROMPT_SCORE_EDGES].tolist()
    if every is not None and every.shape == (circuit.graph.n_edges, len(tok)):
        bounds = group_bounds(len(tok), groups)
        blocks = list(zip(bounds[:-1], bounds[1:], strict=True))
        per_prompt: torch.Tensor | None
        S = torch.stack([every[:, lo:hi].double().mean(1) for lo, hi in blocks]).float()
        sizes = torch.tensor([hi - lo for lo, hi in blocks], dtype=torch.float64)
        per_prompt = every[ids].double()
        progress(1, 1, "edge stability")
    else:
        with per_prompt_scores(circuit.graph, ids) as each:
            S, sizes = group_scores(model, tok, method, options, groups, metric=circuit.metric,
                                    batch_size=batch_size, progress=progress)
        per_prompt = each.values(len(tok))
    G = S.shape[0]
    # Groups drawn with replacement, each weighted by its prompts: the resample's mean score per edge.
    w = resample_counts(G, rs) * sizes[None]
    resampled = (w @ torch.nan_to_num(S.double())) / w.sum(1, keepdim=True)
    resampled = torch.where(S.isnan().any(0)[None], torch.nan, resampled)
    keep, rule = reselect(circuit, resampled)
    return EdgeStability(keep.double().mean(0), circuit.edges.clone(), circuit.graph.edge_names, rs.resamples, G,
                         len(tok), rs.seed, rule, time.perf_counter() - start, S, sizes, per_prompt, ids)


__all__ = ["ADDITIVE_METHODS", "PROMPT_SCORE_EDGES", "EdgeStability", "edge_stability", "group_scores", "recording",
           "reselect", "with_stability"]
