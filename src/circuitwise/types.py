"""Shared type aliases and the labelled-result base every analysis returns.

A result is never a bare tensor: it carries its axis names and labels, the metric it measures
and the config that produced it, so it can be serialised, plotted and compared without guessing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, Protocol

import torch
from jaxtyping import Float, Int

Device = Literal["cpu", "cuda", "mps"]
MetricName = Literal["logit_diff"]

Tokens = Int[torch.Tensor, "batch pos"]
AnswerIds = Int[torch.Tensor, "batch 2"]


class Display(Protocol):
    """What reports/ hands to :func:`register_display`: HTML for a result, and a way to show HTML."""

    def html(self, result: object) -> str: ...

    def show(self, html: str, name: str) -> object: ...


# Filled by reports/ when it is imported (the package's __init__ imports it), so that the result
# types below reports/ can display without importing it: layers only ever import downwards.
_display: Display | None = None


def register_display(display: Display) -> None:
    """Make ``display`` render every result's ``_repr_html_`` and ``.show()`` (reports/ calls this)."""
    global _display
    _display = display


def _registered() -> Display:
    if _display is None:
        raise RuntimeError("No display is registered: `import circuitwise` (which registers the report's "
                           "renderers) before displaying a result.")
    return _display


class Shows:
    """``_repr_html_`` and ``.show()`` for results: in a notebook it displays, elsewhere it opens a browser.

    The HTML itself is rendered by reports/, which registers its renderers here when imported.
    """

    # The file name ``.show()`` writes outside a notebook; the class name when None.
    show_name: ClassVar[str | None] = None

    def _repr_html_(self) -> str:
        return _registered().html(self)

    def show(self) -> None:
        """Display this result with the report's figures (interactive, offline)."""
        _registered().show(self._repr_html_(), self.show_name or type(self).__name__.lower())


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


__all__ = ["AnswerIds", "Device", "Display", "Float", "Int", "Labelled", "MetricName", "Shows", "Tokens", "nan_to_none",
           "register_display"]
