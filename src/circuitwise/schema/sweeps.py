"""One patching sweep as results.json and patching.json hold it (``PatchResult.to_json``)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from circuitwise.schema.base import Interval, Num, Open, Section

# [layer, pos] / [layer, head] or [layer, pos, head]; per example one axis more in front.
Grid = list[list[Num]] | list[list[list[Num]]]
PerExample = list[list[list[Num]]] | list[list[list[list[Num]]]]


class SweepConfig(Open):
    """How the sweep was run. Open: a sweep kind may record more (e.g. ``pos_tokens``)."""

    what: str
    direction: Literal["denoise", "noise"] = "denoise"
    metric: str = "logit_diff"
    align: str | None = None
    method: str | None = None
    normalize: bool = True
    # Cells patched exactly when the plan chose the ones attribution ranks highest (None: every cell).
    exact_cells: int | None = None


class Cell(Section):
    cell: str
    value: Num
    interval: Interval | None = None  # bootstrap over prompts of the cell's value (absent in older files)


class AttributionCheck(Section):
    """Attribution patching's estimate of the same sweep and its agreement with the exact one."""

    values: Grid
    correlation: Num


class Sweep(Section):
    """A patching sweep: ``values`` over ``axes`` (labels per axis), per example, and its baselines."""

    axes: list[str]
    labels: dict[str, list[str]]
    values: Grid
    metric: str
    config: SweepConfig
    per_example: PerExample | None = None
    normalized: bool
    statistic: Literal["ratio_of_means", "mean"]
    degenerate: bool
    degenerate_examples: list[int] = Field(default_factory=list)
    min_gap: float
    raw: PerExample | None = None
    clean: list[Num] | None = None
    corrupted: list[Num] | None = None


class RunSweep(Sweep):
    """A sweep of a whole run (results.json ``patching``): with its largest cells and attribution check."""

    top: list[Cell] = Field(default_factory=list)
    attribution: AttributionCheck | None = None


__all__ = ["AttributionCheck", "Cell", "Grid", "PerExample", "RunSweep", "Sweep", "SweepConfig"]
