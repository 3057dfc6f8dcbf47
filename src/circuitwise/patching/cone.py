"""The causal-cone engine: an exact patched run recomputes only what the patch can change.

A patch at (layer L, position p) leaves every position before p and every layer below L as
they were in the unpatched run. So each patched variant starts from the cached residual at
layer L, recomputes positions p… only (earlier positions' keys and values come from the cache),
at the last layer only the query at the answer position, and reads two unembedding columns
instead of the whole vocabulary. Variants with the same (layer, position) are stacked along the
batch. The arithmetic is TransformerLens's (processed weights ``W_Q … W_U`` in its
conventions); :meth:`Cone.self_check` compares it with the bridge's own forward before a sweep
trusts it, and :func:`unsupported_reason` keeps architectures it does not implement (rotary,
parallel blocks, gated MLPs, grouped keys …) on the hook engine.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.nn.functional as F

from circuitwise.models.activations import ACTIVATIONS

from circuitwise.patching.runs import MetricFn


# Bound the working set of one stacked call: rows of activations, and attention-score entries.
MAX_ROWS = 4096
MAX_SCORES = 1 << 24


def unsupported_reason(model: Any) -> str | None:
    """Why the cone engine cannot run ``model`` exactly, or None when it can."""
    cfg = model.cfg
    checks = [
        (cfg.positional_embedding_type == "standard", "positional embedding is not learned-absolute"),
        (getattr(cfg, "normalization_type", None) in ("LN", "LNPre"), "normalization is not LayerNorm"),
        (not getattr(cfg, "parallel_attn_mlp", False), "attention and MLP run in parallel"),
        (not getattr(cfg, "attn_only", False), "the model is attention-only"),
        (not getattr(cfg, "gated_mlp", False), "the MLP is gated"),
        (getattr(cfg, "n_key_value_heads", None) in (None, cfg.n_heads), "keys and values are grouped"),
        (getattr(cfg, "act_fn", None) in ACTIVATIONS, f"activation {getattr(cfg, 'act_fn', None)!r}"),
        (not getattr(cfg, "use_local_attn", False), "local attention"),
        ((getattr(cfg, "attn_scores_soft_cap", -1.0) or -1.0) <= 0, "attention soft cap"),
        ((getattr(cfg, "output_logits_soft_cap", -1.0) or -1.0) <= 0, "logit soft cap"),
        (not getattr(cfg, "use_qk_norm", False), "query/key norm"),
        (not getattr(cfg, "use_normalization_before_and_after", False), "sandwich norm"),
        (not getattr(cfg, "scale_attn_by_inverse_layer_idx", False), "attention scaled by layer"),
        (getattr(cfg, "attention_dir", "causal") == "causal", "attention is not causal"),
        (not getattr(cfg, "use_split_qkv_input", False), "split q/k/v inputs are on"),
        (not getattr(cfg, "use_attn_in", False), "per-head attention inputs are on"),
        (all(hasattr(model, n) for n in ("W_Q", "W_K", "W_V", "W_O", "W_in", "W_out", "W_U")),
         "the bridge does not expose TransformerLens weights"),
    ]
    for ok, why in checks:
        if not ok:
            return why
    for block in model.blocks:
        for ln in (block.ln1, block.ln2):
            if _ln_params(ln, cfg) is None:
                return "a block's LayerNorm is not a plain LayerNorm"
    if _ln_params(model.ln_final, cfg) is None:
        return "the final LayerNorm is not a plain LayerNorm"
    return None


def _ln_params(bridge: Any, cfg: Any) -> tuple[torch.Tensor | None, torch.Tensor | None, float] | None:
    comp = getattr(bridge, "original_component", None)
    if isinstance(comp, torch.nn.LayerNorm):
        return comp.weight, comp.bias, float(comp.eps)
    if type(bridge).__name__ == "LayerNormPreBridge":
        return None, None, float(getattr(cfg, "eps", 1e-5))
    return None


@dataclass(frozen=True)
class ConeWeights:
    n_layers: int
    n_heads: int
    d_head: int
    w_qkv: list[torch.Tensor]  # per layer [d_model, 3 * n_heads * d_head]; queries pre-scaled
    b_qkv: list[torch.Tensor]
    w_q: list[torch.Tensor]
    b_q: list[torch.Tensor]
    w_kv: list[torch.Tensor]
    b_kv: list[torch.Tensor]
    w_o: list[torch.Tensor]  # [n_heads * d_head, d_model]
    b_o: list[torch.Tensor]
    w_in: list[torch.Tensor]
    b_in: list[torch.Tensor]
    w_out: list[torch.Tensor]
    b_out: list[torch.Tensor]
    ln1: list[tuple]
    ln2: list[tuple]
    ln_f: tuple
    W_U: torch.Tensor
    b_U: torch.Tensor | None
    act: Callable[[torch.Tensor], torch.Tensor]
    scale: float

    @classmethod
    def from_model(cls, model: Any) -> "ConeWeights":
        cfg = model.cfg
        L, H, dh = cfg.n_layers, cfg.n_heads, cfg.d_head
        # The bridge builds each stacked weight on every access (W_in: ~0.1 s): read each once.
        W = {n: getattr(model, n) for n in ("W_Q", "W_K", "W_V", "b_Q", "b_K", "b_V", "W_O", "b_O",
                                            "W_in", "b_in", "W_out", "b_out")}
        flat = lambda t: t.permute(1, 0, 2).reshape(t.shape[1], -1)  # noqa: E731  [H,d,dh] -> [d,H*dh]
        scale = getattr(cfg, "attn_scale", -1.0)
        scale = 1.0 / (scale if scale and scale > 0 else math.sqrt(dh)) if getattr(cfg, "use_attn_scale", True) else 1.0
        # Scores are q·k · scale; scaling the query weights instead saves a pass over the scores.
        w_q = [(flat(W["W_Q"][l]) * scale).contiguous() for l in range(L)]
        b_q = [W["b_Q"][l].reshape(-1) * scale for l in range(L)]
        w_kv = [torch.cat([flat(W["W_K"][l]), flat(W["W_V"][l])], 1).contiguous() for l in range(L)]
        b_kv = [torch.cat([W["b_K"][l].reshape(-1), W["b_V"][l].reshape(-1)]) for l in range(L)]
        return cls(
            n_layers=L, n_heads=H, d_head=dh,
            w_qkv=[torch.cat([a, b], 1) for a, b in zip(w_q, w_kv)],
            b_qkv=[torch.cat([a, b]) for a, b in zip(b_q, b_kv)],
            w_q=w_q, b_q=b_q, w_kv=w_kv, b_kv=b_kv,
            w_o=[W["W_O"][l].reshape(H * dh, -1).contiguous() for l in range(L)],
            b_o=[W["b_O"][l] for l in range(L)],
            w_in=[W["W_in"][l].contiguous() for l in range(L)], b_in=[W["b_in"][l] for l in range(L)],
            w_out=[W["W_out"][l].contiguous() for l in range(L)], b_out=[W["b_out"][l] for l in range(L)],
            ln1=[_ln_params(b.ln1, cfg) for b in model.blocks],
            ln2=[_ln_params(b.ln2, cfg) for b in model.blocks],
            ln_f=_ln_params(model.ln_final, cfg),
            W_U=model.W_U, b_U=getattr(model, "b_U", None),
            act=ACTIVATIONS[cfg.act_fn], scale=scale,
        )


def _linear(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``x @ w + b`` over the last axis as one fused GEMM."""
    return torch.addmm(b, x.reshape(-1, x.shape[-1]), w).view(*x.shape[:-1], w.shape[1])


