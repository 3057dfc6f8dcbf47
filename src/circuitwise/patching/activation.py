"""activation_patching(): exact patching sweeps, batched, checkpointed and fast.

The work is split into units — one layer of one batch of examples — each computed by an
engine (``cone``: the causal-cone recomputation; ``hooks``: TransformerLens's hook, stacked),
saved to the checkpoint folder when one is given, and reported to ``progress``.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Literal

import torch

from circuitwise.errors import ConfigError
from circuitwise.metrics import get_metric
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

    Returns:
        A :class:`PatchResult` with ``values`` in TransformerLens's axis order.
    """
    sweep = get_sweep(what)
    direction = check_direction(direction)
    metric_obj = get_metric(metric)
    if engine not in ("auto", *ENGINES):
        raise ConfigError(f"Unknown patching engine {engine!r}. Use 'auto', 'cone' or 'hooks'.")
    if batch_size is not None and batch_size < 1:
        raise ConfigError(f"--batch-size must be at least 1, not {batch_size}.")
    tok = tokenized(model, task)
    positions, labels = sweep_axes(model, sweep, tok, align)
    bs = batch_size or auto_batch_size(model, tok)
    chosen = _choose_engine(model, engine)
    settings = {"what": sweep.name, "direction": direction, "metric": metric_obj.name,
                "align": None if positions is None else positions.mode, "method": "exact"}
    ckpt = Checkpoint(out, sweep_key(model, tok, settings), settings)
    L = model.cfg.n_layers
    n_batches = (len(tok) + bs - 1) // bs
    total, done = n_batches * L, 0
    raws, cleans, corrupteds = [], [], []
    weights = None
    with torch.inference_mode():
        for bi, batch in enumerate(tok.batches(bs)):
            start = bi * bs
            span = f"e{start:06d}-{start + len(batch):06d}"
            pos = None if positions is None else positions.slice(start, start + len(batch)).index
            base = ckpt.load(f"{span}-base")
            layers: list[torch.Tensor | None] = [
                (ckpt.load(f"{span}-l{l:03d}") or {}).get("values") for l in range(L)]
            sweeper = None
            if base is None or any(v is None for v in layers):
                pair = _pair(model, batch, sweep, direction, metric_obj.fn, chosen)
                base = {"clean": pair.clean_metric, "corrupted": pair.corrupted_metric}
                ckpt.save(f"{span}-base", base)
                if chosen == "cone" and weights is None:
                    weights = read_weights(model)
                sweeper, chosen = _sweeper(model, pair, metric_obj.fn, chosen, weights)
            for l in range(L):
                if layers[l] is None:
                    assert sweeper is not None
                    layers[l] = sweeper.layer_values(sweep, l, pos)
                    ckpt.save(f"{span}-l{l:03d}", {"values": layers[l]})
                done += 1
                if progress is not None:
                    progress(done, total)
            raws.append(torch.stack([v.cpu() for v in layers], 1))  # type: ignore[misc]
            cleans.append(base["clean"].cpu())
            corrupteds.append(base["corrupted"].cpu())
    raw = torch.cat(raws, 0).clone()
    config = {
        **settings, "normalize": normalize, "engine": chosen, "batch_size": bs, "n_examples": len(tok),
        "task": tok.task.name, "model": str(getattr(model, "circuitwise_name", "?")),
        "pos_tokens": [list(t) for t in tok.str_tokens] if positions is not None else None,
    }
    return PatchResult.build(raw, torch.cat(cleans).clone(), torch.cat(corrupteds).clone(),
                             axes=sweep.axes, labels=labels, metric=metric_obj.name,
                             normalize=normalize, config=config, min_gap=min_gap)


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


def _pair(model: Any, batch: TokenizedTask, sweep: Sweep, direction: str, metric: Any, engine: str) -> PairRun:
    base_names, src_names = ENGINES[engine].needed_names(sweep, model.cfg.n_layers)
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


__all__ = ["ENGINES", "CheckFailedWarning", "Engine", "EngineName", "activation_patching"]
