"""``compare.json``: what a compare run writes, and all that compare.html and the notebook display read.

Every float list may hold ``None`` where a value is undefined (NaN: a degenerate patching gap,
a cell with no finite values); nothing is clipped. Its header predates the schema package's
(``format`` + ``version``), as circuit.json's does. (Moved here from ``compare/schema.py``, which
re-exports it, so every file's model lives in one package below the stages; nothing here imports
torch — the tensors ``Comparison.build`` and ``floats`` take are read through their methods.)
"""

from __future__ import annotations

from typing import Any, ClassVar, Final, Literal, Protocol, TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field

from circuitwise.schema.base import FileModel
from circuitwise.types import Shows

if TYPE_CHECKING:
    import torch

FORMAT: Final = "circuitwise.compare"
VERSION = 1

Floats = list[float | None]


class Tested(Protocol):
    """What :meth:`Comparison.build` reads of a test's outcome (``compare.stats.Difference`` is one).

    A protocol rather than an import: the schema sits below every stage, compare/ included.
    """

    # Read-only (properties): a frozen dataclass satisfies them.
    @property
    def a(self) -> torch.Tensor: ...
    @property
    def b(self) -> torch.Tensor: ...
    @property
    def diff(self) -> torch.Tensor: ...
    @property
    def a_ci(self) -> tuple[torch.Tensor, torch.Tensor]: ...
    @property
    def b_ci(self) -> tuple[torch.Tensor, torch.Tensor]: ...
    @property
    def diff_ci(self) -> tuple[torch.Tensor, torch.Tensor]: ...
    @property
    def p(self) -> torch.Tensor: ...
    @property
    def q(self) -> torch.Tensor | None: ...
    @property
    def significant(self) -> torch.Tensor: ...
    @property
    def paired(self) -> bool: ...
    @property
    def test(self) -> str: ...
    @property
    def statistic(self) -> Literal["mean", "ratio"]: ...


def floats(x: torch.Tensor) -> Floats:
    return [None if v != v or v in (float("inf"), float("-inf")) else float(v) for v in x.double().flatten().tolist()]


def rows(x: torch.Tensor) -> list[Floats]:
    return [floats(r) for r in x.reshape(x.shape[0], -1)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())


class Comparison(_Model):
    """One quantity compared cell by cell: each side's statistic, the difference A − B, intervals, tests.

    ``per_example_a``/``_b`` [example][cell] are the values the statistic reads (with
    ``clean_*``/``corrupted_*`` [example] for the patching ``ratio``), so every number here can be
    recomputed from this file.
    """

    name: str
    axes: list[str]
    shape: list[int]
    cells: list[str]
    statistic: Literal["mean", "ratio"]
    paired: bool
    test: str
    correction: Literal["benjamini-hochberg"] | None
    alpha: float
    confidence: float
    min_difference: float
    n_a: int
    n_b: int
    a: Floats
    b: Floats
    diff: Floats
    a_low: Floats
    a_high: Floats
    b_low: Floats
    b_high: Floats
    diff_low: Floats
    diff_high: Floats
    p: Floats
    q: Floats | None
    significant: list[bool]
    per_example_a: list[Floats]
    per_example_b: list[Floats]
    clean_a: Floats | None = None
    corrupted_a: Floats | None = None
    clean_b: Floats | None = None
    corrupted_b: Floats | None = None

    @classmethod
    def build(cls, name: str, axes: list[str], shape: list[int], cells: list[str], d: Tested, *,
              values_a: torch.Tensor, values_b: torch.Tensor, alpha: float, confidence: float,
              min_difference: float, clean: tuple[torch.Tensor, torch.Tensor] | None = None,
              corrupted: tuple[torch.Tensor, torch.Tensor] | None = None) -> Comparison:
        return cls(
            name=name, axes=axes, shape=shape, cells=cells, statistic=d.statistic, paired=d.paired, test=d.test,
            correction="benjamini-hochberg" if d.q is not None else None, alpha=alpha, confidence=confidence,
            min_difference=min_difference, n_a=int(values_a.shape[0]), n_b=int(values_b.shape[0]),
            a=floats(d.a), b=floats(d.b), diff=floats(d.diff),
            a_low=floats(d.a_ci[0]), a_high=floats(d.a_ci[1]), b_low=floats(d.b_ci[0]), b_high=floats(d.b_ci[1]),
            diff_low=floats(d.diff_ci[0]), diff_high=floats(d.diff_ci[1]),
            p=floats(d.p), q=None if d.q is None else floats(d.q), significant=[bool(s) for s in d.significant],
            per_example_a=rows(values_a), per_example_b=rows(values_b),
            clean_a=None if clean is None else floats(clean[0]), clean_b=None if clean is None else floats(clean[1]),
            corrupted_a=None if corrupted is None else floats(corrupted[0]),
            corrupted_b=None if corrupted is None else floats(corrupted[1]),
        )

    def flagged(self) -> list[str]:
        """The cells whose difference is significant (after the correction), largest difference first."""
        hits = [(abs(d or 0.0), c) for c, d, s in zip(self.cells, self.diff, self.significant, strict=True) if s]
        return [c for _, c in sorted(hits, key=lambda t: -t[0])]

    def cell(self, label: str) -> dict[str, Any]:
        """One cell's numbers by its label ("L1H3", "0_attn_out", "logit_diff" …)."""
        i = self.cells.index(label)
        keys = ("a", "b", "diff", "a_low", "a_high", "b_low", "b_high", "diff_low", "diff_high", "p", "significant")
        out = {k: getattr(self, k)[i] for k in keys}
        out["q"] = None if self.q is None else self.q[i]
        return out


