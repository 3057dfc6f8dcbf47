"""What each exact patching cell costs, and which cells to patch exactly when all would take too long.

A cell patched at (layer l, position p) makes the cone engine recompute the layers after it at
positions p… of each prompt; positions before a prompt's first clean/corrupted difference are
skipped exactly (their patch changes nothing). So a cell's FLOPs are, summed over prompts,
``layers after it × positions from p on × 2 · (parameters of a layer)`` — a deterministic count
from the shapes and the tokens (measured at GPT-2-small shapes: within 2× of the time the cone
engine takes, at 130–230 GFLOP/s on two idle cores).

When a run's exact sweeps would cost more than the plan's budget, every cell still gets its
attribution estimate, and the cells attribution ranks highest are patched exactly, as many as the
budget allows (:func:`select_cells`); ``--exhaustive`` patches every cell.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from circuitwise.models.memory import Shapes
from circuitwise.patching.common import sweep_axes
from circuitwise.patching.sweeps import get_sweep
from circuitwise.tasks.tokenize import TokenizedTask

# The cells attribution ranks highest are always patched exactly, whatever the budget.
MIN_EXACT_CELLS = 12


def layer_flops(s: Shapes) -> float:
    """FLOPs of one layer at one position (its projections and MLP)."""
    attn = s.d_model * s.d_head * (2 * s.n_heads + 2 * s.n_kv_heads)
    return 2.0 * (attn + s.d_model * s.d_mlp * (3 if s.gated else 2))


def cell_flops(what: str, model: Any, tok: TokenizedTask, align: str = "auto") -> torch.Tensor:
    """FLOPs of each cell of sweep ``what`` over every prompt, in the sweep's shape ``[layer, *cells]``."""
    sweep = get_sweep(what)
    s = Shapes.from_model(model)
    L = s.n_layers
    positions, labels = sweep_axes(model, sweep, tok, align)
    assert tok.corrupted is not None
    differs = (tok.clean != tok.corrupted).cpu()
    T = tok.clean.shape[1]
    p0 = torch.where(differs.any(-1), differs.int().argmax(-1), torch.full((len(tok),), T)).double()
    ends = tok.last.cpu().double() + 1  # tokens in each prompt
    per = layer_flops(s)
    start = torch.arange(L, dtype=torch.float64) + (0 if sweep.name == "resid_pre" else 1)
    after = (L - start).clamp_min(0)  # layers the cone recomputes, per cell's layer
    if not sweep.by_pos:
        rows = (ends - p0).clamp_min(0).sum()  # every position from the first difference on
        n = len(labels["head"])
        return (after * rows * per)[:, None].expand(L, n).clone()
    assert positions is not None
    pos = positions.index.cpu().double()  # [example, column]
    live = (pos >= p0[:, None]) & (pos < ends[:, None])
    rows = torch.where(live, ends[:, None] - pos, torch.zeros_like(pos)).sum(0)  # [column]
    flops = after[:, None] * rows[None] * per  # [layer, column]
    if sweep.by_head:
        flops = flops[..., None].expand(*flops.shape, len(labels["head"])).clone()
    return flops


def skipped_cells(out: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """NaN in the cells not patched (``mask`` false): never the unpatched metric, which would read as 0."""
    if mask is None:
        return out
    out = out.float() if not out.is_floating_point() else out
    out[:, ~mask] = float("nan")
    return out


@dataclass(frozen=True)
class Selection:
    """Which cells of each sweep to patch exactly (``None``: all), and what that costs."""

    cells: dict[str, torch.Tensor | None]
    exact_flops: float
    total_flops: float

    def note(self) -> str | None:
        parts = []
        for what, mask in self.cells.items():
            if mask is not None:
                parts.append(f"{what} {int(mask.sum())} of {mask.numel()}")
        if not parts:
            return None
        return ("Exact patching of every cell would take too long for this model and task "
                f"({self.total_flops / 1e12:.3g} TFLOP), so every cell has its attribution estimate and the cells "
                f"attribution ranks highest were patched exactly ({'; '.join(parts)}; the others are blank in the "
                "exact maps). Re-run with --exhaustive to patch every cell.")


def select_cells(costs: dict[str, torch.Tensor], ranking: dict[str, torch.Tensor], budget_flops: float
                 ) -> Selection:
    """Per sweep, the cells with the largest |attribution| until the sweep's share of the budget is spent.

    Sweeps that fit their share are patched whole and their unused share goes to the others.
    """
    total = float(sum(float(c.sum()) for c in costs.values()))
    if total <= budget_flops:
        return Selection({w: None for w in costs}, total, total)
    cells: dict[str, torch.Tensor | None] = {}
    left, todo = budget_flops, sorted(costs, key=lambda w: float(costs[w].sum()))
    spent = 0.0
    for i, what in enumerate(todo):
        share = left / (len(todo) - i)
        cost = costs[what]
        if float(cost.sum()) <= share:
            cells[what] = None
            used = float(cost.sum())
        else:
            key = torch.nan_to_num(ranking[what].abs().double(), nan=-1.0).flatten()
            order = key.argsort(descending=True)
            running = cost.flatten()[order].cumsum(0)
            n = max(MIN_EXACT_CELLS, int((running <= share).sum()))
            if n >= key.numel():
                cells[what] = None
                used = float(cost.sum())
            else:
                mask = torch.zeros(key.numel(), dtype=torch.bool)
                mask[order[:n]] = True
                cells[what] = mask.view(cost.shape)
                used = float(cost.flatten()[mask].sum())
        left -= used
        spent += used
    return Selection({w: cells[w] for w in costs}, spent, total)


__all__ = ["MIN_EXACT_CELLS", "Selection", "cell_flops", "layer_flops", "select_cells", "skipped_cells"]
