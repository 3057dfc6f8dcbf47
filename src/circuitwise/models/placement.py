"""Where each block of a model runs, and the one function that moves activations between devices.

A model split with ``device_map`` keeps each block's weights on its own device (accelerate
places them). TransformerLens 4.3's stacked ``W_Q``… gather every block onto the embedding's
device, so :mod:`circuitwise.models.weights` reads each block's own parameters instead and
records the device table here: block ``l`` runs on ``devices[l]``, the final norm and the
unembedding on ``out_device``. The engines walk the blocks in order and, where a block's device
differs from the one before it (or from their input's), carry what they hold across with
:func:`move` — the only place an engine moves an activation, so a test can watch every move.
On one device the table's entries are all equal and nothing is moved or copied.
"""

from __future__ import annotations

from typing import Any

import torch


def move(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    """``t`` on ``device``: the tensor itself when it is there already (no copy)."""
    return t if t.device == device else t.to(device)


def move_opt(t: torch.Tensor | None, device: torch.device) -> torch.Tensor | None:
    """:func:`move`, passing None through."""
    return None if t is None else move(t, device)


def cache_device(model: Any) -> torch.device | None:
    """Where a split model's hook caches go (``run_with_cache(device=…)``): the embedding's device,
    where the tokens and the callers' sums are. None on one device (TransformerLens leaves them)."""
    params = getattr(model, "parameters", None)
    if not callable(params) or len({p.device for p in params()}) <= 1:
        return None
    return torch.device(model.cfg.device)


__all__ = ["cache_device", "move", "move_opt"]
