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

import weakref
from dataclasses import dataclass
from typing import Any, Callable

import torch

from circuitwise.models import kernels
from circuitwise.models.activations import ACTIVATIONS
from circuitwise.models.weights import Weights, read_weights, supports

from circuitwise.circuits.graph import Graph, graph_of
from circuitwise.errors import ConfigError


# grad(receiver slice or index, ∂metric/∂receiver-input), called during the backward pass.
ReceiverGrad = Callable[[slice | int, torch.Tensor], None]


def _unsupported(what: str) -> ConfigError:
    return ConfigError(
        f"Circuit discovery does not support this model: {what}. It runs on every dense decoder "
        "family the fast engine implements (see the README's family table); use the attribution "
        "and patching stages for this one."
    )


@dataclass(frozen=True, eq=False)
class GraphModel:
    """A model's processed weights (:class:`~circuitwise.models.weights.Weights`) laid out for the graph.

    Key/value receivers are per *query* head (EAP-IG's ungrouped graph): with grouped-query
    attention, query head h's key and value inputs feed its own copy of its key/value head's
    computation, so an edge into ``L{l}H{h}.k`` moves head h's keys only. Unpatched, every copy
    reads the same residual and the forward is the model's own.
    """

    graph: Graph
    w: Weights
    W_QKV: tuple[torch.Tensor, ...]  # per layer [3H, d, d_head]: q heads, then k and v per query head
    b_QKV: tuple[torch.Tensor | None, ...]  # per layer [3H, d_head]
    W_O: tuple[torch.Tensor, ...]  # per layer [H, d_head, d]
    checked: bool = False  # passed check_against_bridge

    @property
    def d_model(self) -> int:
        return self.w.d_model

    @property
    def device(self) -> torch.device:
        return self.w.device

    @property
    def dtype(self) -> torch.dtype:
        return self.w.dtype

    def embed(self, tokens: torch.Tensor) -> torch.Tensor:
        """The input node's output, ``blocks.0.hook_resid_pre`` ``[batch, pos, d]`` — the model's own
        embedding (token, learned positions, Gemma's √d scale …), read from a forward cut short."""
        got: list[torch.Tensor] = []

        def grab(act: torch.Tensor, hook: Any) -> None:
            got.append(act.detach())
            raise _Stop

        model = self.w._model
        with torch.no_grad(), model.hooks(fwd_hooks=[("blocks.0.hook_resid_pre", grab)]):
            try:
                model(tokens.to(self.device))
            except _Stop:
                pass
        return got[0].to(self.dtype)


class _Stop(Exception):
    """Raised from the first block's input hook: the embedding is all we need."""


# One GraphModel per model (reading weights costs about a forward), rebuilt with the weights.
_CACHE: "weakref.WeakKeyDictionary[Any, GraphModel]" = weakref.WeakKeyDictionary()


def graph_model(model: Any) -> GraphModel:
    """The model's weights laid out for the graph forward (cached per model)."""
    why = supports(model)
    if why is not None:
        raise _unsupported(why)
    # Half-precision models run in float32 here: edge scores are sums of many small products.
    half = model.W_E.dtype in (torch.float16, torch.bfloat16)
    w = read_weights(model, torch.float32 if half else None)
    try:
        hit = _CACHE.get(model)
    except TypeError:
        hit = None
    if hit is not None and hit.w is w:
        return hit
    with torch.inference_mode(False), torch.no_grad():  # cached: never inference tensors
        gm = _layout(graph_of(model), w)
    try:
        _CACHE[model] = gm
    except TypeError:  # not weak-referenceable: no caching
        pass
    return gm


