"""A forward pass over the graph: every receiver's input can be rebuilt edge by edge.

Why our own forward: TransformerLens patches edges one position-resolved edge at a time through
hooks (``attribution_patching._ablate_edges``), which is slow, and its per-head receiver hooks
materialise every head's input anyway. Here the model is run from its processed weights
(compatibility mode: ``W_Q``, ``W_O``, ``W_in`` … exactly what the bridge computes with) and each
layer's receivers read

    input[r] = live_residual − Σ_s drop[s, r] · (live_s − replacement_s)

for all receivers of the layer in one einsum. ``drop`` is ``1 − keep`` on the graph's edges, so
keeping every edge is the model's own forward, and keeping none with corrupted-run replacements
is the corrupted run. Several ``keep`` masks run at once, stacked along the batch. ``live_s`` is
the sender's output *in this patched run* (not its clean output), which is what exact edge
patching means and what TransformerLens's ``faithfulness`` does.

Only the answer columns of the unembedding are computed (the design's speed note). Unpatched, the
result equals the bridge's forward; :func:`check_against_bridge` tests that on the caller's data.
"""

from __future__ import annotations

import math
import weakref
from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.nn.functional as F

from circuitwise.models.activations import ACTIVATIONS

from circuitwise.circuits.graph import Graph, graph_of
from circuitwise.errors import ConfigError


# grad(receiver slice or index, ∂metric/∂receiver-input), called during the backward pass.
ReceiverGrad = Callable[[slice | int, torch.Tensor], None]


def _unsupported(what: str) -> ConfigError:
    return ConfigError(
        f"Circuit discovery does not support this model: {what}. It supports GPT-2-style "
        "models (learned absolute positions, LayerNorm or RMSNorm, one key/value head per query "
        "head), such as gpt2, distilgpt2 and the bundled model. Use the attribution and "
        "patching stages for other architectures."
    )


@dataclass(frozen=True, eq=False)
class GraphModel:
    """A model's processed weights, laid out for the graph forward."""

    graph: Graph
    W_E: torch.Tensor  # [vocab, d]
    W_pos: torch.Tensor  # [n_ctx, d]
    W_QKV: tuple[torch.Tensor, ...]  # per layer [3H, d, d_head]
    b_QKV: tuple[torch.Tensor, ...]  # per layer [3H, d_head]
    W_O: tuple[torch.Tensor, ...]  # per layer [H, d_head, d]
    b_O: tuple[torch.Tensor, ...]  # per layer [d]
    ln1: tuple[tuple[torch.Tensor | None, torch.Tensor | None], ...]
    ln2: tuple[tuple[torch.Tensor | None, torch.Tensor | None], ...]
    ln_final: tuple[torch.Tensor | None, torch.Tensor | None]
    mlp: tuple[tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], ...]  # W_in b_in W_out b_out
    W_U: torch.Tensor  # [d, vocab]
    b_U: torch.Tensor | None
    norm: str  # "LN", "RMS" or "none"
    eps: float
    act: Callable[[torch.Tensor], torch.Tensor]
    attn_scales: tuple[float, ...]
    checked: bool = False  # passed check_against_bridge

    @property
    def d_model(self) -> int:
        return int(self.W_E.shape[1])

    @property
    def device(self) -> torch.device:
        return self.W_E.device

    @property
    def dtype(self) -> torch.dtype:
        return self.W_E.dtype

    # -- pieces ---------------------------------------------------------------------------------

    def embed(self, tokens: torch.Tensor) -> torch.Tensor:
        """The input node's output: token plus positional embedding, ``[batch, pos, d]``."""
        return self.W_E[tokens] + self.W_pos[: tokens.shape[1]]

    def _norm(self, x: torch.Tensor, wb: tuple[torch.Tensor | None, torch.Tensor | None]) -> torch.Tensor:
        w, b = wb
        if self.norm == "LN":
            return F.layer_norm(x, (x.shape[-1],), w, b, self.eps)
        if self.norm == "RMS":
            x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
            return x if w is None else x * w
        return x

    def _norm_grad(self, x: torch.Tensor, wb: tuple[torch.Tensor | None, torch.Tensor | None],
                   dy: torch.Tensor) -> torch.Tensor:
        """The norm's backward: ∂⟨dy, norm(x)⟩/∂x for every leading slice of ``dy`` (x broadcast).

        Works in place on ``dy`` (the caller's own temporary) to keep memory traffic down.
        """
        w = wb[0]
        g = dy if w is None else dy.mul_(w)
        if self.norm == "none":
            return g
        if self.norm == "LN":
            x = x - x.mean(-1, keepdim=True)
            g.sub_(g.mean(-1, keepdim=True))
        inv = torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        y = x * inv
        gy = torch.einsum("...npd,npd->...np", g, y).unsqueeze(-1).div_(x.shape[-1])
        return g.addcmul_(y, gy, value=-1.0).mul_(inv)