class Example(_Model):
    clean: str
    correct: str
    incorrect: str
    corrupted: str | None
    tokens: list[str]


class Side(_Model):
    """One side: its task, model and the plain (uncompared) results the page shows beside the other side's."""

    label: str
    task: str
    model: str
    split: str | None
    n_prompts: int
    n_dropped: int
    dropped_reasons: list[str]
    model_info: dict[str, Any]
    examples: list[Example]
    logit_diff: Floats
    corrupted_logit_diff: Floats | None
    accuracy: float
    n_layers: int
    n_heads: int
    # Filled by the attribution and patching stages (means over the side's examples).
    lens_labels: list[str] = Field(default_factory=list)
    lens: Floats = Field(default_factory=list)
    layer_labels: list[str] = Field(default_factory=list)
    layers: Floats = Field(default_factory=list)
    heads_dla: list[Floats] = Field(default_factory=list)
    closure_error: float | None = None
    patching: list[Floats] | None = None
    patching_degenerate: bool | None = None


class Attention(_Model):
    heads: list[str]
    example: int
    tokens_a: list[str]
    tokens_b: list[str]
    patterns_a: list[list[list[float]]]
    patterns_b: list[list[list[float]]]


class CircuitSide(_Model):
    """The circuit found on one side, and its faithfulness on its own side."""

    method: str
    n_edges: int
    total_edges: int
    faithfulness: float | None
    kept_fraction: float | None
    target_reached: bool | None
    edges: list[str]
    scores: Floats
    file: str
    figure: dict[str, Any] | None = None  # plotly JSON of the drawn circuit, so the page renders from this file
    # A node-level circuit's heads and MLPs (--circuit-level node; its random baseline: node sets of its size).
    nodes: list[str] | None = None


class CrossCell(_Model):
    """A circuit (found on ``circuit``) evaluated on a side (``on``), against random circuits of its size."""

    circuit: Literal["a", "b"]
    on: Literal["a", "b"]
    faithfulness: float | None
    kept_fraction: float | None
    n_edges: int
    random_mean: float | None
    random_std: float | None
    random_p: float
    # True when no random circuit reached the faithfulness: random_p is then the bound 1/(samples + 1).
    random_p_is_bound: bool | None = None
    random_faithfulness: Floats
    per_example: Floats


class Overlap(_Model):
    jaccard: float
    jaccard_equal_size: float
    equal_size: int
    weighted: float
    shared_edges: list[str]
    shared_nodes: list[str]
    only_a: list[str]
    only_b: list[str]


class Circuits(_Model):
    a: CircuitSide
    b: CircuitSide
    overlap: Overlap | None
    cross: list[CrossCell]


class Pairing(_Model):
    paired: bool
    kind: str
    reason: str


class CompareResults(FileModel, Shows):
    """A whole comparison: ``cw.compare(...)`` fills one; ``load_compare(path)`` reads one back."""

    show_name: ClassVar[str | None] = "compare"

    FORMAT: ClassVar[str] = FORMAT
    VERSION_FIELD: ClassVar[str] = "version"
    VERSION: ClassVar[int] = VERSION
    FILENAME: ClassVar[str] = "compare.json"
    REMEDY: ClassVar[str] = "Re-create it with `circuitwise compare A B --out DIR`."

    format: Literal["circuitwise.compare"] = "circuitwise.compare"
    version: int = VERSION
    circuitwise_version: str
    complete: bool = False
    rerun: str
    config: dict[str, Any]
    pairing: Pairing
    notes: list[str] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)
    a: Side
    b: Side
    logit_diff: Comparison | None = None
    accuracy: Comparison | None = None
    metric: Comparison | None = None  # the run's --metric per prompt, when not the logit difference
    lens: Comparison | None = None
    layers: Comparison | None = None
    heads: Comparison | None = None
    patching: Comparison | None = None
    attention: Attention | None = None
    circuits: Circuits | None = None
    circuits_skipped: str | None = None
    summary: list[str] = Field(default_factory=list)

    def __repr__(self) -> str:
        ld = self.logit_diff
        diff = f"; logit diff A − B {ld.diff[0]:+.3f}" if ld is not None and ld.diff and ld.diff[0] is not None else ""
        paired = "paired" if self.pairing.paired else "unpaired"
        return f"CompareResults({self.a.label} vs {self.b.label}, {paired}{diff})"


__all__ = ["FORMAT", "VERSION", "Attention", "CircuitSide", "Circuits", "CompareResults", "Comparison", "CrossCell",
           "Example", "Overlap", "Pairing", "Side", "floats", "rows"]
