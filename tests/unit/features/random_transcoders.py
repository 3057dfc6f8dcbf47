"""Random transcoder sets for graph tests (until trained ones exist): TopK with skip, JumpReLU, cross-layer."""

from __future__ import annotations

from typing import Literal

import torch

from circuitwise.features.transcoder import Transcoder, TranscoderSet

Kind = Literal["topk_skip", "jumprelu", "clt", "relu"]


def random_set(model, kind: Kind = "topk_skip", n_features: int = 24, seed: int = 0,
               site: str = "mlp_in") -> TranscoderSet:
    g = torch.Generator().manual_seed(seed)
    L, d = model.cfg.n_layers, model.cfg.d_model
    out = []
    for l in range(L):
        r = lambda *s: torch.randn(*s, generator=g)  # noqa: E731
        W_enc = r(d, n_features) / d ** 0.5
        b_enc = 0.1 * r(n_features)
        n_out = L - l if kind == "clt" else None
        W_dec = (r(n_features, n_out, d) if n_out else r(n_features, d)) / n_features ** 0.5
        b_dec = 0.1 * (r(n_out, d) if n_out else r(d))
        kw: dict = {}
        if kind == "topk_skip":
            kw = dict(activation="topk", k=6, W_skip=r(d, d) / d)
        elif kind == "jumprelu":
            kw = dict(activation="jumprelu", threshold=0.2 * torch.rand(n_features, generator=g))
        out.append(Transcoder(l, W_enc, b_enc, W_dec, b_dec, site=site, **kw))  # type: ignore[arg-type]
    return TranscoderSet(tuple(out), model="test")
