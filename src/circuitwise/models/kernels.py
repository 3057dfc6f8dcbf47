"""The pieces of a forward pass, on :class:`~circuitwise.models.weights.Weights`.

The causal cone and the edge-graph forward both call these; each reads one feature of the
architecture. Layouts: residual rows ``[..., d_model]``; raw projections ``[..., pos, n, d_head]``
(what TransformerLens's ``hook_q``/``hook_k``/``hook_v`` hold); prepared queries and keys
head-major ``[..., n, pos, d_head]``. Grouped keys/values are never repeated: queries are viewed as
``[kv_head, group]`` so each key/value head is read once by its group of query heads.
"""

from __future__ import annotations

import torch

from circuitwise.models import relevance
from circuitwise.models.precision import HALF
from circuitwise.models.weights import Layer, Weights


def linear(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
    """``x @ w + b`` over the last axis (one fused GEMM when there is a bias)."""
    flat = x.reshape(-1, x.shape[-1])
    y = flat @ w if b is None else torch.addmm(b, flat, w)
    return y.view(*x.shape[:-1], w.shape[1])


def split(x: torch.Tensor, d_head: int) -> torch.Tensor:
    """``[..., n·d_head]`` → ``[..., n, d_head]``."""
    return x.view(*x.shape[:-1], -1, d_head)


def rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, w: Weights) -> torch.Tensor:
    """Rotary position embedding on the first ``rot_dim`` dims of head-major ``x`` ``[..., pos, d_head]``.

    ``cos``/``sin`` are ``[pos, rot_dim]`` (or broadcastable). Rotate-half pairs dim i with
    i + rot_dim/2 (NeoX, Llama); adjacent pairs pair 2i with 2i+1 (GPT-J).
    """
    r = w.rot_dim
    xr, rest = (x, None) if r == x.shape[-1] else (x[..., :r], x[..., r:])
    if w.rot_style == "half":
        a, b = xr.chunk(2, dim=-1)
        turned = torch.cat([-b, a], dim=-1)
    else:
        pairs = xr.unflatten(-1, (-1, 2))
        turned = torch.stack([-pairs[..., 1], pairs[..., 0]], dim=-1).flatten(-2)
    out = xr * cos + turned * sin
    return out if rest is None else torch.cat([out, rest], dim=-1)


def _qk(norm, per_head: bool, x: torch.Tensor) -> torch.Tensor:
    if norm is None:
        return x
    return norm(x) if per_head else norm(x.flatten(-2)).view_as(x)


def prep_q(w: Weights, l: int, q: torch.Tensor, rot: tuple[torch.Tensor, torch.Tensor] | None,
           norm: bool = True) -> torch.Tensor:
    """Raw queries ``[..., pos, head, d_head]`` → normed (unless ``norm=False``: done already), rotated,
    scaled, head-major."""
    lw = w.layers[l]
    q = (_qk(lw.q_norm, lw.qk_norm_per_head, q) if norm else q).transpose(-2, -3)
    if w.rot_dim and rot is not None:
        q = rotate(q, rot[0], rot[1], w)
    return q * lw.scale


def prep_k(w: Weights, l: int, k: torch.Tensor, rot: tuple[torch.Tensor, torch.Tensor] | None,
           norm: bool = True) -> torch.Tensor:
    """Raw keys ``[..., pos, kv_head, d_head]`` → normed (unless ``norm=False``), rotated, head-major."""
    lw = w.layers[l]
    k = (_qk(lw.k_norm, lw.qk_norm_per_head, k) if norm else k).transpose(-2, -3)
    if w.rot_dim and rot is not None:
        k = rotate(k, rot[0], rot[1], w)
    return k


def allowed(lw: Layer, q_pos: torch.Tensor, n_keys: int) -> torch.Tensor:
    """Which keys each query may read: causal, and within the sliding window. ``[..., q, key]``."""
    k_pos = torch.arange(n_keys, device=q_pos.device)
    ok = k_pos <= q_pos[..., None]
    if lw.window is not None:
        ok &= (q_pos[..., None] - k_pos) < lw.window
    return ok


