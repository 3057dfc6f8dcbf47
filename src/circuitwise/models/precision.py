"""What half precision may cost: the one home of the tolerances that depend on the compute dtype.

Two implementations of the same forward (the fast engines and the bridge's own) round differently;
in float32 they agree to ~1e-6, in bfloat16 (8 bits of mantissa, eps 2^-7) to about a percent of a
logit difference. Checks that compare them scale with the dtype's eps, never with a magic number
per call site. The bounds on results (bf16 against float32, per quantity) are in the README's
"Precision" table and tested in tests/unit/models/test_precision.py.
"""

from __future__ import annotations

import torch

HALF = (torch.bfloat16, torch.float16)


def is_half(dtype: torch.dtype) -> bool:
    return dtype in HALF


# Two half-precision forwards of one model differ by their rounding, which grows with depth and
# width (in bfloat16, relative to the logit difference: 3 eps at 4 layers × 256 wide, 1.2 eps at
# GPT-2-small shapes, 7.5 eps at Qwen2.5-0.5B's 24 layers); an engine that computes something else
# is off by far more. The engines' self-checks allow this many eps in half precision.
CHECK_EPS_FACTOR = 32.0


def tolerance(dtype: torch.dtype, float32_tol: float, eps_factor: float = CHECK_EPS_FACTOR) -> float:
    """``float32_tol`` in float32 (and float64); in half precision at least ``eps_factor`` × the dtype's eps."""
    if not is_half(dtype):
        return float32_tol
    return max(float32_tol, eps_factor * torch.finfo(dtype).eps)


# Bounds on results in half precision against float32 (README, "Precision"; tested on every family).
# Values in logits: within max(4, n_layers) eps (1 + max |logit difference|). Rounding accumulates
# with every block's residual write, so the bound grows with depth: measured ≤ 0.8 eps on the 2-layer
# family fixtures, 2.1 eps at GPT-2-small shapes (12 layers), 10.2 eps per prompt at Qwen2.5-0.5B's
# shapes with 12 layers (TransformerLens's own bf16 hook patching gives the same values to the bit).
VALUE_EPS_FACTOR = 4.0
VALUE_EPS_PER_LAYER = 1.0
TOP_EDGES_SHARED = 0.8  # of the top 10 edges by |score|, at least 8 shared; measured 9–10


def value_bound(dtype: torch.dtype, scale: float, n_layers: int = 0) -> float:
    """How far a value in logits (logit difference, DLA, patched metric) of an ``n_layers`` model may move
    from float32 in ``dtype``."""
    if not is_half(dtype):
        return 1e-4 * (1.0 + scale)
    factor = max(VALUE_EPS_FACTOR, VALUE_EPS_PER_LAYER * n_layers)
    return factor * torch.finfo(dtype).eps * (1.0 + scale)


def wide_dtype(device: torch.device | str) -> torch.dtype:
    """The widest float a device computes in: float64, except on Apple's MPS, which has none (float32)."""
    return torch.float32 if torch.device(device).type == "mps" else torch.float64


__all__ = ["CHECK_EPS_FACTOR", "HALF", "TOP_EDGES_SHARED", "VALUE_EPS_FACTOR", "is_half", "tolerance", "value_bound",
           "wide_dtype"]
