"""The replacement model: transcoders in the MLPs' place, frozen at one clean run, linear in its nodes.

Built on the package's one engine (:mod:`circuitwise.models.weights` / :mod:`~circuitwise.models.kernels`,
tested equal to the bridge on every family it supports), where freezing is explicit rather than a
hook edit that a bridge may drop (OPT, GPT-Neo and GPT-J drop edits at ``hook_pattern``).

:func:`clean_run` runs the model once and keeps what the replacement freezes: every attention
pattern, every norm's scale (LayerNorm's centring stays: it is linear), the transcoders' inputs,
the true MLP outputs, and the feature activations. :func:`frozen_forward` is then a linear map of
its sources: the embedding at each position, and what is written at each layer's MLP output (the
transcoders' decoded features, their decoder bias and the error node; the skip path is part of the
map). Attention keys and queries never appear: the patterns are constants. Post-norms (Gemma 2/3,
OLMo 2) are frozen at their clean scale, so the map covers every architecture the engine does.

Conventions:
- An MLP's output is what the MLP module returns, before any post-norm: transcoders write there.
- The transcoder input is the MLP's normed input (``site="mlp_in"``) or the residual stream
  before the pre-MLP norm (``"resid_mid"``; for parallel blocks that is the block's input).
- Targets read the final normed residual before the unembedding's soft-cap, if any.
- BOS: where the prompt starts with the model's BOS token its features are not nodes (they are
  dense and read a residual no prompt changes); that position's error node carries the whole MLP
  output less the skip path and the decoder bias (the bias, at every position, is no node: it is in
  each receiver's bias-only value).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from circuitwise.errors import ConfigError, TranscoderError
from circuitwise.features.transcoder import TranscoderSet
from circuitwise.models import kernels as K
from circuitwise.models.weights import Norm, Weights, read_weights, supports


@dataclass(frozen=True, eq=False)
class CleanRun:
    """One prompt's clean run: what the replacement freezes, and its node values.

    Per layer ``l``: ``patterns[l]`` ``[H, T, T]``; norm scales ``[T, 1]`` (None where the layer
    has no such norm); ``tc_in[l]`` the transcoder's input ``[T, d]``; ``mlp_out[l]`` the true MLP
    output ``[T, d]``; ``acts[l]`` the feature activations ``[T, n_features]`` (zero at BOS).
    ``writes[l]`` is the replacement's write at layer ``l`` less the skip path (decoded features
    of every writer, the decoder bias); ``errors[l] = mlp_out[l] − writes[l] − skip``.
    """

    w: Weights
    tokens: torch.Tensor  # [T]
    embed: torch.Tensor  # [T, d] blocks.0.hook_resid_pre
    patterns: list[torch.Tensor]
    s_ln1: list[torch.Tensor | None]
    s_ln2: list[torch.Tensor | None]
    s_post_attn: list[torch.Tensor | None]
    s_post_mlp: list[torch.Tensor | None]
    s_final: torch.Tensor | None
    tc_in: list[torch.Tensor]
    mlp_out: list[torch.Tensor]
    acts: list[torch.Tensor]
    writes: list[torch.Tensor]
    errors: list[torch.Tensor]
    final: torch.Tensor  # [T, d] the final normed residual
    logits: torch.Tensor  # [T, vocab] the model's logits (after any soft-cap)
    bos: bool


def compute_dtype(model: Any) -> torch.dtype:
    """float32 for half-precision models (graphs are sums of many small terms), else the model's."""
    dt = model.W_E.dtype
    return torch.float32 if dt in (torch.float16, torch.bfloat16) else dt


