"""Random transcoder sets of every kind, for the format and training tests."""

from __future__ import annotations

import torch

from circuitwise.features.transcoder import Activation, Site, Transcoder, TranscoderSet


def random_set(*, n_layers: int = 2, d: int = 8, n: int = 12, activation: Activation = "relu", k: int | None = None,
               skip: bool = False, cross_layer: bool = False, site: Site = "mlp_in", seed: int = 0,
               model: str = "toy") -> TranscoderSet:
    g = torch.Generator().manual_seed(seed)

    def r(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=g)

    out = []
    for l in range(n_layers):
        n_out = n_layers - l
        W_dec = r(n, n_out, d) if cross_layer else r(n, d)
        b_dec = r(n_out, d) if cross_layer else r(d)
        if cross_layer:
            b_dec[1:] = 0  # only each layer's own slot is ever added (TranscoderSet.mlp_out)
        out.append(Transcoder(l, r(d, n), r(n), W_dec, b_dec, activation=activation,
                              k=k if activation == "topk" else None,
                              threshold=r(n).abs() if activation == "jumprelu" else None,
                              W_skip=r(d, d) if skip else None, site=site, meta={"fvu": 0.1 * l}))
    return TranscoderSet(tuple(out), model=model, fingerprint={"n_layers": n_layers, "d_model": d},
                         meta={"card": {"kl": 0.5}})


def outputs(ts: TranscoderSet, x: torch.Tensor) -> list[torch.Tensor]:
    """Every layer's replacement MLP output, all layers reading ``x``."""
    inputs = [x] * len(ts)
    return [ts.mlp_out(inputs, l) for l in range(len(ts))]


def same(a: TranscoderSet, b: TranscoderSet) -> None:
    """The two sets compute the same thing, tensor for tensor."""
    assert len(a) == len(b)
    for s, t in zip(a.transcoders, b.transcoders, strict=True):
        assert (s.activation, s.k, s.site, s.cross_layer) == (t.activation, t.k, t.site, t.cross_layer)
        for name in ("W_enc", "b_enc", "W_dec", "b_dec", "threshold", "W_skip"):
            u, v = getattr(s, name), getattr(t, name)
            assert (u is None) == (v is None), name
            if u is not None:
                torch.testing.assert_close(u, v, rtol=0, atol=0, msg=name)
    x = torch.randn(5, a[0].W_enc.shape[0], generator=torch.Generator().manual_seed(1))
    for u, v in zip(outputs(a, x), outputs(b, x), strict=True):
        torch.testing.assert_close(u, v, rtol=0, atol=0)
