"""Edge scores: the labelled result every discovery method returns, and shared plumbing.

Signs. Every circuitwise score is signed so that **positive means the edge (or node) carrying its
clean value helps the metric** (logit difference, correct − incorrect), under every convention:

- EAP at the clean run (``gradient="clean"``, noising): ``(clean_s − corr_s) · ∂m/∂in_r |clean``
  ≈ m(clean) − m(clean with the edge corrupted): positive = corrupting the edge hurts.
- EAP at the corrupted run (``gradient="corrupted"``, denoising): ``(clean_s − corr_s) · ∂m/∂in_r
  |corrupted`` ≈ m(corrupted with the edge restored) − m(corrupted): positive = restoring it helps.
- EAP-IG (either interpolation): ``(clean_s − corr_s) · Σ_k w_k ∂m/∂in_r |α_k``, a path integral
  between those two; exact ``noise`` / ``denoise`` are the finite differences above.

hannamw/EAP-IG (and MIB, which runs it) multiplies the *other* difference, ``corrupted − clean``,
and is run with MIB's loss metric, ``−(logit difference)`` (``logit_diff(..., loss=True)``): the two
sign flips cancel, so an EAP-IG / MIB graph's score has the same sign and meaning as ours (an
edge's EAP-IG ``exact`` score, ``loss(edge corrupted) − loss(clean)``, is our ``noise`` score). Only
a run of EAP-IG with the raw metric (``loss=False``) has the opposite sign. Export and import go
through :func:`eap_ig_sign`, the one place this is decided.

Scale: EAP-IG divides its summed scores by the number of examples, and MIB's metric is already a
batch mean (``mean=True``), so MIB's files hold our scores divided by the batch size (rankings,
signs and thresholds by rank unaffected). ``bench/crosscheck.py`` measures the match with a summed
metric: equal to about 1e-7.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Literal, Mapping

import torch

from circuitwise.circuits.forward import GraphModel, check_against_bridge, graph_model, run_graph
from circuitwise.circuits.graph import Graph
from circuitwise.models.memory import batch_for
from circuitwise.errors import ConfigError, TaskError
from circuitwise.metrics import Targets, get_metric, prepared_for
from circuitwise.tasks.tokenize import TokenizedTask
from circuitwise.types import Labelled, nan_to_none

# progress(done, total, what): library code never prints; the CLI draws a bar from this.
Progress = Callable[[int, int, str], None]


def no_progress(done: int, total: int, what: str) -> None:
    return None


def strongest_first(values: torch.Tensor, by: str = "abs") -> torch.Tensor:
    """Indices strongest first (NaN last); equal scores keep their order (EAP-IG leaves ties to argsort)."""
    key = torch.nan_to_num(values.abs() if by == "abs" else values, nan=-float("inf"))
    return torch.argsort(key, descending=True, stable=True)


@dataclass(frozen=True, eq=False)
class ScoredGraph:
    """What edge, node and neuron scores share: the graph, the scores (float32, on the CPU; their
    shape is the subclass's), and the run that made them."""

    graph: Graph
    scores: torch.Tensor
    method: str
    metric: str = "logit_diff"
    config: dict[str, Any] = field(default_factory=dict)
    clean_metric: float = float("nan")
    corrupted_metric: float = float("nan")
    n_examples: int = 0
    seconds: float = float("nan")

    def _run_json(self) -> dict[str, Any]:
        """The run's part of ``to_json`` (every key but the scores themselves)."""
        return {"method": self.method, "metric": self.metric, "config": self.config,
                "clean_metric": self.clean_metric, "corrupted_metric": self.corrupted_metric,
                "n_examples": self.n_examples, "seconds": self.seconds, "graph": self.graph.describe()}

    def _as_nodes(self, scores: torch.Tensor) -> "NodeScores":
        """``scores`` (one per sender) as node scores of this run."""
        return NodeScores(graph=self.graph, scores=scores, method=self.method, metric=self.metric,
                          config={**self.config, "granularity": "node"}, clean_metric=self.clean_metric,
                          corrupted_metric=self.corrupted_metric, n_examples=self.n_examples,
                          seconds=self.seconds)


@dataclass(frozen=True, eq=False)
class EdgeScores(ScoredGraph):
    """One score per edge of ``graph`` (``scores``: ``[edge]``; NaN where a method did not score an edge).

    Sign (module docstring): positive means the edge's clean value helps the metric, whatever the
    method's convention (``config`` records which one: ``gradient``, ``quadrature``, ``steps``, …).
    """

    def __post_init__(self) -> None:
        if self.scores.shape != (self.graph.n_edges,):
            raise ValueError(f"scores has shape {tuple(self.scores.shape)}, the graph {self.graph.n_edges} edges")

    def labelled(self) -> Labelled:
        return Labelled(self.scores, ("edge",), {"edge": self.graph.edge_names}, self.metric,
                        {"method": self.method, **self.config})

    def dense(self) -> torch.Tensor:
        """``[sender, receiver]`` scores, NaN off the graph's edges."""
        return self.graph.to_dense(self.scores, fill=float("nan"))

    def ranking(self, by: str = "abs") -> torch.Tensor:
        """Edge indices, strongest first (NaN scores last)."""
        return strongest_first(self.scores, by)

    def top(self, k: int, by: str = "abs") -> list[tuple[str, float]]:
        idx = self.ranking(by)[:k]
        return [(self.graph.edge_names[i], float(self.scores[i])) for i in idx.tolist()]

    def to_json(self, *, all_edges: bool = True) -> dict[str, Any]:
        out = {**self._run_json(), "top": [{"edge": e, "score": s} for e, s in self.top(20)]}
        if all_edges:
            out["edges"] = self.graph.edge_names
            out["scores"] = nan_to_none(self.scores.tolist())
        return out

    def node_scores(self) -> "NodeScores":
        """One score per sender: the sum of its outgoing edges' scores.

        For gradient methods this is exactly the node's own attribution,
        ``(clean_s − corr_s) · ∂m/∂out_s``, since a sender's output enters every later receiver's
        input additively (``∂m/∂out_s = Σ_r ∂m/∂in_r``).
        """
        return self._as_nodes(self.graph.to_dense(self.scores, fill=0.0).sum(-1))


@dataclass(frozen=True, eq=False)
class NodeScores(ScoredGraph):
    """One score per sender (``input``, each head ``L{l}H{h}``, each ``MLP{l}``; ``scores``: ``[sender]``),
    signed like edges."""

    def __post_init__(self) -> None:
        if self.scores.shape != (len(self.graph.senders),):
            raise ValueError(f"scores has shape {tuple(self.scores.shape)}, the graph {len(self.graph.senders)} senders")

    @property
    def names(self) -> list[str]:
        return [s.name for s in self.graph.senders]

    def labelled(self) -> Labelled:
        return Labelled(self.scores, ("node",), {"node": self.names}, self.metric,
                        {"method": self.method, **self.config})

    def top(self, k: int, by: str = "abs") -> list[tuple[str, float]]:
        idx = strongest_first(self.scores, by)[:k]
        return [(self.names[i], float(self.scores[i])) for i in idx.tolist()]

    def to_json(self) -> dict[str, Any]:
        return {**self._run_json(), "nodes": self.names, "scores": nan_to_none(self.scores.tolist())}


#: The sign of an EAP-IG / MIB graph file's score relative to ours, when EAP-IG ran with MIB's loss
#: metric (``−logit difference``): its ``(corrupted − clean)`` difference and the loss's minus cancel.
EAP_IG_SIGN: Literal[1] = 1


def eap_ig_sign(config: Mapping[str, Any] | None = None, *, loss_metric: bool = True) -> Literal[1, -1]:
    """Multiply our scores by this to get hannamw/EAP-IG's (and back: it is its own inverse).

    The sign does not depend on our convention (``config``: gradient point, quadrature, method —
    accepted so callers pass what they have); only on EAP-IG's metric: ``loss_metric=True`` is MIB's
    ``logit_diff(..., loss=True)``, +1; an EAP-IG run with the raw metric (``loss=False``) is −1.
    """
    return EAP_IG_SIGN if loss_metric else -1


@dataclass(frozen=True)
class Prepared:
    """A task checked for edge work: the graph model and the task on the model's device."""

    gm: GraphModel
    tok: TokenizedTask
    metric: Callable[[torch.Tensor], torch.Tensor]
    metric_name: str
    batch_size: int


def prepare(model: Any, tok: TokenizedTask, metric: str = "logit_diff", *, check: bool = True,
            batch_size: int | None = None) -> Prepared:
    """Validate inputs, read the model's weights, and check our forward against the bridge.

    ``batch_size`` (examples per forward) defaults to what keeps one batch's per-sender
    activations near 100 MB.
    """
    bs = check_batch_size(batch_size)
    if tok.corrupted is None:
        raise TaskError(
            "Circuit discovery and faithfulness need a corrupted prompt for every example. "
            "Tokenize with need_corrupted=True, add 'corrupted' fields to the task file, or "
            "build the task with a corruption (e.g. --corruption flip)."
        )
    if tok.clean.shape != tok.corrupted.shape:
        raise TaskError("Clean and corrupted prompts must have the same token shape for edge patching.")
    metric_obj = get_metric(metric)
    gm = graph_model(model)
    # Vocabulary metrics read every logit; kl also the clean run's distribution, computed once here.
    tok = prepared_for(model, tok.to(gm.device), metric_obj)
    if check:
        first = tok.slice(0, min(len(tok), 8))
        check_against_bridge(model, gm, first.clean, first.last, first.answers)
    if bs is None:
        per_example = tok.clean.shape[1] * len(gm.graph.senders) * gm.d_model * 4
        bs = batch_for("edges", model, int(tok.clean.shape[1]), max(1, min(64, int(100e6 // per_example))))
    return Prepared(gm, tok, metric_obj.fn, metric, bs)


def check_batch_size(batch_size: int | None) -> int | None:
    if batch_size is None:
        return None
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"batch_size must be a positive integer, got {batch_size!r}.")
    return batch_size


def stack_budget(gm: GraphModel, rows: int, pos: int, budget_bytes: float = 384e6) -> int:
    """How many patched variants of a ``rows × pos`` batch fit in one stacked forward."""
    per = rows * pos * len(gm.graph.senders) * gm.d_model * torch.finfo(gm.dtype).bits / 8
    return max(1, int(budget_bytes // max(per, 1.0)))


def batches(tok: TokenizedTask, batch_size: int) -> Iterator[TokenizedTask]:
    yield from tok.batches(batch_size)


@torch.no_grad()
def sender_outputs(gm: GraphModel, tokens: torch.Tensor, last: torch.Tensor, answers: torch.Tensor | Targets
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """Every sender's output ``[sender, N, pos, d]`` and the answer logits ``[N, 2]``."""
    run = run_graph(gm, gm.embed(tokens), last, answers, record=True)
    assert run.outputs is not None
    return run.outputs, run.answer_logits[0]


__all__ = ["EAP_IG_SIGN", "EdgeScores", "NodeScores", "Prepared", "eap_ig_sign", "Progress", "batches", "check_batch_size", "no_progress", "prepare",
           "sender_outputs", "stack_budget"]