def _layout(graph: Graph, w: Weights) -> GraphModel:
    H, dh, d, g = w.n_heads, w.d_head, w.d_model, w.group
    heads = lambda t: t.view(d, -1, dh).permute(1, 0, 2)  # noqa: E731  [d, n·dh] -> [n, d, dh]
    per_q = lambda t: t.repeat_interleave(g, 0)  # noqa: E731  one copy per query head
    W_QKV, b_QKV, W_O = [], [], []
    for lw in w.layers:
        W_QKV.append(torch.cat([heads(lw.w_q), per_q(heads(lw.w_k)), per_q(heads(lw.w_v))]).contiguous())
        if lw.b_q is None and lw.b_k is None and lw.b_v is None:
            b_QKV.append(None)
        else:
            z = lambda b, n: torch.zeros(n, dh, dtype=w.dtype, device=w.device) if b is None else b.view(n, dh)  # noqa: E731
            b_QKV.append(torch.cat([z(lw.b_q, H), per_q(z(lw.b_k, w.n_kv_heads)), per_q(z(lw.b_v, w.n_kv_heads))]))
        W_O.append(lw.w_o.view(H, dh, d))
    return GraphModel(graph=graph, w=w, W_QKV=tuple(W_QKV), b_QKV=tuple(b_QKV), W_O=tuple(W_O))


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
    differentiable = keep is not None and keep.requires_grad
    outs = x.new_empty(S, KN, P, d) if record else None
    rep = replacement

    def put(sl: slice | int, live: torch.Tensor) -> None:
        """Store a sender's live output: ``[KN, P, d]``, or ``[H, KN, P, d]`` for a layer's heads."""
        nonlocal D
        if outs is not None:
            outs[sl] = live.detach()
        if D is not None:
            assert rep is not None
            if differentiable:  # earlier layers' reads of D must survive for the backward pass
                D = D.clone()
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
        if not bool(dr.any()) and not dr.requires_grad:  # a mask being differentiated always patches
            return None
        assert D is not None
        R = dr.shape[-1]
        Dn = D[:, :n_send].reshape(K, n_send, N * P * d)
        if K == 1:
            delta = (dr[0].T @ Dn[0]).view(R, KN, P, d)
        else:
            delta = torch.bmm(dr.transpose(1, 2), Dn).transpose(0, 1).reshape(R, KN, P, d)
        return resid.unsqueeze(0) - delta

    w = gm.w
    put(0, x)
    resid = x
    q_pos = torch.arange(P, device=x.device)
    rot_all = w.rotary(P) if w.rot_dim else None
    for l in range(g.n_layers):
        lw = w.layers[l]
        rot = None if rot_all is None else rot_all[l]
        # A query/key norm over all heads couples the heads (OLMo 2): each receiver then runs the
        # whole projection from its own input, which only the per-receiver path does.
        coupled = (lw.q_norm is not None or lw.k_norm is not None) and not lw.qk_norm_per_head
        rs = g.qkv_receivers(l)
        inp = patched(resid, g.senders_before_attn(l), rs)
        if inp is None and coupled and receiver_grad is not None:
            inp = resid.unsqueeze(0).expand(3 * H, *resid.shape)
        if inp is not None:
            if receiver_grad is not None:
                _on_grad(inp, rs, receiver_grad)
            normed = kernels.attn_in(w, l, inp)
            qkv = _coupled_qkv(gm, l, normed) if coupled else \
                torch.bmm(normed.reshape(3 * H, KN * P, d), gm.W_QKV[l]).view(3 * H, KN, P, -1)
        else:  # every head reads the same residual: one matmul
            Wf = gm.W_QKV[l].permute(1, 0, 2).reshape(d, -1)
            qkv = (kernels.attn_in(w, l, resid) @ Wf).view(KN, P, 3 * H, -1).permute(2, 0, 1, 3)
            if coupled:
                qkv = _coupled_norms(gm, l, qkv)
            if receiver_grad is not None:
                _on_qkv_grad(gm, l, qkv, resid.detach(), rs, receiver_grad)
        if gm.b_QKV[l] is not None and not coupled:
            qkv = qkv + gm.b_QKV[l][:, None, None, :]
        lay = lambda t: t.permute(1, 2, 0, 3)  # noqa: E731  [H, KN, P, dh] -> [KN, P, H, dh]
        q = kernels.prep_q(w, l, lay(qkv[:H]), rot, norm=not coupled)
        k = kernels.prep_k(w, l, lay(qkv[H:2 * H]), rot, norm=not coupled)
        z = kernels.mix(w, kernels.pattern(w, l, q, k, q_pos, group=1), qkv[2 * H:].transpose(0, 1), group=1)
        heads = torch.bmm(z.transpose(0, 1).reshape(H, KN * P, -1), gm.W_O[l]).view(H, KN, P, d)
        heads, rest = _post_attn(lw, heads)
        put(g.head_senders(l), heads)
        resid_mid = resid + heads.sum(0) + rest
        if g.has_mlp:
            mr = g.mlp_receiver(l)
            src = resid if lw.parallel else resid_mid
            m_in = patched(src, g.senders_before_mlp(l), mr)
            if m_in is None and receiver_grad is not None:
                m_in = src.unsqueeze(0)
            if m_in is not None:
                if receiver_grad is not None:
                    _on_grad(m_in, mr, receiver_grad)
                m_in = m_in[0]
            else:
                m_in = src
            norm = lw.ln1 if lw.mlp_reads_ln1 else lw.ln2
            mlp_out = kernels.mlp_write(w, l, m_in if norm is None else norm(m_in))
            put(g.mlp_sender(l), mlp_out)
            resid = resid_mid + mlp_out
        else:
            resid = resid_mid
    # The logits receiver: only each example's last position is read.
    last = last.to(x.device)
    final = resid[torch.arange(KN, device=x.device), last.repeat(K)]  # [KN, d]
    if drop is not None:
        dr = drop[:, :, g.logits_receiver]  # [K, S]
        if bool(dr.any()) or dr.requires_grad:
            assert D is not None
            D_last = D[:, :, torch.arange(N, device=x.device), last]  # [K, S, N, d]
            final = final - torch.einsum("ksnd,ks->knd", D_last, dr).reshape(KN, d)
    if receiver_grad is not None:
        final = final.unsqueeze(0)
        _on_grad(final, g.logits_receiver, receiver_grad)
        final = final[0]
    ans = answers.to(x.device).repeat(K, 1)  # [KN, 2]
    bU = None if w.b_U is None else w.b_U[ans]
    logits = kernels.answer_logits(w, final, w.W_U.T[ans], bU)
    return GraphRun(answer_logits=logits.view(K, N, 2), outputs=outs)


