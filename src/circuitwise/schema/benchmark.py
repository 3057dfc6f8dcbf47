"""``benchmark.json``: what `circuitwise benchmark` writes — every method's MIB metrics on one task.

Its header is ``format`` + ``version`` (as circuit.json's). A method's ``config`` holds its own
options (open); everything else is typed.
"""

from __future__ import annotations

from typing import Any, ClassVar, Final, Literal

from pydantic import Field

from circuitwise.schema.base import FileModel, Num, Section
from circuitwise.schema.circuit import CircuitModel
from circuitwise.schema.results import MIB

FORMAT: Final = "circuitwise.benchmark"
VERSION = 1


class BenchmarkMethod(Section):
    """One method's row (``MethodResult.to_json``)."""

    method: str
    cpr: Num
    cmd: Num
    edges_at_target: int | None  # None: no prefix of the ranking reached the target
    faithfulness_at_target: Num
    seconds: float
    config: dict[str, Any] = Field(default_factory=dict)
    target: float
    mib: MIB


class SkippedMethod(Section):
    method: str
    reason: str


class BenchmarkFile(FileModel):
    FORMAT: ClassVar[str] = FORMAT
    VERSION_FIELD: ClassVar[str] = "version"
    VERSION: ClassVar[int] = VERSION
    FILENAME: ClassVar[str] = "benchmark.json"
    REMEDY: ClassVar[str] = "Re-create it with `circuitwise benchmark TASK --out DIR`."

    format: Literal["circuitwise.benchmark"] = "circuitwise.benchmark"
    version: int = VERSION
    task: str
    model: CircuitModel
    n_examples: int
    total_edges: int
    metric: str
    ablation: str
    target: float
    # What each column means, by column name.
    columns: dict[str, str]
    methods: list[BenchmarkMethod]
    skipped: list[SkippedMethod] = Field(default_factory=list)


__all__ = ["BenchmarkFile", "BenchmarkMethod", "FORMAT", "SkippedMethod", "VERSION"]
