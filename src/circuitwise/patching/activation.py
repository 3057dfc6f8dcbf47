"""activation_patching(): exact patching sweeps, batched, checkpointed and fast.

The work is split into units — one layer of one batch of examples — each computed by an
engine (``cone``: the causal-cone recomputation; ``hooks``: TransformerLens's hook, stacked),
saved to the checkpoint folder when one is given, and reported to ``progress``.
"""

from __future__ import annotations

import hashlib

import logging
import warnings
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Callable, Literal

import torch

from circuitwise.errors import ConfigError
from circuitwise.metrics import get_metric, prepared_for
from circuitwise.models.parallel import map_pieces
from circuitwise.models.precision import tolerance
from circuitwise.models.weights import read_weights, supports
from circuitwise.patching import cone_sweeps, hooks
from circuitwise.patching.common import Progress, auto_batch_size, sweep_axes, tokenized
from circuitwise.patching.result import MIN_GAP, PatchResult
from circuitwise.patching.resume import Checkpoint, sweep_key
from circuitwise.patching.runs import PairRun, cache_pair
from circuitwise.patching.sweeps import Sweep, check_direction, get_sweep
from circuitwise.tasks.task import Task
from circuitwise.tasks.tokenize import TokenizedTask

log = logging.getLogger(__name__)

EngineName = Literal["auto", "cone", "hooks"]
# The cone engine's unpatched metric may differ from the bridge's by float rounding only.
SELF_CHECK_TOL = 1e-3


@dataclass(frozen=True)
class Engine:
    name: str
    needed_names: Callable[[Sweep, int], tuple[set[str], set[str]]]
    build: Callable[..., Any]


ENGINES: dict[str, Engine] = {
    "cone": Engine("cone", cone_sweeps.needed_names, cone_sweeps.ConeSweeper),
    "hooks": Engine("hooks", hooks.needed_names, hooks.HookSweeper),
}


class CheckFailedWarning(UserWarning):
    """The cone engine disagreed with the model's own forward; the hook engine is used instead."""


def activation_patching(
    model: Any,
    task: Task | TokenizedTask,
    what: str,
    *,
    metric: str = "logit_diff",
    normalize: bool = True,
    direction: str = "denoise",
    batch_size: int | None = None,
    align: str = "auto",
    engine: EngineName = "auto",
    out: str | Path | None = None,
    progress: Progress | None = None,
    min_gap: float = MIN_GAP,
    cells: torch.Tensor | None = None,
) -> PatchResult:
    """Patch each activation of one kind, one at a time, and measure the metric.

    Args:
        model: a ``TransformerBridge`` from :func:`circuitwise.load_model`.
        task: a :class:`Task` with corrupted prompts, or its :class:`TokenizedTask`.
        what: ``resid_pre``, ``attn_out``, ``mlp_out`` ([layer, pos]); ``heads`` ([layer, head],
            every position); ``heads_by_pos`` ([layer, pos, head]); ``head_q``, ``head_k``,
            ``head_v``, ``head_pattern`` ([layer, head]).
        metric: a name from :data:`circuitwise.metrics.METRICS`.
        normalize: report ``(patched − corrupted) / (clean − corrupted)``; else the raw metric,
            equal to TransformerLens's ``get_act_patch_*``.
        direction: ``denoise`` patches clean activations into the corrupted run; ``noise`` the
            corrupted ones into the clean run.
        batch_size: examples per batch; chosen from the model and prompt size when None.
        align: position axis of [layer, pos] sweeps: ``token`` (prompts of one length),
            ``role`` (the task's roles), ``auto`` (token when lengths agree, else role).
        engine: ``cone`` (fast; every architecture ``models.weights.supports``), ``hooks`` (any
            architecture TransformerLens bridges), ``auto`` (cone where supported).
        out: folder for checkpoints; a re-run with the same folder and settings resumes.
        progress: ``progress(done, total)`` after each finished unit.
        min_gap: clean–corrupted gaps below this make normalised values NaN (degenerate).
        cells: a boolean mask in the result's shape (``[layer, *cells]``): patch only those cells
            exactly, the others are NaN (the plan's choice when every cell would take too long;
            :mod:`circuitwise.patching.cells`). Default: every cell.

    Returns:
        A :class:`PatchResult` with ``values`` in TransformerLens's axis order.
    """
    return activation_sweeps(model, task, (what,), metric=metric, normalize=normalize, direction=direction,
                             batch_size=batch_size, align=align, engine=engine, out=out, progress=progress,
                             min_gap=min_gap, cells=None if cells is None else {what: cells})[what]