def _post_attn(lw: Any, heads: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | float]:
    """Each head's write and the rest (``b_O``, the norm's bias) through a post-attention norm.

    The norm's scale is read from the live total, so the heads' shares sum to what the layer
    writes (the same frozen-scale split DLA uses); without a post-norm they are ``z_h W_O[h]``.
    """
    b = 0.0 if lw.b_o is None else lw.b_o
    pn = lw.post_attn
    if pn is None:
        return heads, b
    total = heads.sum(0) + b
    inv = 1.0 / pn.scale(total)
    w = 1.0 if pn.weight is None else pn.weight
    center = (lambda t: t - t.mean(-1, keepdim=True)) if pn.kind == "LN" else (lambda t: t)  # noqa: E731
    rest = center(torch.as_tensor(b, dtype=heads.dtype, device=heads.device)) * inv * w
    if pn.bias is not None:
        rest = rest + pn.bias
    return center(heads) * inv * w, rest


def _coupled_qkv(gm: GraphModel, l: int, normed: torch.Tensor) -> torch.Tensor:
    """Per-receiver q/k/v ``[3H, KN, P, d_head]`` when a query/key norm spans all heads.

    Receiver h runs the whole projection (and its norm) from its own input and keeps head h's
    slice (its key/value head's, for keys and values); biases are included, norms applied.
    """
    w = gm.w
    lw = w.layers[l]
    H, dh = w.n_heads, w.d_head
    idx = torch.arange(H, device=normed.device)
    kv = idx // w.group

    def run(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, norm: Any, pick: torch.Tensor):
        full = kernels.linear(x, weight, bias)  # [H, KN, P, n·dh]
        if norm is not None:
            full = norm(full)
        full = full.view(*full.shape[:-1], -1, dh)  # [H, KN, P, n, dh]
        return full[idx, :, :, pick]  # [H, KN, P, dh]

    return torch.cat([run(normed[:H], lw.w_q, lw.b_q, lw.q_norm, idx),
                      run(normed[H:2 * H], lw.w_k, lw.b_k, lw.k_norm, kv),
                      run(normed[2 * H:], lw.w_v, lw.b_v, None, kv)])


def _coupled_norms(gm: GraphModel, l: int, qkv: torch.Tensor) -> torch.Tensor:
    """The unpatched path's q/k/v (one shared input) with biases and all-head norms applied."""
    w = gm.w
    lw = w.layers[l]
    H, g = w.n_heads, w.group
    if gm.b_QKV[l] is not None:
        qkv = qkv + gm.b_QKV[l][:, None, None, :]
    flat = lambda t: t.permute(1, 2, 0, 3).flatten(-2)  # noqa: E731  [n, KN, P, dh] -> [KN, P, n·dh]
    back = lambda t, n: t.view(*t.shape[:-1], n, -1).permute(2, 0, 1, 3)  # noqa: E731
    q, k = qkv[:H], qkv[H:2 * H:g]  # the distinct key heads
    if lw.q_norm is not None:
        q = back(lw.q_norm(flat(q)), H)
    if lw.k_norm is not None:
        k = back(lw.k_norm(flat(k)), w.n_kv_heads)
    return torch.cat([q, k.repeat_interleave(g, 0), qkv[2 * H:]])


def _on_grad(t: torch.Tensor, rs: slice | int, receiver_grad: ReceiverGrad) -> None:
    t.register_hook(lambda grad: receiver_grad(rs, grad))


def _on_qkv_grad(gm: GraphModel, layer: int, qkv: torch.Tensor, resid: torch.Tensor, rs: slice,
                 receiver_grad: ReceiverGrad) -> None:
    """Per-receiver input gradients of a layer's fused q/k/v projection ``[3H, KN, P, d_head]``."""

    def hook(grad: torch.Tensor) -> None:
        R, KN, P, dh = grad.shape
        dy = torch.bmm(grad.reshape(R, KN * P, dh), gm.W_QKV[layer].transpose(1, 2)).view(R, KN, P, -1)
        ln = gm.w.layers[layer].ln1
        receiver_grad(rs, dy if ln is None else ln.backward(resid, dy))

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