# Reading (stacking) a bridge's weights costs about a forward; keep one GraphModel per model,
# rebuilt when any parameter is replaced or changed in place (tensor version counters).
_CACHE: "weakref.WeakKeyDictionary[Any, tuple[tuple[int, ...], GraphModel]]" = weakref.WeakKeyDictionary()


def _fingerprint(model: Any) -> tuple[int, ...]:
    return tuple(v for p in model.parameters() for v in (id(p), p._version))


def graph_model(model: Any) -> GraphModel:
    """The model's weights laid out for the graph forward (cached per model)."""
    try:
        key = _fingerprint(model)
        hit = _CACHE.get(model)
    except (TypeError, AttributeError):  # not a weak-referenceable module: no caching
        return _read_graph_model(model)
    if hit is not None and hit[0] == key:
        return hit[1]
    gm = _read_graph_model(model)
    _CACHE[model] = (key, gm)
    return gm


def _read_graph_model(model: Any) -> GraphModel:
    """Read a compatibility-mode bridge's weights; refuse architectures the forward cannot run."""
    cfg = model.cfg
    pos = getattr(cfg, "positional_embedding_type", "standard")
    if pos != "standard":
        raise _unsupported(f"positional_embedding_type={pos!r}")
    kv = getattr(cfg, "n_key_value_heads", None)
    if kv is not None and kv != cfg.n_heads:
        raise _unsupported(f"{kv} key/value heads for {cfg.n_heads} query heads (GQA/MQA)")
    if getattr(cfg, "gated_mlp", False):
        raise _unsupported("a gated MLP")
    for cap in ("attn_scores_soft_cap", "output_logits_soft_cap"):
        if (getattr(cfg, cap, -1.0) or -1.0) > 0:
            raise _unsupported(f"{cap} is set")
    if getattr(cfg, "use_normalization_before_and_after", False):
        raise _unsupported("normalization before and after each sublayer")
    norm_type = getattr(cfg, "normalization_type", "LN")
    norm = {"LN": "LN", "LNPre": "LN", "RMS": "RMS", "RMSPre": "RMS", None: "none"}.get(norm_type)
    if norm is None:
        raise _unsupported(f"normalization_type={norm_type!r}")
    act_name = getattr(cfg, "act_fn", "gelu_new")
    if act_name not in ACTIVATIONS:
        raise _unsupported(f"act_fn={act_name!r}")
    graph = graph_of(model)
    L = graph.n_layers

    # Half-precision models run in float32 here: edge scores are sums of many small products.
    dt = torch.float32 if model.W_E.dtype in (torch.float16, torch.bfloat16) else model.W_E.dtype

    def ln_params(ln: Any) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        if ln is None:
            return None, None
        if getattr(ln, "uses_weight_offset", False):
            raise _unsupported("a LayerNorm stored as an offset from 1 (Gemma-style)")
        w = getattr(ln, "weight", None)
        orig = getattr(ln, "original_component", None)
        b = getattr(orig, "bias", None) if orig is not None else getattr(ln, "bias", None)
        # Folded LayerNorms have weight 1 and bias 0: drop them (the same numbers, less work).
        w = None if w is None or bool((w == 1).all()) else w.detach().to(dt)
        b = None if b is None or not bool(b.any()) else b.detach().to(dt)
        return w, b

    with torch.no_grad():
        W_Q, W_K, W_V, W_O = model.W_Q, model.W_K, model.W_V, model.W_O
        b_Q, b_K, b_V, b_O = model.b_Q, model.b_K, model.b_V, model.b_O
        blocks = list(model.blocks)
        mlp: list[tuple[torch.Tensor, ...]] = []
        if graph.has_mlp:
            W_in, b_in, W_out, b_out = model.W_in, model.b_in, model.W_out, model.b_out
            mlp = [(W_in[l], b_in[l], W_out[l], b_out[l]) for l in range(L)]
        base = math.sqrt(cfg.d_head) if getattr(cfg, "use_attn_scale", True) else 1.0
        by_layer = bool(getattr(cfg, "scale_attn_by_inverse_layer_idx", False))
        b_U = getattr(model, "b_U", None)
        return GraphModel(
            graph=graph,
            W_E=model.W_E.detach().to(dt),
            W_pos=model.W_pos.detach().to(dt),
            W_QKV=tuple(torch.cat([W_Q[l], W_K[l], W_V[l]], 0).detach().to(dt) for l in range(L)),
            b_QKV=tuple(torch.cat([b_Q[l], b_K[l], b_V[l]], 0).detach().to(dt) for l in range(L)),
            W_O=tuple(W_O[l].detach().to(dt) for l in range(L)),
            b_O=tuple(b_O[l].detach().to(dt) for l in range(L)),
            ln1=tuple(ln_params(getattr(b, "ln1", None)) for b in blocks),
            ln2=tuple(ln_params(getattr(b, "ln2", None)) for b in blocks),
            ln_final=ln_params(getattr(model, "ln_final", None)),
            mlp=tuple(tuple(t.detach().to(dt) for t in m) for m in mlp),  # type: ignore[misc]
            W_U=model.W_U.detach().to(dt),
            b_U=None if b_U is None else b_U.detach().to(dt),
            norm=norm,
            eps=float(getattr(cfg, "eps", 1e-5)),
            act=ACTIVATIONS[act_name],
            attn_scales=tuple(base * ((l + 1) if by_layer else 1) for l in range(L)),
        )


