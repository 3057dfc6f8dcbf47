"""find_circuit(): score every edge with a method, then select a circuit from the scores."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from circuitwise.circuits.circuit import Circuit
from circuitwise.circuits.methods import get_method, score_edges
from circuitwise.circuits.node_select import check_level
from circuitwise.circuits.patch import Ablation
from circuitwise.circuits.scores import EdgeScores, Progress, no_progress
from circuitwise.circuits.select import Rank, select_circuit
from circuitwise.tasks.tokenize import TokenizedTask
from circuitwise.types import Shows


@dataclass(frozen=True, eq=False, repr=False)
class Discovery(Shows):
    """The edge scores of the whole graph and the circuit chosen from them."""

    circuit: Circuit
    scores: EdgeScores

    def __repr__(self) -> str:
        return f"Discovery({self.circuit!r}, scored in {self.scores.seconds:.1f} s)"

    def to_json(self) -> dict[str, Any]:
        return {"circuit": self.circuit.to_json(), "scores": self.scores.to_json(all_edges=False)}


def find_circuit(
    model: Any,
    tok: TokenizedTask,
    *,
    method: str = "eap-ig",
    options: Any = None,
    steps: int | None = None,
    direction: str | None = None,
    selection: str = "target",
    level: str = "edge",
    n: int | None = None,
    threshold: float | None = None,
    target: float = 0.9,
    by: Rank = "abs",
    prune: bool = True,
    ablation: Ablation = "corrupted",
    batch_size: int | None = None,
    metric: str = "logit_diff",
    progress: Progress = no_progress,
) -> Discovery:
    """Discover a circuit: ``method`` scores the edges, ``selection`` picks them.

    ``options`` are the method's (an options object or mapping: ``{"gradient": "corrupted"}`` for
    eap, ``{"steps": 10, "quadrature": "midpoint"}`` for eap-ig …); ``steps`` and ``direction`` are
    shortcuts for the eap-ig / exact options of those names. An option the method does not have is
    an error, before any work. ``n``, ``threshold`` and ``target`` belong to the ``top-n``,
    ``threshold`` and ``target`` selections. ``level="node"`` chooses heads and MLPs by their node
    scores (``n`` counts nodes, ``threshold`` cuts node scores) and keeps their edge circuit
    (:mod:`circuitwise.circuits.node_select`).
    """
    check_level(level)  # before the scoring pass
    m = get_method(method)
    shortcuts = {k: v for k, v in (("steps", steps), ("direction", direction)) if v is not None}
    opts = m.options(options, **shortcuts)
    scores = score_edges(model, tok, method, opts, batch_size=batch_size, metric=metric, progress=progress)
    circuit = select_circuit(scores, selection, level=level, model=model, tok=tok, n=n, threshold=threshold,
                             target=target, by=by, prune=prune, ablation=ablation, batch_size=batch_size,
                             progress=progress, check=False)
    circuit = circuit.with_edges(circuit.edges, method_config={"method": method, **scores.config})
    return Discovery(circuit, scores)


__all__ = ["Discovery", "find_circuit"]
