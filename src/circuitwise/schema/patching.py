"""``patching.json``: what `circuitwise patch` writes — sweeps by name, exact and/or attribution."""

from __future__ import annotations

from typing import Any, ClassVar, Final, Literal

from pydantic import Field

from circuitwise.schema.base import FileModel, Num, Section
from circuitwise.schema.results import Fingerprint
from circuitwise.schema.sweeps import Sweep
from circuitwise.types import Shows

FORMAT: Final = "circuitwise.patching"
VERSION = 1


class PatchEntry(Section):
    exact: Sweep | None = None
    attribution: Sweep | None = None
    correlation: Num = None


class PatchingFile(FileModel, Shows):
    show_name: ClassVar[str | None] = "patching"

    FORMAT: ClassVar[str] = FORMAT
    VERSION: ClassVar[int] = VERSION
    FILENAME: ClassVar[str] = "patching.json"
    REMEDY: ClassVar[str] = "Re-create it with `circuitwise patch TASK --out DIR`."

    format: Literal["circuitwise.patching"] = "circuitwise.patching"
    schema_version: int = VERSION
    circuitwise_version: str | None = None
    task: str
    model: str
    dtype: str = "float32"  # files written before --dtype existed computed in float32
    fingerprint: Fingerprint | None = None  # absent in files written before fingerprints
    n_examples: int
    sweeps: dict[str, PatchEntry] = Field(default_factory=dict)

    @classmethod
    def legacy(cls, data: dict[str, Any]) -> str | None:
        if isinstance(data.get("sweeps"), dict) and {"task", "model"} <= data.keys():
            return "an earlier circuitwise (before schema versions)"
        return None

    def __repr__(self) -> str:
        sweeps = ", ".join(self.sweeps) or "none"
        return f"PatchingFile({self.task} on {self.model}, {self.n_examples} examples; sweeps {sweeps})"


__all__ = ["FORMAT", "PatchEntry", "PatchingFile", "VERSION"]
