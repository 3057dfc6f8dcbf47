"""What activation and attribution patching share: inputs, axes, batch size, progress."""

from __future__ import annotations

from typing import Any, Callable

from circuitwise.errors import TaskError
from circuitwise.models.memory import Stage, batch_for
from circuitwise.patching.positions import Positions, sweep_positions
from circuitwise.patching.sweeps import Sweep
from circuitwise.tasks.task import Task
from circuitwise.tasks.tokenize import TokenizedTask, tokenize_task

Progress = Callable[[int, int], None]
"""Called as ``progress(done, total)`` after each finished unit of a sweep. An exception raised
from it stops the sweep; with a checkpoint folder, what was finished is kept."""


def tokenized(model: Any, task: Task | TokenizedTask) -> TokenizedTask:
    """A task's tensors, with corrupted prompts (patching needs them)."""
    if isinstance(task, TokenizedTask):
        if task.corrupted is None:
            task.task.require_corrupted("Patching")
            raise TaskError("Patching needs corrupted prompts; tokenize the task with need_corrupted=True.")
        return task.to(model.cfg.device)
    task.require_corrupted("Patching")
    tok, _ = tokenize_task(model, task, need_corrupted=True)
    return tok


def sweep_axes(model: Any, sweep: Sweep, tok: TokenizedTask, align: str) -> tuple[Positions | None, dict[str, list[str]]]:
    labels = {"layer": [str(l) for l in range(model.cfg.n_layers)]}
    positions = sweep_positions(tok, align) if sweep.by_pos else None
    if positions is not None:
        labels["pos"] = list(positions.labels)
    if sweep.by_head:
        labels["head"] = head_labels(model, sweep)
    return positions, labels


def head_labels(model: Any, sweep: Sweep) -> list[str]:
    """Query heads; for the key/value sweeps of a grouped-query model, its key/value heads.

    With grouped-query attention ``hook_k``/``hook_v`` hold one head per key/value group, so
    the sweep patches (as TransformerLens's does) each shared head, i.e. every query head of
    its group at once: ``kv{g}`` serves query heads ``g * n_heads / n_kv`` onwards.
    """
    kv = getattr(model.cfg, "n_key_value_heads", None)
    if sweep.act in ("k", "v") and kv and kv != model.cfg.n_heads:
        return [f"kv{g}" for g in range(kv)]
    return [str(h) for h in range(model.cfg.n_heads)]


def auto_batch_size(model: Any, tok: TokenizedTask, stage: Stage = "patching") -> int:
    """Examples per batch so that one batch's cached activations stay around 1 GiB (4 on a GPU), and
    never more than the memory plan lets ``stage`` hold beside the model (``--max-memory``)."""
    cfg = model.cfg
    T = int(tok.clean.shape[1])
    per_example = 4 * T * cfg.n_layers * (12 * cfg.d_model + 2 * cfg.n_heads * T)
    budget = (4 << 30) if str(cfg.device).startswith("cuda") else (1 << 30)
    return batch_for(stage, model, T, int(max(1, min(64, budget // max(per_example, 1)))))


__all__ = ["Progress", "auto_batch_size", "head_labels", "sweep_axes", "tokenized"]
