"""``circuit.json``: a circuit's edges with their scores, the model and graph it was found on, how chosen.

Its header predates the other files' (``format`` + ``version``), and version 1 is what this model
reads. It is open where methods record their own fields (``selection``, its ``method_config``, the
model's ``architecture``) and at the top level, so a field a later method adds is kept, never refused.
"""

from __future__ import annotations

from typing import Any, ClassVar, Final, Literal

from pydantic import Field

from circuitwise.schema.base import FileModel, Num, Open
from circuitwise.schema.results import MIB, Fingerprint, MethodConfig, Processing, Stability

FORMAT: Final = "circuitwise.circuit"
VERSION = 1


class CircuitModel(Open):
    name: str | None = None
    # Optional: `evaluate` compares those present with the model it is given.
    n_layers: int | None = None
    n_heads: int | None = None
    d_model: int | None = None
    d_vocab: int | None = None
    dtype: str | None = None
    processing: Processing | None = None
    architecture: dict[str, Any] | None = None
    # Absent in files written before fingerprints: `evaluate` warns and compares the shapes only.
    fingerprint: Fingerprint | None = None


class GraphInfo(Open):
    n_layers: int
    n_heads: int
    has_mlp: bool = True
    parallel_attn_mlp: bool = False
    n_edges: int


class CircuitSelection(Open):
    """How the edges were chosen; ``method_config`` holds the scoring method's options (open)."""

    kind: str | None = None
    method_config: MethodConfig | None = None


class Edge(Open):
    sender: str
    receiver: str
    score: Num = None
    tl_sender: dict[str, Any] | None = None
    tl_receiver: dict[str, Any] | None = None
    # Position-aware circuits only (absent in position-agnostic ones): the edge's score at each
    # position column, and the columns where the circuit keeps it.
    position_scores: dict[str, Num] | None = None
    kept_positions: list[str] | None = None
    # Circuits of (edge, key position, query position) units, key/value edges only: the [key, query]
    # column pairs kept (their keys are kept_positions) and each pair's score (key -> query -> score).
    kept_flows: list[list[str]] | None = None
    flow_scores: dict[str, dict[str, Num]] | None = None


class PositionColumns(Open):
    """A position-aware circuit's columns: token positions (``tokens``) or the task's roles (``roles``,
    plus ``other`` for the tokens no role names), labelled in reading order: a token × layer grid's x axis."""

    mode: Literal["tokens", "roles"]
    labels: list[str]


class CircuitFile(FileModel):
    FORMAT: ClassVar[str] = FORMAT
    VERSION_FIELD: ClassVar[str] = "version"
    VERSION: ClassVar[int] = VERSION
    READS: ClassVar[frozenset[int]] = frozenset({0})
    FILENAME: ClassVar[str] = "circuit.json"
    REMEDY: ClassVar[str] = ("Give the circuit.json written by `circuitwise circuit` "
                             "(or re-create it with that command).")

    model_config = Open.model_config

    format: Literal["circuitwise.circuit"] = "circuitwise.circuit"
    version: int = VERSION
    model: CircuitModel | None = None
    graph: GraphInfo | None = None
    task: str | None = None
    metric: str | None = "logit_diff"
    method: str | None = None
    selection: CircuitSelection | None = None
    n_edges: int | None = None
    total_edges: int | None = None
    edge_fraction: Num = None
    nodes: list[str] = Field(default_factory=list)
    edges: list[Edge]
    # MIB's metrics of the scores that chose the circuit (`circuitwise circuit`).
    mib: MIB | None = None
    # How often each edge is chosen again over bootstrap resamples of the prompts (absent in older files).
    stability: Stability | None = None
    # Position-aware circuits (circuits.positional); absent: every edge at every position.
    positions: PositionColumns | None = None

    def __repr__(self) -> str:
        size = f"{self.n_edges if self.n_edges is not None else len(self.edges)}"
        total = f" of {self.total_edges}" if self.total_edges else ""
        return f"CircuitFile({self.method or 'circuit'} on {self.task or 'a task'}: {size}{total} edges)"


__all__ = ["CircuitFile", "CircuitModel", "CircuitSelection", "Edge", "FORMAT", "GraphInfo", "PositionColumns",
           "VERSION"]