def _ln(x: torch.Tensor, p: tuple) -> torch.Tensor:
    w, b, eps = p
    return F.layer_norm(x, (x.shape[-1],), w, b, eps)


class Cone:
    """Patched forwards of one batch, from a cached residual at any layer to the metric.

    ``keys[l]``/``values[l]`` ([batch, head, pos, d_head]) are the unpatched run's, read for the
    positions before a variant's first changed one; ``ex`` maps each variant to its example.
    """

    def __init__(self, w: ConeWeights, keys: list[torch.Tensor], values: list[torch.Tensor],
                 last: torch.Tensor, answers: torch.Tensor, metric: MetricFn):
        self.w, self.keys, self.values, self.last, self.metric = w, keys, values, last, metric
        self.U = w.W_U.T[answers]  # [batch, 2, d_model]: only the columns the metric reads
        self.bU = None if w.b_U is None else w.b_U[answers]

    def mlp_block(self, l: int, mid: torch.Tensor) -> torch.Tensor:
        """``resid_mid -> resid_post`` of layer ``l``, row-wise."""
        w = self.w
        return _linear(w.act(_linear(_ln(mid, w.ln2[l]), w.w_in[l], w.b_in[l])), w.w_out[l], w.b_out[l]).add_(mid)

    def metric_at(self, final: torch.Tensor, ex: torch.Tensor) -> torch.Tensor:
        """The metric from final residuals ``[variant, d_model]`` at each variant's answer position."""
        xn = _ln(final, self.w.ln_f)
        logits = torch.einsum("vd,vkd->vk", xn, self.U[ex])
        if self.bU is not None:
            logits = logits + self.bU[ex]
        return self.metric(logits)

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
        w, H, dh = self.w, self.w.n_heads, self.w.d_head
        x = torch.cat([g[1].reshape(-1, g[1].shape[-1]) for g in groups])  # [rows, d_model]
        dev = x.device
        ex_all = torch.cat([g[2] for g in groups])
        offsets, answer_rows, o = [], [], 0
        for p0, xg, eg in groups:
            V, Tc = xg.shape[:2]
            offsets.append(o)
            answer_rows.append(o + torch.arange(V, device=dev) * Tc + (self.last[eg] - p0))
            o += V * Tc
        answers = torch.cat(answer_rows)
        if start >= w.n_layers:
            return list(self.metric_at(x[answers], ex_all).split([len(g[2]) for g in groups]))
        for l in range(start, w.n_layers):
            h = _ln(x, w.ln1[l])
            final = l == w.n_layers - 1
            if final:  # only the answer positions' outputs reach the metric
                kv = _linear(h, w.w_kv[l], w.b_kv[l])
                q_ans = _linear(h[answers], w.w_q[l], w.b_q[l])
                x = x[answers]
            else:
                qkv = _linear(h, w.w_qkv[l], w.b_qkv[l])
            z = torch.empty(x.shape[0], H * dh, dtype=x.dtype, device=dev)
            a = 0
            for (p0, xg, eg), og in zip(groups, offsets):
                V, Tc = xg.shape[:2]
                T = p0 + Tc
                k_pos = torch.arange(T, device=dev)
                if final:
                    k, v = kv[og:og + V * Tc].view(V, Tc, 2, H, dh).permute(2, 0, 3, 1, 4)
                    q = q_ans[a:a + V].view(V, H, 1, dh)
                    masked = (k_pos[None, :] > self.last[eg][:, None])[:, None, None]  # [V, 1, 1, T]
                else:
                    q, k, v = qkv[og:og + V * Tc].view(V, Tc, 3, H, dh).permute(2, 0, 3, 1, 4)
                    masked = k_pos[None, :] > torch.arange(p0, T, device=dev)[:, None]  # [Tc, T]
                if p0:
                    k = torch.cat([self.keys[l][:, :, :p0].index_select(0, eg), k], 2)
                    v = torch.cat([self.values[l][:, :, :p0].index_select(0, eg), v], 2)
                scores = (q @ k.transpose(-1, -2)).masked_fill_(masked, float("-inf"))  # w_q carries the scale
                zg = torch.softmax(scores, -1) @ v  # [V, H, Tq, dh]
                n = V if final else V * Tc
                z[a:a + n] = zg.transpose(1, 2).reshape(n, H * dh)
                a += n
            x = self.mlp_block(l, _linear(z, w.w_o[l], w.b_o[l]).add_(x))
        return list(self.metric_at(x, ex_all).split([len(g[2]) for g in groups]))

    def self_check(self, resid_pre0: torch.Tensor, expected: torch.Tensor) -> float:
        """Largest gap between this engine's unpatched metric and the bridge's (should be ~1e-6)."""
        ex = torch.arange(resid_pre0.shape[0], device=resid_pre0.device)
        got = self.run(0, 0, resid_pre0, ex)
        return float(((got - expected).abs() / (1.0 + expected.abs())).max())


__all__ = ["Cone", "ConeWeights", "MAX_ROWS", "MAX_SCORES", "unsupported_reason"]