@dataclass
class _SweepState:
    sweep: Sweep
    positions: Any
    labels: dict[str, list[str]]
    settings: dict[str, Any]
    ckpt: Checkpoint
    cells: torch.Tensor | None
    raws: list[torch.Tensor]
    cleans: list[torch.Tensor]
    corrupteds: list[torch.Tensor]


def activation_sweeps(
    model: Any,
    task: Task | TokenizedTask,
    whats: tuple[str, ...] | list[str],
    *,
    metric: str = "logit_diff",
    normalize: bool = True,
    direction: str = "denoise",
    batch_size: int | None = None,
    align: str = "auto",
    engine: EngineName = "auto",
    out: str | Path | None = None,
    progress: Progress | None = None,
    min_gap: float = MIN_GAP,
    cells: dict[str, torch.Tensor | None] | None = None,
) -> dict[str, PatchResult]:
    """Several sweeps at once, batch by batch: each batch's clean and corrupted runs are cached once
    for every sweep (one pair of forwards per batch instead of one per sweep). Each sweep equals
    :func:`activation_patching` of it alone, and is checkpointed (and resumed) on its own.
    ``cells`` maps a sweep to its mask (see :func:`activation_patching`)."""
    direction = check_direction(direction)
    metric_obj = get_metric(metric)
    if engine not in ("auto", *ENGINES):
        raise ConfigError(f"Unknown patching engine {engine!r}. Use 'auto', 'cone' or 'hooks'.")
    if batch_size is not None and batch_size < 1:
        raise ConfigError(f"--batch-size must be at least 1, not {batch_size}.")
    whats = tuple(dict.fromkeys(whats))
    # A vocabulary metric reads every logit, kl the clean run's distribution too (computed once here).
    tok = prepared_for(model, tokenized(model, task), metric_obj)
    bs = batch_size or auto_batch_size(model, tok)
    chosen = _choose_engine(model, engine)
    states: dict[str, _SweepState] = {}
    for what in whats:
        sweep = get_sweep(what)
        positions, labels = sweep_axes(model, sweep, tok, align)
        settings = {"what": sweep.name, "direction": direction, "metric": metric_obj.name,
                    "align": None if positions is None else positions.mode, "method": "exact"}
        mask = (cells or {}).get(what)
        if mask is not None:
            mask = _check_cells(mask, [len(v) for v in labels.values()])
            # Part of the checkpoints' key: a resumed sweep never mixes cells patched under another mask.
            settings["cells"] = hashlib.sha256(mask.numpy().tobytes()).hexdigest()[:12]
        states[what] = _SweepState(sweep, positions, labels, settings,
                                   Checkpoint(out, sweep_key(model, tok, settings), settings), mask, [], [], [])
    L = model.cfg.n_layers
    n_batches = (len(tok) + bs - 1) // bs
    total, done = n_batches * L * len(whats), 0
    weights = None

    def tick() -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress(done, total)

    with torch.inference_mode():
        for bi, batch in enumerate(tok.batches(bs)):
            start = bi * bs
            span = f"e{start:06d}-{start + len(batch):06d}"
            saved = {w: (st.ckpt.load(f"{span}-base"),
                         [(st.ckpt.load(f"{span}-l{l:03d}") or {}).get("values") for l in range(L)])
                     for w, st in states.items()}
            todo = [w for w, (base, layers) in saved.items() if base is None or any(v is None for v in layers)]
            sweeper = None
            if todo:
                pair = _pair(model, batch, [states[w].sweep for w in todo], direction, metric_obj.fn, chosen)
                if chosen == "cone" and weights is None:
                    weights = read_weights(model)
                sweeper, chosen = _sweeper(model, pair, metric_obj.fn, chosen, weights)
                for w in todo:
                    base = {"clean": pair.clean_metric, "corrupted": pair.corrupted_metric}
                    states[w].ckpt.save(f"{span}-base", base)
                    saved[w] = (base, saved[w][1])
            for w, st in states.items():
                base, layers = saved[w]
                pos = None if st.positions is None else st.positions.slice(start, start + len(batch)).index
                missing = [l for l in range(L) if layers[l] is None]
                for _ in range(L - len(missing)):
                    tick()
                if missing:
                    assert sweeper is not None
                    # The cone engine reads cached runs and weights only: its layers run on the
                    # engines' workers (models.parallel); the hook engine drives the shared model.
                    # Each layer is saved as it comes, in the caller's thread.
                    device = weights.device if chosen == "cone" and weights is not None else None
                    kept = partial(_keep_layer, st, span, layers, missing, tick)
                    map_pieces(partial(_layer_values, sweeper, st, pos), missing, device, on_done=kept)
                st.raws.append(torch.stack([v.cpu() for v in layers], 1))  # type: ignore[misc]
                st.cleans.append(base["clean"].cpu())
                st.corrupteds.append(base["corrupted"].cpu())
    results = {}
    for w, st in states.items():
        config = {
            **st.settings, "exact_cells": None if st.cells is None else int(st.cells.sum()), "normalize": normalize,
            "engine": chosen, "batch_size": bs, "n_examples": len(tok), "task": tok.task.name,
            "model": str(getattr(model, "circuitwise_name", "?")),
            "pos_tokens": [list(t) for t in tok.str_tokens] if st.positions is not None else None,
        }
        results[w] = PatchResult.build(torch.cat(st.raws, 0).clone(), torch.cat(st.cleans).clone(),
                                       torch.cat(st.corrupteds).clone(), axes=st.sweep.axes, labels=st.labels,
                                       metric=metric_obj.name, normalize=normalize, config=config, min_gap=min_gap)
    return results