@dataclass
class GraphRun:
    """What one (possibly patched, possibly stacked) run returns."""

    answer_logits: torch.Tensor  # [K, N, 2]
    outputs: torch.Tensor | None  # [sender, K*N, pos, d] when recorded


def run_graph(
    gm: GraphModel,
    x0: torch.Tensor,
    last: torch.Tensor,
    answers: torch.Tensor,
    *,
    keep: torch.Tensor | None = None,
    replacement: torch.Tensor | None = None,
    record: bool = False,
    receiver_grad: ReceiverGrad | None = None,
) -> GraphRun:
    """Run the model from input embeddings ``x0`` ``[N, pos, d]``.

    Tensors are sender- or receiver-first (``[sender, batch, pos, d]``) so that every edge
    contraction is one plain matrix product over ``batch·pos·d``.

    Args:
        keep: ``[K, sender, receiver]`` (1 = the receiver reads the live sender, 0 = it reads
            ``replacement``); ``None`` runs unpatched. Non-edges are ignored.
        replacement: sender outputs ``[sender, N or 1, pos, d]`` used where ``keep`` is 0.
        record: return every sender's output ``[sender, K*N, pos, d]``.
        receiver_grad: called during the backward pass with ∂metric/∂input of each receiver
            block — a layer's q/k/v ``[3H, K*N, pos, d]``, its MLP ``[1, K*N, pos, d]``, the
            logits ``[1, K*N, d]`` (each example's last position). Unpatched, the q/k/v gradients
            come from the fused projection's gradient through an explicit LayerNorm backward,
            so no per-receiver copy of the residual is normalised in the forward.
    """
    g = gm.graph
    N, P, d = x0.shape
    K = 1 if keep is None else int(keep.shape[0])
    H, S = g.n_heads, len(g.senders)
    x = x0 if K == 1 else x0.repeat(K, 1, 1)
    KN = K * N
    drop = D = None
    if keep is not None:
        if replacement is None:
            raise ValueError("keep needs a replacement")
        drop = (1 - keep.to(x.dtype)) * g.adjacency.to(x.device)
        D = x.new_zeros(K, S, N, P, d)  # live − replacement, per sender
    outs = x.new_empty(S, KN, P, d) if record else None
    rep = replacement

    def put(sl: slice | int, live: torch.Tensor) -> None:
        """Store a sender's live output: ``[KN, P, d]``, or ``[H, KN, P, d]`` for a layer's heads."""
        if outs is not None:
            outs[sl] = live.detach()
        if D is not None:
            assert rep is not None
            if isinstance(sl, int):
                D[:, sl] = live.view(K, N, P, d) - rep[sl]
            else:
                D[:, sl] = live.view(-1, K, N, P, d).transpose(0, 1) - rep[sl]

    def patched(resid: torch.Tensor, n_send: int, rs: slice | int) -> torch.Tensor | None:
        """Receiver inputs ``[R, KN, P, d]`` with dropped edges replaced, or None if none dropped."""
        if drop is None:
            return None
        dr = drop[:, :n_send, rs]
        if isinstance(rs, int):
            dr = dr.unsqueeze(-1)
        if not bool(dr.any()):
            return None
        assert D is not None
        R = dr.shape[-1]
        Dn = D[:, :n_send].reshape(K, n_send, N * P * d)
        if K == 1:
            delta = (dr[0].T @ Dn[0]).view(R, KN, P, d)
        else:
            delta = torch.bmm(dr.transpose(1, 2), Dn).transpose(0, 1).reshape(R, KN, P, d)
        return resid.unsqueeze(0) - delta

    put(0, x)
    resid = x
    causal = torch.ones(P, P, dtype=torch.bool, device=x.device).tril()
    for l in range(g.n_layers):
        rs = g.qkv_receivers(l)
        inp = patched(resid, g.senders_before_attn(l), rs)
        if inp is not None:
            if receiver_grad is not None:
                _on_grad(inp, rs, receiver_grad)
            normed = gm._norm(inp, gm.ln1[l]).reshape(3 * H, KN * P, d)
            qkv = torch.bmm(normed, gm.W_QKV[l]).view(3 * H, KN, P, -1)
        else:  # every head reads the same residual: one matmul
            W = gm.W_QKV[l].permute(1, 0, 2).reshape(d, -1)
            qkv = (gm._norm(resid, gm.ln1[l]) @ W).view(KN, P, 3 * H, -1).permute(2, 0, 1, 3)
            if receiver_grad is not None:
                _on_qkv_grad(gm, l, qkv, resid.detach(), rs, receiver_grad)
        qkv = qkv + gm.b_QKV[l][:, None, None, :]
        q, k, v = qkv[:H], qkv[H : 2 * H], qkv[2 * H :]  # [H, KN, P, d_head]
        scores = (q @ k.transpose(-1, -2)) / gm.attn_scales[l]
        scores = scores.masked_fill(~causal, float("-inf"))
        z = scores.softmax(-1) @ v  # [H, KN, P, d_head]
        heads = torch.bmm(z.reshape(H, KN * P, -1), gm.W_O[l]).view(H, KN, P, d)
        put(g.head_senders(l), heads)
        resid_mid = resid + heads.sum(0) + gm.b_O[l]
        if g.has_mlp:
            mr = g.mlp_receiver(l)
            src = resid if g.parallel_attn_mlp else resid_mid
            m_in = patched(src, g.senders_before_mlp(l), mr)
            if m_in is None and receiver_grad is not None:
                m_in = src.unsqueeze(0)
            if m_in is not None:
                if receiver_grad is not None:
                    _on_grad(m_in, mr, receiver_grad)
                m_in = m_in[0]
            else:
                m_in = src
            W_in, b_in, W_out, b_out = gm.mlp[l]
            mlp_out = gm.act(gm._norm(m_in, gm.ln2[l]) @ W_in + b_in) @ W_out + b_out
            put(g.mlp_sender(l), mlp_out)
            resid = resid_mid + mlp_out
        else:
            resid = resid_mid
    # The logits receiver: only each example's last position is read.
    last = last.to(x.device)
    final = resid[torch.arange(KN, device=x.device), last.repeat(K)]  # [KN, d]
    if drop is not None:
        dr = drop[:, :, g.logits_receiver]  # [K, S]
        if bool(dr.any()):
            assert D is not None
            D_last = D[:, :, torch.arange(N, device=x.device), last]  # [K, S, N, d]
            final = final - torch.einsum("ksnd,ks->knd", D_last, dr).reshape(KN, d)
    if receiver_grad is not None:
        final = final.unsqueeze(0)
        _on_grad(final, g.logits_receiver, receiver_grad)
        final = final[0]
    normed = gm._norm(final, gm.ln_final)
    ans = answers.to(x.device).repeat(K, 1)  # [KN, 2]
    logits = torch.einsum("nd,dnj->nj", normed, gm.W_U[:, ans])
    if gm.b_U is not None:
        logits = logits + gm.b_U[ans]
    return GraphRun(answer_logits=logits.view(K, N, 2), outputs=outs)


