"""Transcoders: a sparse, wider stand-in for each MLP, read from the MLP's input, written to its output.

One :class:`Transcoder` per layer. A per-layer transcoder writes only its own layer's MLP output; a
cross-layer transcoder (CLT) writes its own and every later layer's (``W_dec`` has one slice per
output layer). ``W_skip`` is an optional linear path from input to output beside the features
(skip transcoders); it is part of the replacement, not of the error.

Activations: ``relu``; ``topk`` (the k largest pre-activations per row kept, then ReLU);
``jumprelu`` (a pre-activation kept where it exceeds its feature's threshold). The input is the
MLP's own input (``site="mlp_in"``: after the pre-MLP norm, what the MLP multiplies) or the residual
stream before that norm (``site="resid_mid"``; circuit-tracer's GPT-2 transcoders read there).

Everything that trains, reads, writes or runs transcoders goes through this one type.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import torch

from circuitwise.errors import TranscoderError

Activation = Literal["relu", "topk", "jumprelu"]
Site = Literal["mlp_in", "resid_mid"]


@dataclass(frozen=True, eq=False)
class Transcoder:
    """Layer ``layer``'s transcoder.

    Shapes: ``W_enc [d_in, n_features]``, ``b_enc [n_features]``; per-layer ``W_dec [n_features,
    d_out]``, ``b_dec [d_out]``; cross-layer ``W_dec [n_features, n_out, d_out]``, ``b_dec [n_out,
    d_out]`` writing layers ``layer … layer + n_out − 1``; ``W_skip [d_in, d_out]`` or None.
    """

    layer: int
    W_enc: torch.Tensor
    b_enc: torch.Tensor
    W_dec: torch.Tensor
    b_dec: torch.Tensor
    activation: Activation = "relu"
    k: int | None = None
    threshold: torch.Tensor | None = None
    W_skip: torch.Tensor | None = None
    site: Site = "mlp_in"
    # Where it came from and how well it does (a card's per-layer numbers); free-form, JSON-safe.
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        d_in, n = self.W_enc.shape
        if self.b_enc.shape != (n,) or self.W_dec.shape[0] != n:
            raise TranscoderError(f"transcoder {self.layer}: W_enc {tuple(self.W_enc.shape)}, b_enc "
                             f"{tuple(self.b_enc.shape)} and W_dec {tuple(self.W_dec.shape)} disagree on the "
                             "number of features; check the file's layout")
        if self.activation == "topk" and not (self.k and self.k > 0):
            raise TranscoderError(f"transcoder {self.layer}: a topk transcoder needs k > 0")
        if self.activation == "jumprelu" and (self.threshold is None or self.threshold.shape != (n,)):
            raise TranscoderError(f"transcoder {self.layer}: a jumprelu transcoder needs one threshold per feature")
        if self.W_skip is not None and self.W_skip.shape != (d_in, self.W_dec.shape[-1]):
            raise TranscoderError(f"transcoder {self.layer}: W_skip is {tuple(self.W_skip.shape)}, expected "
                             f"{(d_in, self.W_dec.shape[-1])}")

    @property
    def n_features(self) -> int:
        return int(self.W_enc.shape[1])

    @property
    def cross_layer(self) -> bool:
        return self.W_dec.dim() == 3

    @property
    def n_out(self) -> int:
        """How many layers it writes: 1 per-layer, ``n_layers − layer`` for a CLT."""
        return int(self.W_dec.shape[1]) if self.cross_layer else 1

    def pre(self, x: torch.Tensor) -> torch.Tensor:
        """Pre-activations ``[..., n_features]``."""
        return x @ self.W_enc + self.b_enc

    def activate(self, pre: torch.Tensor) -> torch.Tensor:
        """The activation function on pre-activations (TopK keeps ties at the k-th value by index)."""
        if self.activation == "jumprelu":
            assert self.threshold is not None  # checked in __post_init__
            return pre * (pre > self.threshold)
        if self.activation == "topk":
            assert self.k is not None
            k = min(self.k, pre.shape[-1])
            vals, idx = pre.topk(k, dim=-1)
            return torch.zeros_like(pre).scatter_(-1, idx, vals.clamp(min=0))
        return pre.clamp(min=0)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Feature activations ``[..., n_features]`` of inputs ``[..., d_in]``."""
        return self.activate(self.pre(x))

    def decode(self, acts: torch.Tensor, out: int = 0) -> torch.Tensor:
        """What the features write to output layer ``layer + out`` (``out`` is 0 for a per-layer one), bias included."""
        if not self.cross_layer:
            if out:
                raise TranscoderError(f"transcoder {self.layer} is per-layer: it writes only its own layer")
            return acts @ self.W_dec + self.b_dec
        return acts @ self.W_dec[:, out] + self.b_dec[out]

    def skip(self, x: torch.Tensor) -> torch.Tensor:
        """The skip path's write (zeros when there is none)."""
        if self.W_skip is None:
            return x.new_zeros(*x.shape[:-1], self.W_dec.shape[-1])
        return x @ self.W_skip

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> Transcoder:
        def mv(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t.to(device=device, dtype=dtype)
        return Transcoder(self.layer, mv(self.W_enc), mv(self.b_enc), mv(self.W_dec), mv(self.b_dec),  # type: ignore[arg-type]
                          self.activation, self.k, mv(self.threshold), mv(self.W_skip), self.site, dict(self.meta))


@dataclass(frozen=True, eq=False)
class TranscoderSet:
    """One transcoder per MLP layer of a model (layers ``0 … n_layers − 1``, all per-layer or all CLT).

    ``model`` names what they were trained on; ``fingerprint`` is that model's
    (:func:`circuitwise.models.fingerprint.fingerprint`) where known, so a set is refused on another model.
    """

    transcoders: tuple[Transcoder, ...]
    model: str = ""
    fingerprint: dict[str, Any] | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        layers = [t.layer for t in self.transcoders]
        if layers != list(range(len(layers))):
            raise TranscoderError(f"transcoders cover layers {layers}; expected one for each layer 0…{len(layers) - 1}")
        if len({t.cross_layer for t in self.transcoders}) > 1:
            raise TranscoderError("a transcoder set is all per-layer or all cross-layer, not a mix")
        n = len(layers)
        for t in self.transcoders:
            if t.cross_layer and t.n_out != n - t.layer:
                raise TranscoderError(f"cross-layer transcoder {t.layer} writes {t.n_out} layers; "
                                      f"expected {n - t.layer}")

    def __len__(self) -> int:
        return len(self.transcoders)

    def __getitem__(self, layer: int) -> Transcoder:
        return self.transcoders[layer]

    @property
    def cross_layer(self) -> bool:
        return bool(self.transcoders) and self.transcoders[0].cross_layer

    @property
    def n_features(self) -> int:
        return sum(t.n_features for t in self.transcoders)

    def mlp_out(self, inputs: list[torch.Tensor], layer: int) -> torch.Tensor:
        """The replacement's MLP output at ``layer``: every writer's decode plus the skip path.

        ``inputs[l]`` is transcoder ``l``'s input (``[..., d_in]``), for ``l ≤ layer``.
        """
        t = self.transcoders[layer]
        out = t.decode(t.encode(inputs[layer])) + t.skip(inputs[layer])
        if self.cross_layer:
            for src in range(layer):
                s = self.transcoders[src]
                # b_dec is per output layer: count it once, from the layer's own transcoder.
                out = out + s.encode(inputs[src]) @ s.W_dec[:, layer - src]
        return out

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> TranscoderSet:
        return TranscoderSet(tuple(t.to(device, dtype) for t in self.transcoders), self.model, self.fingerprint,
                             dict(self.meta))