def _layer_values(sweeper: Any, st: _SweepState, pos: torch.Tensor | None, l: int) -> torch.Tensor:
    values: torch.Tensor = sweeper.layer_values(st.sweep, l, pos, None if st.cells is None else st.cells[l])
    return values


def _keep_layer(st: _SweepState, span: str, layers: list[torch.Tensor | None], missing: list[int],
                tick: Callable[[], None], i: int, values: torch.Tensor) -> None:
    layers[missing[i]] = values
    st.ckpt.save(f"{span}-l{missing[i]:03d}", {"values": values})
    tick()


def _check_cells(cells: torch.Tensor, shape: list[int]) -> torch.Tensor:
    cells = torch.as_tensor(cells).cpu()
    if cells.dtype != torch.bool or list(cells.shape) != shape:
        raise ConfigError(f"cells must be a boolean mask of the sweep's shape {shape}, not {cells.dtype} "
                          f"{list(cells.shape)}.")
    return cells


def _choose_engine(model: Any, engine: str) -> str:
    if engine == "hooks":
        return "hooks"
    why = supports(model)
    if why is None:
        return "cone"
    if engine == "cone":
        raise ConfigError(f"The cone engine cannot run this model exactly ({why}). Use engine='hooks' or 'auto'.")
    log.info("patching with the hook engine: the cone engine does not implement this model (%s)", why)
    return "hooks"


def _pair(model: Any, batch: TokenizedTask, sweeps: list[Sweep], direction: str, metric: Any, engine: str) -> PairRun:
    base_names: set[str] = set()
    src_names: set[str] = set()
    for sweep in sweeps:  # one cache of both runs serves every sweep
        b, s_ = ENGINES[engine].needed_names(sweep, model.cfg.n_layers)
        base_names |= b
        src_names |= s_
    return cache_pair(model, batch, direction, metric, base_names, src_names)


def _sweeper(model: Any, pair: PairRun, metric: Any, engine: str, weights: Any) -> tuple[Any, str]:
    if engine == "cone":
        sweeper = cone_sweeps.ConeSweeper(model, pair, metric, weights)
        gap = sweeper.self_check()
        if gap <= tolerance(model.W_E.dtype, SELF_CHECK_TOL):
            return sweeper, "cone"
        warnings.warn(CheckFailedWarning(
            f"The cone engine's unpatched metric differs from the model's by {gap:.2g} (relative); "
            "patching with the slower hook engine instead. Please report this model."), stacklevel=3)
    return hooks.HookSweeper(model, pair, metric), "hooks"


__all__ = ["ENGINES", "CheckFailedWarning", "Engine", "EngineName", "activation_patching", "activation_sweeps"]
