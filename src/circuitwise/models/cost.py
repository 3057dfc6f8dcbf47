"""Time planned from FLOPs: each stage's work in forward passes, and the device's measured rate.

A stage's cost is counted in forward-pass equivalents of its prompts (a backward counts two) and
converted to seconds with the rate of one float matrix product of the model's width, measured
once per process on the model's device and dtype. The numbers are estimates for the plan's table
(within about 3× on the stages measured, bench/scale.py); nothing depends on them being exact.
"""

from __future__ import annotations

import time
from functools import lru_cache

import torch

from circuitwise.models.memory import Shapes

# Real stages run at a fraction of a bare matrix product's rate (small operations, hooks, softmax).
EFFICIENCY = 0.35


def forward_flops(s: Shapes, T: int) -> float:
    """FLOPs of one forward of one prompt of ``T`` tokens (the bridge computes every position's logits)."""
    body = s.n_params - 2 * s.d_vocab * s.d_model
    return 2.0 * T * (max(body, 0) + s.d_vocab * s.d_model) + 4.0 * s.n_layers * T * T * s.d_model


def forwards(stage: str, s: Shapes, T: int, *, sweeps: tuple[str, ...] = (), steps: int = 5) -> float:
    """The stage's work per prompt, in forward passes of that prompt."""
    if stage == "baseline":
        return 2.0  # clean and corrupted
    if stage == "dla":
        return 1.0
    if stage == "attribution":
        return 6.0  # a forward and a backward of the clean and the corrupted prompts
    if stage == "patching":
        # Each cell recomputes its causal cone: on average a third of the layers × positions.
        cells = {"resid_pre": s.n_layers * T, "attn_out": s.n_layers * T, "mlp_out": s.n_layers * T,
                 "heads": s.n_layers * s.n_heads, "heads_by_pos": s.n_layers * s.n_heads * T,
                 "head_q": s.n_layers * s.n_heads, "head_k": s.n_layers * s.n_kv_heads,
                 "head_v": s.n_layers * s.n_kv_heads, "head_pattern": s.n_layers * s.n_heads}
        return 2.0 + sum(cells.get(w, s.n_layers * s.n_heads) for w in sweeps) / 3.0
    if stage == "edges":
        # Sender outputs of both runs, then a forward and a backward per integration point; the edge
        # graph's per-head receiver inputs make its forward about twice a plain one.
        return 2.0 + 2.0 * 3.0 * steps
    # evaluation: the curve, random circuits and exact checks — about 60 patched runs at the last position.
    return 60.0 / 2.0


@lru_cache(maxsize=None)
def flop_rate(device: str, dtype: torch.dtype, width: int) -> float:
    """FLOP/s of a ``[256, width] × [width, width]`` product on ``device`` in ``dtype`` (measured once)."""
    dev = torch.device(device)
    a = torch.randn(256, width, device=dev).to(dtype)
    b = torch.randn(width, width, device=dev).to(dtype)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    a @ b
    sync()
    reps, t0 = 0, time.perf_counter()
    while reps < 3 or time.perf_counter() - t0 < 0.05:
        a @ b
        reps += 1
    sync()
    return 2.0 * 256 * width * width * reps / max(time.perf_counter() - t0, 1e-9)


def seconds(stage: str, s: Shapes, T: int, n_prompts: int, device: str, dtype: torch.dtype, **kw) -> float:
    """Estimated seconds of ``stage`` over ``n_prompts`` prompts of ``T`` tokens."""
    rate = EFFICIENCY * flop_rate(str(device), dtype, min(s.d_model, 2048))
    return forwards(stage, s, T, **kw) * forward_flops(s, T) * n_prompts / rate


__all__ = ["EFFICIENCY", "flop_rate", "forward_flops", "forwards", "seconds"]
