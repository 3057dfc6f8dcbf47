"""One schema for every file circuitwise writes: typed models, versioned, validated on write and read.

``results.json`` (:class:`RunResults`), ``patching.json`` (:class:`PatchingFile`),
``circuit.json`` (:class:`CircuitFile`), ``compare.json`` (:class:`CompareResults`), ``evaluation.json``
(:class:`EvaluationFile`), ``scores.json`` (:class:`ScoresFile`), ``benchmark.json``
(:class:`BenchmarkFile`) and ``graph.json`` (:class:`GraphFile`). The stages fill them, the report,
the notebook display and ``compare`` read only them; their JSON Schemas are exported to ``schema/``
in the repository (``make schema``). This package sits below the stages (it imports only ``errors`` and ``types``), so
any stage may build a section and the CLI, the pipeline and the reports may read one.
"""

from __future__ import annotations

from pathlib import Path

from circuitwise.schema.base import FileModel, Open, Section
from circuitwise.schema.benchmark import BenchmarkFile
from circuitwise.schema.circuit import CircuitFile
from circuitwise.schema.compare import CompareResults
from circuitwise.schema.graph import GraphFile
from circuitwise.schema.patching import PatchEntry, PatchingFile
from circuitwise.schema.results import RunResults
from circuitwise.schema.study import EvaluationFile, ScoresFile
from circuitwise.schema.sweeps import RunSweep, Sweep

# Every file model, by the name of the schema file exported for it.
FILES: dict[str, type[FileModel]] = {"results": RunResults, "patching": PatchingFile, "circuit": CircuitFile,
                                     "compare": CompareResults, "evaluation": EvaluationFile, "scores": ScoresFile,
                                     "benchmark": BenchmarkFile, "graph": GraphFile}


def load_results(path: str | Path) -> RunResults:
    """A run's ``results.json`` (or the run folder holding it), validated: the typed results.

    An old file (written before schema versions), another version, or a file that is not
    circuitwise's raises :class:`circuitwise.errors.SchemaError` saying which version was found,
    which one is read, and how to get a current file.
    """
    return RunResults.load(path)


def load_patching(path: str | Path) -> PatchingFile:
    """``patching.json`` of `circuitwise patch` (or its folder), validated."""
    return PatchingFile.load(path)


def load_compare(path: str | Path) -> CompareResults:
    """``compare.json`` of `circuitwise compare` (or its folder), validated."""
    return CompareResults.load(path)


def load_circuit_file(path: str | Path) -> CircuitFile:
    """``circuit.json`` (or its folder), validated — the file alone; ``Circuit.load`` rebuilds it on a model."""
    return CircuitFile.load(path)


__all__ = ["FILES", "BenchmarkFile", "CircuitFile", "CompareResults", "EvaluationFile", "FileModel", "GraphFile",
           "Open", "PatchEntry", "PatchingFile", "RunResults", "RunSweep", "ScoresFile", "Section", "Sweep",
           "load_circuit_file", "load_compare", "load_patching", "load_results"]