def _on_grad(t: torch.Tensor, rs: slice | int, receiver_grad: ReceiverGrad) -> None:
    t.register_hook(lambda grad: receiver_grad(rs, grad))


def _on_qkv_grad(gm: GraphModel, layer: int, qkv: torch.Tensor, resid: torch.Tensor, rs: slice,
                 receiver_grad: ReceiverGrad) -> None:
    """Per-receiver input gradients of a layer's fused q/k/v projection ``[3H, KN, P, d_head]``."""

    def hook(grad: torch.Tensor) -> None:
        R, KN, P, dh = grad.shape
        dy = torch.bmm(grad.reshape(R, KN * P, dh), gm.W_QKV[layer].transpose(1, 2)).view(R, KN, P, -1)
        receiver_grad(rs, gm._norm_grad(resid, gm.ln1[layer], dy))

    qkv.register_hook(hook)


def check_against_bridge(model: Any, gm: GraphModel, tokens: torch.Tensor, last: torch.Tensor,
                         answers: torch.Tensor, *, atol: float = 1e-3) -> None:
    """Raise if the graph forward's answer logits differ from the bridge's own forward.

    Once a model has passed (for these weights), later calls return at once.
    """
    if gm.checked:
        return
    low_precision = any(p.dtype in (torch.float16, torch.bfloat16) for p in model.parameters())
    atol = max(atol, 3e-2) if low_precision else atol
    with torch.no_grad():
        ours = run_graph(gm, gm.embed(tokens), last, answers).answer_logits[0]
        logits = model(tokens)
        rows = torch.arange(tokens.shape[0], device=logits.device)
        theirs = logits[rows, last.to(logits.device)].gather(-1, answers.to(logits.device)).to(ours.dtype)
    ld_ours, ld_theirs = ours[:, 0] - ours[:, 1], theirs[:, 0] - theirs[:, 1]
    err = float((ld_ours - ld_theirs).abs().max())
    scale = max(1.0, float(ld_theirs.abs().max()))
    if not err <= atol * scale:
        raise ConfigError(
            f"circuitwise's graph forward disagrees with the model's own forward by {err:.3g} "
            "in logit difference, so edge scores on this model would be wrong. This architecture "
            "is not supported by circuit discovery; please report it with the model name."
        )
    object.__setattr__(gm, "checked", True)


__all__ = ["ACTIVATIONS", "GraphModel", "GraphRun", "ReceiverGrad", "check_against_bridge", "graph_model",
           "run_graph"]