def pattern(w: Weights, l: int, q: torch.Tensor, k: torch.Tensor, q_pos: torch.Tensor,
            group: int | None = None) -> torch.Tensor:
    """Attention pattern ``[B, head, q, key]`` of prepared ``q`` ``[B, H, q, dh]``, ``k`` ``[B, Hkv, key, dh]``.

    ``q_pos`` gives each query's position: ``[q]`` or ``[B, q]``. ``group=1`` when ``k`` is
    already one key head per query head.
    """
    lw = w.layers[l]
    B, H, Tq, dh = q.shape
    g = w.group if group is None else group
    scores = q.view(B, -1, g, Tq, dh) @ k.unsqueeze(2).transpose(-1, -2)  # [B, Hkv, g, q, key]
    if lw.softcap is not None:
        scores = torch.tanh(scores / lw.softcap) * lw.softcap
    ok = allowed(lw, q_pos, k.shape[-2])
    ok = ok[:, None, None] if ok.dim() == 3 else ok
    scores = scores.masked_fill(~ok, float("-inf"))
    # The softmax's normaliser is a sum over keys: float32 in half precision (as Hugging Face does).
    probs = scores.softmax(-1, dtype=torch.float32).to(q.dtype) if q.dtype in HALF else scores.softmax(-1)
    return relevance.pattern(probs).view(B, H, Tq, -1)


def mix(w: Weights, p: torch.Tensor, v: torch.Tensor, group: int | None = None) -> torch.Tensor:
    """``z = pattern @ v`` with grouped values: ``[B, H, q, key]`` × ``[B, Hkv, key, dh]`` → ``[B, H, q, dh]``."""
    B, H, Tq, Tk = p.shape
    g = w.group if group is None else group
    return (p.view(B, -1, g, Tq, Tk) @ v.unsqueeze(2)).view(B, H, Tq, -1)


def attn_write(w: Weights, l: int, z: torch.Tensor) -> torch.Tensor:
    """What attention adds to the residual from ``z`` ``[..., head·d_head]``: ``W_O``, ``b_O``, post-norm."""
    lw = w.layers[l]
    out = linear(z, lw.w_o, lw.b_o)
    return out if lw.post_attn is None else lw.post_attn(out)


def mlp_write(w: Weights, l: int, x: torch.Tensor) -> torch.Tensor:
    """What the MLP adds to the residual, from its normed input ``x``."""
    lw = w.layers[l]
    # relevance.*: identity under relevance patching's rules, the plain kernel otherwise.
    if lw.w_gate is None:
        pre = linear(x, lw.w_in, lw.b_in)
        hidden = relevance.activation(pre, w.act(pre))
    else:
        pre = linear(x, lw.w_gate, lw.b_gate)
        hidden = relevance.gate(relevance.activation(pre, w.act(pre)) * linear(x, lw.w_in, lw.b_in))
    out = linear(hidden, lw.w_out, lw.b_out)
    return out if lw.post_mlp is None else lw.post_mlp(out)


def attn_in(w: Weights, l: int, resid: torch.Tensor) -> torch.Tensor:
    ln = w.layers[l].ln1
    return resid if ln is None else ln(resid)


def mlp_in(w: Weights, l: int, resid_pre: torch.Tensor, resid_mid: torch.Tensor,
           h1: torch.Tensor | None = None) -> torch.Tensor:
    """The MLP's normed input: from resid_mid (sequential) or resid_pre (parallel blocks)."""
    lw = w.layers[l]
    if lw.mlp_reads_ln1:
        return h1 if h1 is not None else attn_in(w, l, resid_pre)
    src = resid_pre if lw.parallel else resid_mid
    return src if lw.ln2 is None else lw.ln2(src)


def finish(w: Weights, l: int, resid_pre: torch.Tensor, attn: torch.Tensor,
           h1: torch.Tensor | None = None) -> torch.Tensor:
    """``resid_post`` of layer ``l`` from its ``resid_pre`` and attention's write."""
    mid = resid_pre + attn
    return mid + mlp_write(w, l, mlp_in(w, l, resid_pre, mid, h1))


def final_norm(w: Weights, final: torch.Tensor) -> torch.Tensor:
    """The final norm of residuals ``[n, d]``: what the unembedding reads (metrics.readout)."""
    return final if w.ln_final is None else w.ln_final(final)


__all__ = ["allowed", "final_norm", "attn_in", "attn_write", "finish", "linear", "mix", "mlp_in",
           "mlp_write", "pattern", "prep_k", "prep_q", "rotate", "split"]