def check_model(model: Any, transcoders: TranscoderSet) -> Weights:
    """The engine's weights for ``model``, or a clear refusal (before any work)."""
    why = supports(model)
    if why is not None:
        raise ConfigError(f"attribution graphs run on circuitwise's engine, which does not support this model: "
                          f"{why}. Use a model family the engine covers")
    w = read_weights(model, compute_dtype(model))
    if w.split:
        # The patching and circuit engines follow a split model's blocks; the replacement model's
        # frozen-attention walks do not yet (they keep every layer's state on one device).
        raise ConfigError("attribution graphs run on one device, and this model is split over "
                          f"{', '.join(sorted({str(d) for d in (*w.devices, w.unembed_device)}))}. "
                          "Load it with --device instead of --device-map")
    if len(transcoders) != w.n_layers:
        raise TranscoderError(f"the transcoder set has {len(transcoders)} layers, the model {w.n_layers}; "
                              "load the set trained on this model")
    for t in transcoders.transcoders:
        if t.W_enc.shape[0] != w.d_model or t.W_dec.shape[-1] != w.d_model:
            raise TranscoderError(f"transcoder {t.layer} reads {t.W_enc.shape[0]} and writes {t.W_dec.shape[-1]} "
                                  f"dimensions; this model's residual has {w.d_model}: load the set trained on it")
    return w


class _Stop(Exception):
    pass


