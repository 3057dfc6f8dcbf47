"""Time planned from FLOPs: each stage's work in forward passes, and the device's measured rate.

A stage's cost is counted in forward-pass equivalents of its prompts (a backward counts two) and
converted to seconds with the rate of one float matrix product of the model's width, measured
once per process on the model's device and dtype. The numbers are estimates for the plan's table
(within about 2× on the stages of the default run at GPT-2-small shapes, bench/default_run.py); nothing depends on them being exact.
"""

from __future__ import annotations

import time
from functools import lru_cache

import torch

from circuitwise.models.memory import Shapes

# Measured at GPT-2-small shapes, 200 prompts, two cores: the stages' forwards run at about the
# probe's rate (a 256-row product), the cone engine's many smaller products at about half of it.
CONE_EFFICIENCY = 0.45
# Rates the plan's choices use, so that they do not depend on how busy the machine is when it
# plans: a laptop CPU's two cores, a GPU.
NOMINAL_FLOPS = {"cpu": 100e9, "cuda": 20e12, "mps": 2e12}


def nominal_flops(device: str | torch.device) -> float:
    return NOMINAL_FLOPS.get(torch.device(device).type, NOMINAL_FLOPS["cpu"])


def forward_flops(s: Shapes, T: int) -> float:
    """FLOPs of one forward of one prompt of ``T`` tokens (the bridge computes every position's logits)."""
    body = s.n_params - 2 * s.d_vocab * s.d_model
    return 2.0 * T * (max(body, 0) + s.d_vocab * s.d_model) + 4.0 * s.n_layers * T * T * s.d_model


def forwards(stage: str, steps: int = 5) -> float:
    """The stage's work per prompt, in forward passes of that prompt (exact patching counts its cells'
    FLOPs instead: patching.cells)."""
    if stage == "baseline":
        return 2.0  # clean and corrupted
    if stage == "dla":
        return 1.0
    if stage == "attribution":
        return 2.5  # one forward and backward of the clean and corrupted prompts serves every sweep
    if stage == "edges":
        # Sender outputs of both runs, then a forward and a backward per integration point, after the
        # prompts' shared prefix and with the answer columns of the unembedding only (measured: about
        # 6 forwards at 5 steps).
        return 2.0 + 0.8 * steps
    # evaluation: the curve, random circuits and exact checks — about 60 patched runs at the last position.
    return 60.0 / 2.0


def _sync(dev: torch.device) -> None:
    """Wait for ``dev``'s queued work: GPUs run asynchronously, so without it the clock reads when
    the products are queued, not done (on MPS that made the rate, and every time estimate, wrong)."""
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    elif dev.type == "mps":
        torch.mps.synchronize()


@lru_cache(maxsize=None)
def flop_rate(device: str, dtype: torch.dtype, width: int) -> float:
    """FLOP/s of a ``[256, width] × [width, width]`` product on ``device`` in ``dtype`` (measured once)."""
    dev = torch.device(device)
    a = torch.randn(256, width, device=dev).to(dtype)
    b = torch.randn(width, width, device=dev).to(dtype)
    a @ b
    _sync(dev)
    reps, t0 = 0, time.perf_counter()
    while reps < 3 or time.perf_counter() - t0 < 0.05:
        a @ b
        reps += 1
    _sync(dev)
    return 2.0 * 256 * width * width * reps / max(time.perf_counter() - t0, 1e-9)


def seconds(stage: str, s: Shapes, T: int, n_prompts: int, device: str, dtype: torch.dtype, *,
            steps: int = 5, flops: float | None = None) -> float:
    """Estimated seconds of ``stage`` over ``n_prompts`` prompts of ``T`` tokens (or of ``flops`` on the
    cone engine, counted by the stage itself: exact patching's cells)."""
    rate = flop_rate(str(device), dtype, min(s.d_model, 2048))
    if flops is not None:
        return flops / (CONE_EFFICIENCY * rate)
    return forwards(stage, steps) * forward_flops(s, T) * n_prompts / rate


__all__ = ["CONE_EFFICIENCY", "NOMINAL_FLOPS", "flop_rate", "forward_flops", "forwards", "nominal_flops",
           "seconds"]
