"""compare.json's typed models live in :mod:`circuitwise.schema.compare` (with every other file's);
re-exported here for the compare stage."""

from circuitwise.schema.compare import (FORMAT, VERSION, Attention, CircuitSide, Circuits, CompareResults, Comparison,
                                        CrossCell, Example, Overlap, Pairing, Side, floats, rows)

__all__ = ["FORMAT", "VERSION", "Attention", "CircuitSide", "Circuits", "CompareResults", "Comparison", "CrossCell",
           "Example", "Overlap", "Pairing", "Side", "floats", "rows"]
