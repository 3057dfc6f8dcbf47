"""MLP activation functions by TransformerLens ``cfg.act_fn`` name.

The fast engines (patching's causal cone, the circuit graph forward) re-run MLPs from processed
weights, so they need the same non-linearity the model uses; one table serves both.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "gelu_new": lambda x: F.gelu(x, approximate="tanh"),
    "gelu_fast": lambda x: F.gelu(x, approximate="tanh"),
    "gelu_pytorch_tanh": lambda x: F.gelu(x, approximate="tanh"),
    "gelu": F.gelu,
    "relu": F.relu,
    "silu": F.silu,
}

__all__ = ["ACTIVATIONS"]
