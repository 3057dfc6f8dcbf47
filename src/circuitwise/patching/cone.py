"""The causal-cone engine: an exact patched run recomputes only what the patch can change.

A patch at (layer L, position p) leaves every position before p and every layer below L as
they were in the unpatched run. So each patched variant starts from the cached residual at
layer L, recomputes positions p… only (earlier positions' keys and values come from the
unpatched run), at the last layer only the query at the answer position, and reads two
unembedding columns instead of the whole vocabulary. Variants with the same (layer, position)
are stacked along the batch. The arithmetic is :mod:`circuitwise.models.kernels` on the
processed weights (every architecture :func:`~circuitwise.models.weights.supports` accepts);
:meth:`Cone.self_check` compares it with the bridge's own forward before a sweep trusts it.
"""

from __future__ import annotations

import torch

from circuitwise.metrics import Targets, as_targets, readout
from circuitwise.models import kernels as K
from circuitwise.models import placement
from circuitwise.models.memory import MAX_ROWS
from circuitwise.models.weights import Weights
from circuitwise.patching.runs import MetricFn

# MAX_ROWS (models.memory) bounds the working set of one stacked call: rows of activations.


class Cone:
    """Patched forwards of one batch, from a cached residual at any layer to the metric.

    ``resid_pre[l]`` ([batch, pos, d_model]) is the unpatched run's; its keys and values
    (``[batch, kv_head, pos, d_head]``, normed and rotated) are read for the positions before a
    variant's first changed one. ``ex`` maps each variant to its example.
    """

    def __init__(self, w: Weights, resid_pre: list[torch.Tensor], last: torch.Tensor,
                 answers: torch.Tensor | Targets, metric: MetricFn):
        self.w, self.last, self.metric = w, last, metric
        T = resid_pre[0].shape[1]
        self.rot = w.rotary(T) if w.rot_dim else None
        self.keys, self.values = [], []
        for l, x in enumerate(resid_pre):
            # Each layer's cached keys and values where the layer runs (models.placement).
            x = placement.move(x, w.device_of(l)) if w.split else x
            lw, h = w.layers[l], K.attn_in(w, l, x)
            k = K.split(K.linear(h, lw.w_k, lw.b_k), w.d_head)
            self.keys.append(K.prep_k(w, l, k, self._rot(l)))
            self.values.append(K.split(K.linear(h, lw.w_v, lw.b_v), w.d_head).transpose(1, 2))
        self.targets = as_targets(answers)  # per example: its answers, and what a vocabulary metric reads

    def _rot(self, l: int, pos: slice | torch.Tensor | None = None):
        if self.rot is None:
            return None
        cos, sin = self.rot[l]
        if pos is None:
            return cos, sin
        if isinstance(pos, slice):
            return cos[pos], sin[pos]
        # One query per variant (the last layer): [V, 1, 1, rot] against [V, head, 1, d_head].
        return cos[pos][:, None, None], sin[pos][:, None, None]

    def finish(self, l: int, resid_pre: torch.Tensor, attn: torch.Tensor) -> torch.Tensor:
        """``resid_post`` of layer ``l`` from its ``resid_pre`` rows and attention's write."""
        return self.on_layer(l, lambda r, a: K.finish(self.w, l, r, a), resid_pre, attn)

    def attn_write(self, l: int, z: torch.Tensor) -> torch.Tensor:
        """What layer ``l``'s attention adds to the residual from ``z`` ``[..., head·d_head]``."""
        return self.on_layer(l, lambda t: K.attn_write(self.w, l, t), z)

    def on_layer(self, l: int, fn, *xs: torch.Tensor) -> torch.Tensor:
        """``fn(*xs)`` on layer ``l``'s device, the result on the first input's (a split model's
        sweeps index their cached runs on the caller's device; models.placement)."""
        dev = self.w.device_of(l)
        if not self.w.split or all(x.device == dev for x in xs):
            return fn(*xs)
        return placement.move(fn(*(placement.move(x, dev) for x in xs)), xs[0].device)

    def metric_at(self, final: torch.Tensor, ex: torch.Tensor) -> torch.Tensor:
        """The metric from final residuals ``[variant, d_model]`` at each variant's answer position
        (on ``ex``'s device, where the caller's values are)."""
        w, home = self.w, ex.device
        if w.split:  # the unembedding's device, then the metric (and its references) on the caller's
            final, ex = placement.move(final, w.unembed_device), placement.move(ex, self.last.device)
        cols = readout(K.final_norm(w, final), w.W_U, w.b_U, self.targets[ex], w.logit_softcap)
        return self.metric(placement.move(cols, home) if w.split else cols)

    def run(self, start: int, p0: int, x: torch.Tensor, ex: torch.Tensor) -> torch.Tensor:
        """Metric of variants whose residual entering block ``start`` is ``x`` at positions ``p0…``.

        ``x`` is ``[variant, pos - p0, d_model]``; positions before ``p0`` are the cached run's.
        """
        return self.run_many(start, [(p0, x, ex)])[0]

    def run_many(self, start: int, groups: list[tuple[int, torch.Tensor, torch.Tensor]]) -> list[torch.Tensor]:
        """:meth:`run` for several groups ``(p0, x, ex)`` at once.

        Everything but attention works row by row, so the rows of all groups go through each
        GEMM together (few rows per group would leave the weights' memory traffic unshared);
        attention runs per group. The caller bounds the total size (see ``MAX_ROWS``).
        """
        w, dh = self.w, self.w.d_head
        x = torch.cat([g[1].reshape(-1, g[1].shape[-1]) for g in groups])  # [rows, d_model]
        dev = x.device
        ex_all = torch.cat([g[2] for g in groups])
        sizes = [len(g[2]) for g in groups]
        offsets, answer_rows, o = [], [], 0
        for p0, xg, eg in groups:
            V, Tc = xg.shape[:2]
            offsets.append(o)
            answer_rows.append(o + torch.arange(V, device=dev) * Tc + (self.last[eg] - p0))
            o += V * Tc
        answers = torch.cat(answer_rows)
        if start >= w.n_layers:
            return list(self.metric_at(x[answers], ex_all).split(sizes))
        here, last = dev, self.last
        for l in range(start, w.n_layers):
            if w.device_of(l) != here:  # a split model: carry the rows and their indices across
                here = w.device_of(l)
                x, answers, last = (placement.move(t, here) for t in (x, answers, last))
                groups = [(p0, xg, placement.move(eg, here)) for p0, xg, eg in groups]
                dev = x.device
            lw = w.layers[l]
            h = K.attn_in(w, l, x)
            final = l == w.n_layers - 1
            nq, nk = w.n_heads * dh, w.n_kv_heads * dh
            if final:  # only the answer positions' outputs reach the metric
                kv = K.linear(h, lw.w_kv, lw.b_kv)
                k_all, v_all = kv[:, :nk], kv[:, nk:]
                q_all = K.linear(h[answers], lw.w_q, lw.b_q)
                x, h = x[answers], h[answers]
            else:
                qkv = K.linear(h, lw.w_qkv, lw.b_qkv)
                q_all, k_all, v_all = qkv[:, :nq], qkv[:, nq:nq + nk], qkv[:, nq + nk:]
            z = torch.empty(x.shape[0], w.n_heads * dh, dtype=x.dtype, device=dev)
            a = 0
            for (p0, xg, eg), og in zip(groups, offsets):
                V, Tc = xg.shape[:2]
                T = p0 + Tc
                k = K.prep_k(w, l, k_all[og:og + V * Tc].reshape(V, Tc, -1, dh), self._rot(l, slice(p0, T)))
                v = v_all[og:og + V * Tc].reshape(V, Tc, -1, dh).transpose(1, 2)
                if p0:
                    k = torch.cat([self.keys[l][:, :, :p0].index_select(0, eg), k], 2)
                    v = torch.cat([self.values[l][:, :, :p0].index_select(0, eg), v], 2)
                if final:
                    q = K.prep_q(w, l, q_all[a:a + V].view(V, 1, -1, dh), self._rot(l, last[eg]))
                    q_pos = last[eg][:, None]
                else:
                    q = K.prep_q(w, l, q_all[og:og + V * Tc].reshape(V, Tc, -1, dh), self._rot(l, slice(p0, T)))
                    q_pos = torch.arange(p0, T, device=dev)
                zg = K.mix(w, K.pattern(w, l, q, k, q_pos), v)  # [V, H, Tq, dh]
                n = V if final else V * Tc
                z[a:a + n] = zg.transpose(1, 2).reshape(n, -1)
                a += n
            x = K.finish(w, l, x, K.attn_write(w, l, z), h)
        return list(self.metric_at(x, ex_all).split(sizes))

    def self_check(self, resid_pre0: torch.Tensor, expected: torch.Tensor) -> float:
        """Largest gap between this engine's unpatched metric and the bridge's (should be ~1e-6)."""
        ex = torch.arange(resid_pre0.shape[0], device=resid_pre0.device)
        got = self.run(0, 0, resid_pre0, ex)
        return float(((got - expected).abs() / (1.0 + expected.abs())).max())


__all__ = ["Cone", "MAX_ROWS"]