def embed(model: Any, tokens: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """The model's own embedding (token, learned positions, any scale): ``blocks.0.hook_resid_pre`` ``[T, d]``."""
    got: list[torch.Tensor] = []

    def grab(act: torch.Tensor, hook: Any) -> None:
        got.append(act.detach())
        raise _Stop

    with torch.no_grad(), model.hooks(fwd_hooks=[("blocks.0.hook_resid_pre", grab)]):
        try:
            model(tokens[None].to(model.W_E.device))
        except _Stop:
            pass
    return got[0][0].to(dtype)


def _scale(norm: Norm | None, x: torch.Tensor) -> torch.Tensor | None:
    return None if norm is None else norm.scale(x)


def frozen_norm(norm: Norm | None, x: torch.Tensor, scale: torch.Tensor | None, bias: bool = True) -> torch.Tensor:
    """``norm(x)`` with its scale frozen: linear in ``x`` (LayerNorm's centring kept) plus its bias
    (left out with ``bias=False``: the linear part alone, for moving a difference through)."""
    if norm is None:
        return x
    assert scale is not None  # recorded with the norm
    if norm.kind == "LN":
        x = x - x.mean(-1, keepdim=True)
    y = x / scale
    if norm.weight is not None:
        y = y * norm.weight
    return y if norm.bias is None or not bias else y + norm.bias


def _attention(w: Weights, l: int, x: torch.Tensor, rot: list[Any] | None,
               h1: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The live attention of rows ``x`` ``[T, d]`` (or of its normed ``h1``): its pattern ``[1, H, T, T]``
    and output before any post-norm."""
    lw, T = w.layers[l], x.shape[0]
    h1 = K.attn_in(w, l, x) if h1 is None else h1
    r = None if rot is None else rot[l]
    q = K.prep_q(w, l, K.split(K.linear(h1, lw.w_q, lw.b_q), w.d_head)[None], r)
    k = K.prep_k(w, l, K.split(K.linear(h1, lw.w_k, lw.b_k), w.d_head)[None], r)
    v = K.split(K.linear(h1, lw.w_v, lw.b_v), w.d_head)[None].transpose(1, 2)
    p = K.pattern(w, l, q, k, torch.arange(T, device=x.device))
    z = K.mix(w, p, v).transpose(1, 2).reshape(T, -1)
    return p, K.linear(z, lw.w_o, lw.b_o)


def _mlp_raw(w: Weights, l: int, x: torch.Tensor) -> torch.Tensor:
    """The MLP module's output before any post-norm (what a transcoder replaces)."""
    lw = w.layers[l]
    if lw.w_gate is None:
        hidden = w.act(K.linear(x, lw.w_in, lw.b_in))
    else:
        hidden = w.act(K.linear(x, lw.w_gate, lw.b_gate)) * K.linear(x, lw.w_in, lw.b_in)
    return K.linear(hidden, lw.w_out, lw.b_out)


def _mlp_norm_src(w: Weights, l: int, resid_pre: torch.Tensor, mid: torch.Tensor) -> torch.Tensor:
    """What the pre-MLP norm reads (the block's input for parallel blocks)."""
    return resid_pre if w.layers[l].parallel else mid


def _mlp_norm(w: Weights, l: int) -> Norm | None:
    lw = w.layers[l]
    return lw.ln1 if lw.mlp_reads_ln1 else lw.ln2


def is_bos(model: Any, tokens: torch.Tensor) -> bool:
    """Whether position 0 is the model's BOS token, prepended as the model does by default."""
    tok = getattr(model, "tokenizer", None)
    bos = getattr(tok, "bos_token_id", None)
    return bool(getattr(model.cfg, "default_prepend_bos", True)) and bos is not None and int(tokens[0]) == int(bos)


@torch.no_grad()
def clean_run(model: Any, transcoders: TranscoderSet, tokens: torch.Tensor, w: Weights | None = None) -> CleanRun:
    """Run ``tokens`` ``[T]`` once through the model (the engine's kernels) and freeze it (see :class:`CleanRun`)."""
    w = w or check_model(model, transcoders)
    dt, dev = w.dtype, w.device
    tcs = transcoders.to(dev, dt)
    tokens = tokens.to(dev)
    T = int(tokens.shape[0])
    bos = is_bos(model, tokens)
    x = embed(model, tokens, dt)
    e0 = x
    rot = w.rotary(T) if w.rot_dim else None
    out: dict[str, list[Any]] = {k: [] for k in ("patterns", "s_ln1", "s_ln2", "s_post_attn", "s_post_mlp",
                                                  "tc_in", "mlp_out")}
    for l in range(w.n_layers):
        lw = w.layers[l]
        p, a_raw = _attention(w, l, x, rot)
        attn = a_raw if lw.post_attn is None else lw.post_attn(a_raw)
        mid = x + attn
        src = _mlp_norm_src(w, l, x, mid)
        norm = _mlp_norm(w, l)
        m_in = src if norm is None else norm(src)
        m_raw = _mlp_raw(w, l, m_in)
        out["patterns"].append(p[0])
        out["s_ln1"].append(_scale(lw.ln1, x))
        out["s_ln2"].append(_scale(norm, src))
        out["s_post_attn"].append(_scale(lw.post_attn, a_raw))
        out["s_post_mlp"].append(_scale(lw.post_mlp, m_raw))
        out["tc_in"].append(m_in if tcs[l].site == "mlp_in" else src)
        out["mlp_out"].append(m_raw)
        x = mid + (m_raw if lw.post_mlp is None else lw.post_mlp(m_raw))
    s_final = _scale(w.ln_final, x)
    final = K.final_norm(w, x)
    logits = final @ w.W_U + (0 if w.b_U is None else w.b_U)
    if w.logit_softcap is not None:
        logits = torch.tanh(logits / w.logit_softcap) * w.logit_softcap
    acts = [tcs[l].encode(out["tc_in"][l]) for l in range(w.n_layers)]
    if bos:
        for a in acts:
            a[0] = 0
    writes, errors = [], []
    for l in range(w.n_layers):
        t = tcs[l]
        wr = acts[l] @ (t.W_dec[:, 0] if t.cross_layer else t.W_dec) + (t.b_dec[0] if t.cross_layer else t.b_dec)
        for s in range(l if tcs.cross_layer else 0):
            wr = wr + acts[s] @ tcs[s].W_dec[:, l - s]
        writes.append(wr)
        errors.append(out["mlp_out"][l] - wr - t.skip(out["tc_in"][l]))
    return CleanRun(w=w, tokens=tokens, embed=e0, s_final=s_final, final=final, logits=logits, acts=acts,
                    writes=writes, errors=errors, bos=bos, **out)


def frozen_forward(run: CleanRun, transcoders: TranscoderSet, embed: torch.Tensor, writes: list[torch.Tensor],
                   attn_add: list[torch.Tensor] | None = None) -> tuple[list[torch.Tensor], torch.Tensor]:
    """The frozen replacement from its sources: the embedding ``[B, T, d]`` and each layer's MLP write
    less the skip path ``[B, T, d]`` (features, decoder bias, error).

    Returns every transcoder input ``[B, T, d_in]`` (what feature pre-activations read) and the
    final normed residual ``[B, T, d]`` (what targets read). Linear in the sources plus a constant
    (the biases): with ``run``'s own sources it is the clean run. ``attn_add`` (per layer ``[B, T, d]``)
    is added to each attention's write (zeros: a probe whose gradient is the read-out's there).
    """
    w = run.w
    tcs = transcoders
    x = embed
    B, T, _ = x.shape
    tc_in: list[torch.Tensor] = []
    for l in range(w.n_layers):
        lw = w.layers[l]
        h1 = frozen_norm(lw.ln1, x, run.s_ln1[l])
        v = K.split(K.linear(h1, lw.w_v, lw.b_v), w.d_head).transpose(1, 2)  # [B, Hkv, T, dh]
        p = run.patterns[l].expand(B, -1, -1, -1)
        z = K.mix(w, p, v).transpose(1, 2).reshape(B, T, -1)
        a_raw = K.linear(z, lw.w_o, lw.b_o)
        attn = frozen_norm(lw.post_attn, a_raw, run.s_post_attn[l])
        mid = x + attn if attn_add is None else x + attn + attn_add[l]
        src = _mlp_norm_src(w, l, x, mid)
        m_in = frozen_norm(_mlp_norm(w, l), src, run.s_ln2[l])
        t_in = m_in if tcs[l].site == "mlp_in" else src
        tc_in.append(t_in)
        m_raw = writes[l] + tcs[l].skip(t_in)
        x = mid + frozen_norm(lw.post_mlp, m_raw, run.s_post_mlp[l])
    return tc_in, frozen_norm(w.ln_final, x, run.s_final)


@dataclass(frozen=True)
class Edit:
    """Feature activations changed in the live (unfrozen) replacement.

    ``keep``: per layer a ``[T, n_features]`` mask; features outside it are zero (None: all kept).
    ``set_to``: ``(layer, position, feature, value)``: that feature's activation is ``value``.
    """

    keep: tuple[torch.Tensor, ...] | None = None
    set_to: tuple[tuple[int, int, int, float], ...] = ()


@torch.no_grad()
def live_forward(run: CleanRun, transcoders: TranscoderSet, edit: Edit | None = None,
                 freeze_norms: bool = False) -> torch.Tensor:
    """The *unfrozen* model with each MLP replaced by its transcoders plus the clean run's error node:
    attention, norms and the features themselves all recomputed; ``edit`` changes feature activations.
    Without an edit it is the model. Returns the final normed residual ``[T, d]`` (targets read it).
    ``freeze_norms``: every residual norm's scale held at the clean run's (attention and features still
    live), to tell how much of a gap to the frozen graph is the norms' response.
    """
    w = run.w
    tcs = transcoders.to(w.device, w.dtype)
    x = run.embed
    T = x.shape[0]
    rot = w.rotary(T) if w.rot_dim else None
    acts: list[torch.Tensor] = []
    for l in range(w.n_layers):
        lw = w.layers[l]
        fn = (lambda n, v, sc: frozen_norm(n, v, sc)) if freeze_norms else \
            (lambda n, v, sc: v if n is None else n(v))  # noqa: E731
        _, a_raw = _attention(w, l, x, rot, fn(lw.ln1, x, run.s_ln1[l]))
        mid = x + fn(lw.post_attn, a_raw, run.s_post_attn[l])
        src = _mlp_norm_src(w, l, x, mid)
        m_in = fn(_mlp_norm(w, l), src, run.s_ln2[l])
        t_in = m_in if tcs[l].site == "mlp_in" else src
        a = tcs[l].encode(t_in)
        if run.bos:
            a[0] = 0
        if edit is not None:
            if edit.keep is not None:
                a = a * edit.keep[l]
            for el, p, f, v in edit.set_to:
                if el == l:
                    a[p, f] = v
        acts.append(a)
        t = tcs[l]
        m_raw = a @ (t.W_dec[:, 0] if t.cross_layer else t.W_dec) + (t.b_dec[0] if t.cross_layer else t.b_dec)
        for s_ in range(l if tcs.cross_layer else 0):
            m_raw = m_raw + acts[s_] @ tcs[s_].W_dec[:, l - s_]
        m_raw = m_raw + t.skip(t_in) + run.errors[l]
        x = mid + fn(lw.post_mlp, m_raw, run.s_post_mlp[l])
    return frozen_norm(w.ln_final, x, run.s_final) if freeze_norms else K.final_norm(w, x)


def frozen_norm_t(norm: Norm | None, g: torch.Tensor, scale: torch.Tensor | None) -> torch.Tensor:
    """The transpose of :func:`frozen_norm`'s linear part: a gradient at its output → at its input."""
    if norm is None:
        return g
    assert scale is not None
    if norm.weight is not None:
        g = g * norm.weight
    g = g / scale
    return g - g.mean(-1, keepdim=True) if norm.kind == "LN" else g


def pullback(run: CleanRun, transcoders: TranscoderSet, reads: list[tuple[int, int, torch.Tensor]]
             ) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor]]:
    """Gradients of ``B`` read-outs of the frozen replacement, by its transposed pass (no forward needed:
    the map is linear). ``reads[b] = (site, position, vector)``: site ``l < n_layers`` reads transcoder
    ``l``'s input, ``n_layers`` the final normed residual.

    Returns the gradients ``[B, T, d]`` at the embedding, at every layer's MLP write (before any
    post-norm) and at every layer's attention write (after its post-norm). Equal to autograd through
    :func:`frozen_forward` (tested); half its work and none of its saved activations.
    """
    w = run.w
    tcs = transcoders
    L, T, d, H, dh = w.n_layers, run.embed.shape[0], w.d_model, w.n_heads, w.d_head
    B = len(reads)
    dt, dev = w.dtype, w.device
    inject = torch.zeros(L + 1, B, T, d, dtype=dt, device=dev)
    for b, (site, p, u) in enumerate(reads):
        inject[site, b, p] = u
    top = max(site for site, _, _ in reads)
    g = torch.zeros(B, T, d, dtype=dt, device=dev)  # at the residual after the last layer that matters
    if top == L:
        g = frozen_norm_t(w.ln_final, inject[L], run.s_final)
    zeros = torch.zeros(B, T, d, dtype=dt, device=dev)
    g_w = [zeros] * L
    g_a = [zeros] * L
    for l in range(min(top, L - 1), -1, -1):
        lw = w.layers[l]
        g_raw = frozen_norm_t(lw.post_mlp, g, run.s_post_mlp[l])
        g_w[l] = g_raw
        g_tin = inject[l] if l <= top else zeros
        W_skip = tcs[l].W_skip
        if W_skip is not None:
            g_tin = g_tin + g_raw @ W_skip.T
        g_src = frozen_norm_t(_mlp_norm(w, l), g_tin, run.s_ln2[l]) if tcs[l].site == "mlp_in" else g_tin
        g_mid = g if lw.parallel else g + g_src
        g_a[l] = g_mid
        g_out = frozen_norm_t(lw.post_attn, g_mid, run.s_post_attn[l])
        g_z = (g_out @ lw.w_o.T).view(B, T, H, dh).transpose(1, 2)  # [B, H, T, dh]
        g_v = torch.einsum("hqk,bhqd->bhkd", run.patterns[l], g_z)
        g_v = g_v.view(B, -1, w.group, T, dh).sum(2).transpose(1, 2).reshape(B, T, -1)  # [B, T, Hkv·dh]
        g_x = g_mid + frozen_norm_t(lw.ln1, g_v @ lw.w_v.T, run.s_ln1[l])
        g = g_x + g_src if lw.parallel else g_x
    return g, g_w, g_a


def replacement_logits(run: CleanRun, transcoders: TranscoderSet) -> torch.Tensor:
    """Logits ``[T, vocab]`` of the frozen replacement with error nodes: equal to the model's."""
    w = run.w
    tcs = transcoders.to(w.device, w.dtype)
    writes = [(run.writes[l] + run.errors[l])[None] for l in range(w.n_layers)]
    _, final = frozen_forward(run, tcs, run.embed[None], writes)
    logits = final[0] @ w.W_U + (0 if w.b_U is None else w.b_U)
    if w.logit_softcap is not None:
        logits = torch.tanh(logits / w.logit_softcap) * w.logit_softcap
    return logits


__all__ = ["CleanRun", "Edit", "check_model", "clean_run", "compute_dtype", "embed", "frozen_forward", "frozen_norm",
           "frozen_norm_t", "is_bos", "live_forward", "pullback", "replacement_logits"]
