"""Rank correlation without scipy: Spearman is Pearson on average ranks (ties share their rank)."""

from __future__ import annotations

import torch


def rankdata(x: torch.Tensor) -> torch.Tensor:
    """Ranks 1..n of a 1-D tensor, ties given their average rank."""
    x = x.double().flatten()
    order = torch.argsort(x, stable=True)
    ranks = torch.empty_like(x)
    ranks[order] = torch.arange(1, x.numel() + 1, dtype=torch.float64)
    _, inverse, counts = torch.unique(x, return_inverse=True, return_counts=True)
    sums = torch.zeros(counts.numel(), dtype=torch.float64).index_add_(0, inverse, ranks)
    return (sums / counts)[inverse]


def pearson(x: torch.Tensor, y: torch.Tensor) -> float:
    x, y = x.double().flatten(), y.double().flatten()
    x, y = x - x.mean(), y - y.mean()
    denom = float(x.norm() * y.norm())
    return float("nan") if denom == 0 else float((x * y).sum()) / denom


def spearman(x: torch.Tensor, y: torch.Tensor) -> float:
    """Spearman's rank correlation over the entries where both are finite."""
    x, y = x.flatten(), y.flatten()
    ok = torch.isfinite(x) & torch.isfinite(y)
    if int(ok.sum()) < 2:
        return float("nan")
    return pearson(rankdata(x[ok]), rankdata(y[ok]))


__all__ = ["pearson", "rankdata", "spearman"]
