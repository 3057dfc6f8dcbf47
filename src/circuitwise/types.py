"""Shared type aliases and the labelled-result base every analysis returns.

A result is never a bare tensor: it carries its axis names and labels, the metric it measures
and the config that produced it, so it can be serialised, plotted and compared without guessing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from jaxtyping import Float, Int

Device = Literal["cpu", "cuda", "mps"]
MetricName = Literal["logit_diff"]

Tokens = Int[torch.Tensor, "batch pos"]
AnswerIds = Int[torch.Tensor, "batch 2"]


class Shows:
    """``.show()`` for results with a ``_repr_html_``: in a notebook it displays, elsewhere it opens a browser.

    The HTML itself is rendered in ``reports/`` (imported when shown, so importing a stage never
    pulls in the report code).
    """

    def _repr_html_(self) -> str:  # pragma: no cover - every subclass defines it
        raise NotImplementedError

    def show(self) -> None:
        """Display this result with the report's figures (interactive, offline)."""
        from circuitwise.reports.display import show

        show(self._repr_html_(), type(self).__name__.lower())


@dataclass(frozen=True)
class Labelled:
    """A tensor with named axes and per-axis labels.

    ``values`` has one dimension per entry of ``axes``; ``labels[axis]`` lists the tick labels of
    that axis (token strings, role names, "L3H7" …). ``per_example`` optionally keeps the
    unreduced values with a leading ``example`` axis, so reports can show spread, not only means.
    """

    values: torch.Tensor
    axes: tuple[str, ...]
    labels: dict[str, list[str]]
    metric: str = "logit_diff"
    config: dict[str, Any] = field(default_factory=dict)
    per_example: torch.Tensor | None = None

    def __post_init__(self) -> None:
        if self.values.dim() != len(self.axes):
            raise ValueError(f"values has {self.values.dim()} dims but axes are {self.axes}")
        for i, axis in enumerate(self.axes):
            ticks = self.labels.get(axis)
            if ticks is not None and len(ticks) != self.values.shape[i]:
                raise ValueError(
                    f"axis {axis!r} has {self.values.shape[i]} entries but {len(ticks)} labels"
                )

    def to_json(self) -> dict[str, Any]:
        """A plain-JSON view (lists of floats; NaN becomes null)."""
        out: dict[str, Any] = {
            "axes": list(self.axes),
            "labels": {k: list(v) for k, v in self.labels.items()},
            "values": nan_to_none(self.values.detach().cpu().tolist()),
            "metric": self.metric,
            "config": self.config,
        }
        if self.per_example is not None:
            out["per_example"] = nan_to_none(self.per_example.detach().cpu().tolist())
        return out


def nan_to_none(x: Any) -> Any:
    """Replace NaN and ±inf (not valid JSON) by None, anywhere inside dicts, lists and tuples.

    Tensor and numpy scalars (anything with ``.item()``) are read as Python numbers first, so a
    stray ``torch.tensor(nan)`` in a results dict cannot reach ``json.dumps(allow_nan=False)``.
    """
    if isinstance(x, bool) or x is None or isinstance(x, (int, str)):
        return x
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {k: nan_to_none(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [nan_to_none(v) for v in x]
    item = getattr(x, "item", None)
    if callable(item) and getattr(x, "ndim", 0) == 0:
        return nan_to_none(item())
    return x


__all__ = ["AnswerIds", "Device", "Float", "Int", "Labelled", "MetricName", "Shows", "Tokens", "nan_to_none"]
