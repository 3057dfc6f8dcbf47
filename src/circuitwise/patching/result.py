"""PatchResult: a patching sweep with its axes, per-example values, baselines and statistics.

``values`` is what a heatmap shows. With ``normalize=True`` it is
``(mean patched − mean corrupted) / (mean clean − mean corrupted)`` over examples (0: the patch
did nothing, 1: it restored the clean answer); ``per_example`` is the same ratio per example.
A gap that is (near) zero gives NaN and ``degenerate=True`` — never a clipped or huge number.
``raw`` always keeps the per-example metric itself, so any statistic can be recomputed.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

import torch

from circuitwise.types import Labelled, Shows, nan_to_none

# |clean − corrupted| below this (in metric units, e.g. logits) has no recovery scale.
MIN_GAP = 1e-3


class DegenerateNormalizationWarning(UserWarning):
    """The clean and corrupted metrics (nearly) coincide, so normalised values are NaN."""


@dataclass(frozen=True, repr=False)
class PatchResult(Labelled, Shows):
    """One sweep. ``values``: [layer, pos], [layer, head] or [layer, pos, head] (TL's order).

    ``raw`` [example, *axes]: the patched metric per example. ``clean``/``corrupted``
    [example]: the unpatched metrics. ``normalized``: whether ``values``/``per_example`` are
    recovery fractions. ``degenerate``: the mean gap was below ``min_gap`` (values are NaN);
    ``degenerate_examples``: examples whose own gap was (their ``per_example`` rows are NaN).
    """

    raw: torch.Tensor | None = None
    clean: torch.Tensor | None = None
    corrupted: torch.Tensor | None = None
    normalized: bool = False
    degenerate: bool = False
    degenerate_examples: tuple[int, ...] = ()
    min_gap: float = MIN_GAP
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def build(cls, raw: torch.Tensor, clean: torch.Tensor, corrupted: torch.Tensor, *,
              axes: tuple[str, ...], labels: dict[str, list[str]], metric: str, normalize: bool,
              config: dict[str, Any], min_gap: float = MIN_GAP, warn: bool = True) -> "PatchResult":
        raw, clean, corrupted = raw.float(), clean.float(), corrupted.float()
        if not normalize:
            return cls(raw.mean(0), axes, labels, metric, config, raw, raw=raw, clean=clean,
                       corrupted=corrupted, min_gap=min_gap)
        values, degenerate = _ratio_of_means(raw, clean, corrupted, min_gap)
        gap = clean - corrupted
        bad = gap.abs() < min_gap
        shape = (-1,) + (1,) * (raw.dim() - 1)
        per_example = (raw - corrupted.view(shape)) / torch.where(bad, torch.nan, gap).view(shape)
        bad_list = tuple(int(i) for i in bad.nonzero().flatten())
        if warn and degenerate:
            warnings.warn(DegenerateNormalizationWarning(
                f"{config.get('what', 'patching')}: the mean clean metric ({float(clean.mean()):+.4g}) "
                f"and corrupted metric ({float(corrupted.mean()):+.4g}) differ by less than "
                f"{min_gap:g}, so there is nothing to recover and normalised values are NaN. Check that "
                "the corruption changes the answer, or use normalize=False (--no-normalize) for the raw "
                "metric."), stacklevel=3)
        elif warn and bad_list:
            warnings.warn(DegenerateNormalizationWarning(
                f"{config.get('what', 'patching')}: {len(bad_list)} of {len(clean)} examples have clean and "
                f"corrupted metrics within {min_gap:g} of each other (first: example {bad_list[0]}); their "
                "per-example normalised values are NaN. The mean over examples is unaffected."), stacklevel=3)
        return cls(values, axes, labels, metric, config, per_example, raw=raw, clean=clean,
                   corrupted=corrupted, normalized=True, degenerate=degenerate,
                   degenerate_examples=bad_list, min_gap=min_gap)

    # ---- statistics ---------------------------------------------------------------------------

    def statistic(self, rows: torch.Tensor | None = None) -> torch.Tensor:
        """``values`` recomputed on a subset (or resample) of examples."""
        assert self.raw is not None and self.clean is not None and self.corrupted is not None
        raw, clean, corr = (self.raw, self.clean, self.corrupted) if rows is None else (
            self.raw[rows], self.clean[rows], self.corrupted[rows])
        if not self.normalized:
            return raw.mean(0)
        return _ratio_of_means(raw, clean, corr, self.min_gap)[0]

    def bootstrap_ci(self, *, confidence: float = 0.95, n_resamples: int = 1000,
                     seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """Percentile bootstrap interval of ``values`` (examples resampled), per cell."""
        assert self.raw is not None
        n = self.raw.shape[0]
        gen = torch.Generator().manual_seed(seed)
        idx = torch.randint(0, n, (n_resamples, n), generator=gen)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            stats = torch.stack([self.statistic(i) for i in idx])
        alpha = (1.0 - confidence) / 2
        return torch.nanquantile(stats, alpha, dim=0), torch.nanquantile(stats, 1 - alpha, dim=0)

    def stderr(self) -> torch.Tensor:
        """Standard error of the per-example values' mean, per cell."""
        x = self.per_example if self.per_example is not None else self.raw
        assert x is not None
        n = (~torch.isnan(x)).sum(0).clamp(min=1)
        return torch.sqrt(torch.nanmean((x - torch.nanmean(x, 0)) ** 2, 0) * n / (n - 1).clamp(min=1)) / n.sqrt()

    def correlation(self, other: "PatchResult") -> float:
        """Pearson correlation of two sweeps' ``values`` over the cells finite in both."""
        return pearson(self.values, other.values)

    @property
    def unpatched(self) -> float:
        """The value of a cell whose patch changes nothing: the run patched into (the corrupted one when
        denoising, the clean one when noising), 0 or 1 once normalised."""
        noise = self.config.get("direction") == "noise"
        if self.normalized:
            return 1.0 if noise else 0.0
        ends = self.clean if noise else self.corrupted
        return float(ends.mean()) if ends is not None else 0.0

    def top(self, k: int = 10, *, by_abs: bool = True) -> list[tuple[str, float]]:
        """The ``k`` cells whose patch moves the metric most (``|value - unpatched|``; ``by_abs=False``: the
        largest values) as ("L3H7" / "L3 pos tok_4" …, value)."""
        flat = self.values.flatten()
        # Ranked by |value| alone, a noising sweep's top cells were those that change nothing (about 1).
        key = (flat - self.unpatched).abs() if by_abs else flat
        key = torch.where(torch.isnan(key), torch.tensor(float("-inf")), key)
        order = key.argsort(descending=True)[:k]
        shape = self.values.shape
        out = []
        for i in order.tolist():
            coords = torch.unravel_index(torch.tensor(i), shape)
            parts = [self._cell_name(ax, int(c)) for ax, c in zip(self.axes, coords)]
            out.append((" ".join(parts), float(flat[i])))
        return out

    def _cell_name(self, axis: str, i: int) -> str:
        label = self.labels.get(axis, [str(i)])[i]
        return {"layer": f"L{label}", "head": f"H{label}"}.get(axis, repr(label))

    def __repr__(self) -> str:
        what = self.config.get("what", "sweep")
        shape = " × ".join(f"{len(self.labels.get(a, []))} {a}" for a in self.axes)
        unit = "restored" if self.normalized else self.metric
        ends = ""
        if self.clean is not None and self.corrupted is not None:
            ends = f"; clean {float(self.clean.mean()):+.3f}, corrupted {float(self.corrupted.mean()):+.3f}"
        top = ", ".join(f"{c} {v:+.2f}" for c, v in self.top(3) if v == v)
        state = "degenerate gap" if self.degenerate else f"top ({unit}): {top}"
        return f"PatchResult({what} [{shape}]{ends}; {state})"

    def to_json(self) -> dict[str, Any]:
        out = super().to_json()
        out.update({
            "normalized": self.normalized,
            "statistic": "ratio_of_means" if self.normalized else "mean",
            "degenerate": self.degenerate,
            "degenerate_examples": list(self.degenerate_examples),
            "min_gap": self.min_gap,
            "raw": nan_to_none(self.raw.tolist()) if self.raw is not None else None,
            "clean": self.clean.tolist() if self.clean is not None else None,
            "corrupted": self.corrupted.tolist() if self.corrupted is not None else None,
            **self.extra,
        })
        return out


def _ratio_of_means(raw: torch.Tensor, clean: torch.Tensor, corrupted: torch.Tensor,
                    min_gap: float) -> tuple[torch.Tensor, bool]:
    gap = float(clean.mean() - corrupted.mean())
    if abs(gap) < min_gap:
        return torch.full(raw.shape[1:], float("nan")), True
    return (raw.mean(0) - corrupted.mean()) / gap, False


def pearson(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.flatten().double(), b.flatten().double()
    ok = torch.isfinite(a) & torch.isfinite(b)
    a, b = a[ok] - a[ok].mean(), b[ok] - b[ok].mean()
    denom = float(a.norm() * b.norm())
    return float((a * b).sum()) / denom if denom > 0 else float("nan")


__all__ = ["MIN_GAP", "DegenerateNormalizationWarning", "PatchResult", "pearson"]
