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

Three more shortcuts, each exact, for runs that only need the answer logits (the evaluations' many
stacked patched runs): positions before the prompts' first clean/corrupted difference are the same
in every patched run, so they run once (:func:`shared_prefix`) and later queries read their keys
and values; past the last layer's keys and values only each example's last position is read; and
the first layer's q/k/v receivers read the input alone, so each is one of two projections.
"""

from __future__ import annotations

import threading
import weakref
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from circuitwise.models import kernels, placement
from circuitwise.models.activations import ACTIVATIONS
from circuitwise.models.precision import tolerance
from circuitwise.models.weights import Weights, read_weights, supports

from circuitwise.circuits.graph import Graph, graph_of
from circuitwise.errors import ConfigError
from circuitwise.metrics import Targets, as_targets, readout


# grad(receiver slice or index, ∂metric/∂receiver-input), called during the backward pass.
ReceiverGrad = Callable[[slice | int, torch.Tensor], None]
# kq_grad(layer, split), called during the backward pass: ``split(rows)`` (rows ``[K*N, pos]`` bool)
# is ∂metric/∂input of the layer's key then value receivers ``[2H, K*N, pos, d]`` through the
# attention of those query rows only (circuits.positional_kq).
KQGrad = Callable[[int, Callable[[torch.Tensor], torch.Tensor]], None]


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
    # Patched metrics already measured with these weights (circuits.patch); rebuilt with them.
    memo: dict = field(default_factory=dict, repr=False)

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

        model = self.w.model
        # The hook is added to the shared model: one embedding at a time (models.parallel workers).
        with _EMBED_LOCK, torch.no_grad(), model.hooks(fwd_hooks=[("blocks.0.hook_resid_pre", grab)]):
            try:
                model(tokens.to(self.device))
            except _Stop:
                pass
        # On the embedding's device, where the caller's tensors are (a split model's first block may be elsewhere).
        return got[0].to(device=self.device, dtype=self.dtype)


_EMBED_LOCK = threading.Lock()


class _Stop(Exception):
    """Raised from the first block's input hook: the embedding is all we need."""


# One GraphModel per model (reading weights costs about a forward), rebuilt with the weights.
_CACHE: "weakref.WeakKeyDictionary[Any, GraphModel]" = weakref.WeakKeyDictionary()


def graph_model(model: Any) -> GraphModel:
    """The model's weights laid out for the graph forward (cached per model)."""
    why = supports(model)
    if why is not None:
        raise _unsupported(why)
    # The model's own dtype (a float32 copy of an 8B model would not fit beside it); the kernels take
    # norm statistics and softmax in float32, and scores are summed into float32 buffers.
    w = read_weights(model)
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
            z = lambda b, n, dev=lw.w_q.device: (torch.zeros(n, dh, dtype=w.dtype, device=dev)  # noqa: E731
                                                 if b is None else b.view(n, dh))
            b_QKV.append(torch.cat([z(lw.b_q, H), per_q(z(lw.b_k, w.n_kv_heads)), per_q(z(lw.b_v, w.n_kv_heads))]))
        W_O.append(lw.w_o.view(H, dh, d))
    return GraphModel(graph=graph, w=w, W_QKV=tuple(W_QKV), b_QKV=tuple(b_QKV), W_O=tuple(W_O))


@dataclass
class GraphRun:
    """What one (possibly patched, possibly stacked) run returns."""

    # [K, N, width]: the metric's read-out columns (metrics.readout; the two answer logits first)
    answer_logits: torch.Tensor
    outputs: torch.Tensor | None  # [sender, K*N, pos, d] when recorded


@dataclass(frozen=True)
class Prefix:
    """A batch's first ``start`` positions, which every patched run of it shares.

    Attention is causal, so before the first token where the clean and corrupted prompts differ
    every sender writes the same in both runs: ``live − replacement`` is zero there and no edge
    patch changes anything. A patched run then computes positions ``start:`` only, its queries
    also reading these keys and values (:func:`shared_prefix`).
    """

    start: int
    kv: tuple[tuple[torch.Tensor, torch.Tensor], ...]  # per layer: prepared keys, values [N, H, start, d_head]


@dataclass(frozen=True)
class Resume:
    """An unpatched run's state entering ``layer``, where patched runs whose dropped edges all end
    at ``layer`` or later can start: nothing before it differs from that run."""

    layer: int
    resid: torch.Tensor  # [N, pos, d]: the residual entering ``layer``
    outputs: torch.Tensor  # [senders before ``layer``, N, pos, d]


def first_difference(clean: torch.Tensor, corrupted: torch.Tensor, last: torch.Tensor) -> int:
    """The first position where any row's two prompts differ, and at most the earliest last position
    (so every row's last position is computed)."""
    differs = (clean != corrupted).any(0).nonzero()
    first = int(differs[0]) if differs.numel() else clean.shape[1]
    return min(first, int(last.min()))


@torch.no_grad()
def shared_prefix(gm: GraphModel, x0: torch.Tensor, start: int) -> Prefix | None:
    """The keys and values of ``x0``'s first ``start`` positions (None when there are none)."""
    if start <= 0:
        return None
    N = x0.shape[0]
    kv: list[tuple[torch.Tensor, torch.Tensor]] = []
    run_graph(gm, x0[:, :start], torch.full((N,), start - 1, dtype=torch.long, device=x0.device),
              torch.zeros(N, 2, dtype=torch.long, device=x0.device), _kv=kv)
    return Prefix(start, tuple(kv))


def run_graph(
    gm: GraphModel,
    x0: torch.Tensor,
    last: torch.Tensor,
    answers: torch.Tensor | Targets,
    *,
    keep: torch.Tensor | None = None,
    replacement: torch.Tensor | None = None,
    record: bool = False,
    receiver_grad: ReceiverGrad | None = None,
    prefix: Prefix | None = None,
    resume: Resume | None = None,
    dims: torch.Tensor | None = None,
    kq_grad: KQGrad | None = None,
    kq: "KQPatch | None" = None,
    _kv: list | None = None,
    _resid: list | None = None,
) -> GraphRun:
    """Run the model from input embeddings ``x0`` ``[N, pos, d]``.

    Tensors are sender- or receiver-first (``[sender, batch, pos, d]``) so that every edge
    contraction is one plain matrix product over ``batch·pos·d``.

    Args:
        keep: ``[K, sender, receiver]`` (1 = the receiver reads the live sender, 0 = it reads
            ``replacement``); ``None`` runs unpatched. Non-edges are ignored. Position-resolved
            edges (``circuits.positional``): ``[K, sender, receiver, N, pos]``, the edge read live
            or replaced at each example's each position (no ``prefix`` or ``resume`` then).
        replacement: sender outputs ``[sender, N or 1, pos, d]`` used where ``keep`` is 0.
        record: return every sender's output ``[sender, K*N, pos, d]`` (with ``prefix``, at
            positions ``prefix.start:`` only).
        receiver_grad: called during the backward pass with ∂metric/∂input of each receiver
            block — a layer's q/k/v ``[3H, K*N, pos, d]``, its MLP ``[1, K*N, pos, d]``, the
            logits ``[1, K*N, d]`` (each example's last position). Unpatched, the q/k/v gradients
            come from the fused projection's gradient through an explicit LayerNorm backward,
            so no per-receiver copy of the residual is normalised in the forward.
        prefix: the batch's shared first positions (:func:`shared_prefix`); ``x0`` and
            ``replacement`` then hold positions ``prefix.start:`` only, ``last`` stays absolute.
        resume: start at a layer from an unpatched run's state (:class:`Resume`); every dropped
            edge must end at that layer or later.
        dims: ``[K, sender, d]`` with ``keep``: the output dimensions of each sender that its dropped
            edges still read live (1); they read ``replacement`` only where this is 0. MIB's node- and
            neuron-level circuits (:mod:`circuitwise.circuits.neurons`): every edge dropped, a
            sender's kept dimensions live. No ``resume`` then.
        kq_grad: with ``receiver_grad``, also called with each layer's key/value input gradients split
            by query rows (:data:`KQGrad`; circuits.positional_kq).
        kq: key/value receivers read per query column (:class:`KQPatch`), with a position-resolved
            ``keep`` (whose key/value entries it overrides).
        _kv: a list that receives each layer's prepared keys and values (for :func:`shared_prefix`).
        _resid: a list that receives the residual entering each layer (for :class:`Resume`).

    Without ``record`` or ``receiver_grad`` nothing reads the last layer's queries, MLP or the
    final residual except at each example's last position, so they are computed there only.
    """
    g, w = gm.graph, gm.w
    N, P, d = x0.shape
    p0 = 0 if prefix is None else prefix.start
    positional = keep is not None and keep.dim() == 5
    if positional and (prefix is not None or resume is not None):
        raise ValueError("position-resolved keep masks run every position: no prefix or resume")
    # A position-resolved mask patches receivers at every position, so every position is computed.
    last_only = not record and receiver_grad is None and not positional
    K = 1 if keep is None else int(keep.shape[0])
    H, S, L = g.n_heads, len(g.senders), g.n_layers
    x = x0 if K == 1 else x0.repeat(K, 1, 1)
    KN = K * N
    last = last.to(x.device)
    at = last - p0  # each example's last position among this run's positions
    rows = torch.arange(KN, device=x.device)
    drop = D = rep_last = None
    if keep is not None:
        if replacement is None:
            raise ValueError("keep needs a replacement")
        adj = g.adjacency.to(x.device)
        drop = (1 - keep.to(x.dtype)) * (adj[:, :, None, None] if positional else adj)
        D = x.new_zeros(K, S, N, P, d)  # live − replacement, per sender
    differentiable = keep is not None and keep.requires_grad
    # Every edge either kept or dropped (not a mask being trained): the first layer's shortcut.
    # Kept dimensions (``dims``) make the input's replacement partial, which the shortcut cannot pick.
    binary = (last_only and drop is not None and not differentiable and L > 1 and dims is None
              and bool(((drop == 0) | (drop == 1)).all()))
    dim_drop = None
    if dims is not None:
        if keep is None or resume is not None or positional:
            raise ValueError("dims needs keep, and no resume or position-resolved mask")
        dim_drop = 1 - dims.to(x.dtype)
    outs = x.new_empty(S, KN, P, d) if record else None
    rep = replacement
    # A split model (models.placement): block l runs on w.device_of(l); what the walk carries moves
    # where the device changes, and results and gradients come back to the caller's device.
    home = here = x.device
    resid: torch.Tensor
    D_last: torch.Tensor | None = None
    if receiver_grad is not None and w.split:
        receiver_grad = _on_device(home, receiver_grad)

    def cross(dev: torch.device) -> None:
        nonlocal here, x0, resid, last, at, rows, D, rep, drop, D_last, rep_last
        here = dev
        x0, resid, last, at, rows = (placement.move(t, dev) for t in (x0, resid, last, at, rows))
        D, rep, drop, D_last, rep_last = (placement.move_opt(t, dev) for t in (D, rep, drop, D_last, rep_last))

    def store(Dt: torch.Tensor | None, rp: torch.Tensor | None, sl: slice | int, live: torch.Tensor
              ) -> torch.Tensor | None:
        """``Dt`` with sender(s) ``sl``'s live − replacement written: ``live`` ``[KN, Pq, d]``, or
        ``[H, KN, Pq, d]`` for a layer's heads."""
        if outs is not None:
            outs[sl] = placement.move(live.detach(), home)
        if Dt is None:
            return None
        assert rp is not None
        if differentiable:  # earlier layers' reads of D must survive for the backward pass
            Dt = Dt.clone()
        Pq = Dt.shape[3]
        if isinstance(sl, int):
            Dt[:, sl] = live.view(K, N, Pq, d) - rp[sl]
        else:
            Dt[:, sl] = live.view(-1, K, N, Pq, d).transpose(0, 1) - rp[sl]
        if dim_drop is not None:
            # On a split model (models.placement) this block may run away from where dims came from.
            Dt[:, sl] *= dim_drop[:, sl, None, None, :].to(Dt.device)
        return Dt

    def patched(resid: torch.Tensor, Dt: torch.Tensor | None, n_send: int, rs: slice | int) -> torch.Tensor | None:
        """Receiver inputs ``[R, KN, Pq, d]`` with dropped edges replaced, or None if none dropped."""
        if drop is None:
            return None
        dr = drop[:, :n_send, rs]
        if isinstance(rs, int):
            dr = dr.unsqueeze(2)
        if not bool(dr.any()) and not dr.requires_grad:  # a mask being differentiated always patches
            return None
        assert Dt is not None
        R, Pq = dr.shape[2], Dt.shape[3]
        if positional:  # each example's each position drops its own edges
            delta = torch.einsum("ksrnp,ksnpd->rknpd", dr, Dt[:, :n_send]).reshape(R, KN, Pq, d)
            return resid.unsqueeze(0) - delta
        Dn = Dt[:, :n_send].reshape(K, n_send, N * Pq * d)
        if K == 1:
            delta = (dr[0].T @ Dn[0]).view(R, KN, Pq, d)
        else:
            delta = torch.bmm(dr.transpose(1, 2), Dn).transpose(0, 1).reshape(R, KN, Pq, d)
        return resid.unsqueeze(0) - delta

    if resume is None:
        D = store(D, rep, 0, x)
        resid, first = x, 0
    else:
        before = g.qkv_receivers(resume.layer).start  # the receivers of earlier layers
        if record or drop is None or bool(drop[:, :, :before].any()):
            raise ValueError("a resumed run must be patched, unrecorded, and drop no edge before its layer")
        assert D is not None and rep is not None
        n0 = resume.outputs.shape[0]
        D[:, :n0] = resume.outputs.unsqueeze(0) - rep[:n0]
        resid, first = (resume.resid if K == 1 else resume.resid.repeat(K, 1, 1)), resume.layer
    rot_all = w.rotary(p0 + P) if w.rot_dim else None
    for l in range(first, L):
        if w.device_of(l) != here:
            cross(w.device_of(l))
        lw = w.layers[l]
        rot = None if rot_all is None else (rot_all[l][0][p0:], rot_all[l][1][p0:])
        # A query/key norm over all heads couples the heads (OLMo 2): each receiver then runs the
        # whole projection from its own input, which only the per-receiver path does.
        coupled = (lw.q_norm is not None or lw.k_norm is not None) and not lw.qk_norm_per_head
        rs = g.qkv_receivers(l)
        n_attn = g.senders_before_attn(l)
        final = last_only and l == L - 1
        if final:
            # From the last layer's queries on, only each example's last position is read.
            resid_q = resid[rows, at.repeat(K)].unsqueeze(1)  # [KN, 1, d]
            if D is not None:
                assert rep is not None
                D_last = D[:, :, torch.arange(N, device=resid.device), at].unsqueeze(3)  # [K, S, N, 1, d]
                r_rows = torch.arange(N, device=resid.device) if rep.shape[1] == N else torch.zeros_like(at)
                rep_last = rep[:, r_rows, at].unsqueeze(2)  # [S, N, 1, d]
            else:
                D_last = None
            q_in = patched(resid_q, D_last, n_attn, slice(rs.start, rs.start + H))
            kv_in = patched(resid, D, n_attn, slice(rs.start + H, rs.stop))
            qh = _project(gm, l, 0, H, resid_q, q_in, coupled)
            kvh = _project(gm, l, H, 3 * H, resid, kv_in, coupled)
            if gm.b_QKV[l] is not None and not coupled:
                qh, kvh = qh + gm.b_QKV[l][:H, None, None, :], kvh + gm.b_QKV[l][H:, None, None, :]
            kh, vh = kvh[:H], kvh[H:]
            q_pos = last.repeat(K)[:, None]  # [KN, 1], absolute
            rot_q = None if rot is None else (rot_all[l][0][q_pos][:, None], rot_all[l][1][q_pos][:, None])
        elif l == 0 and binary:
            # The first layer's q/k/v read the input alone, so each receiver reads one of two
            # tensors (the live embedding or its replacement): project both once and pick.
            assert rep is not None
            live = _project(gm, 0, 0, 3 * H, x0, None, coupled)  # [3H, N, P, dh]
            other = _project(gm, 0, 0, 3 * H, rep[0].expand(N, P, d), None, coupled)
            dropped = drop[:, 0, rs].T.bool()[:, :, None, None, None]  # [3H, K, 1, 1, 1]
            qkv = torch.where(dropped, other[:, None], live[:, None]).flatten(1, 2)  # [3H, KN, P, dh]
            if gm.b_QKV[l] is not None and not coupled:
                qkv = qkv + gm.b_QKV[l][:, None, None, :]
            qh, kh, vh = qkv[:H], qkv[H:2 * H], qkv[2 * H:]
            q_pos = torch.arange(p0, p0 + P, device=resid.device)
            rot_q = rot
        else:
            inp = patched(resid, D, n_attn, rs)
            if inp is None and coupled and receiver_grad is not None:
                inp = resid.unsqueeze(0).expand(3 * H, *resid.shape)
            if inp is not None and receiver_grad is not None:
                _on_grad(inp, rs, receiver_grad)
            qkv = _project(gm, l, 0, 3 * H, resid, inp, coupled)
            if inp is None and receiver_grad is not None:
                _on_qkv_grad(gm, l, qkv, resid.detach(), rs, receiver_grad)
            if gm.b_QKV[l] is not None and not coupled:
                qkv = qkv + gm.b_QKV[l][:, None, None, :]
            qh, kh, vh = qkv[:H], qkv[H:2 * H], qkv[2 * H:]
            q_pos = torch.arange(p0, p0 + P, device=resid.device)
            rot_q = rot
        lay = lambda t: t.permute(1, 2, 0, 3)  # noqa: E731  [H, KN, P, dh] -> [KN, P, H, dh]
        q = kernels.prep_q(w, l, lay(qh), rot_q, norm=not coupled)
        k = kernels.prep_k(w, l, lay(kh), rot, norm=not coupled)
        v = vh.transpose(0, 1)
        if prefix is not None:
            pk, pv = prefix.kv[l]
            k, v = torch.cat([pk.repeat(K, 1, 1, 1), k], 2), torch.cat([pv.repeat(K, 1, 1, 1), v], 2)
        if _resid is not None:
            _resid.append(resid)
        if _kv is not None:
            _kv.append((k, v))
        z = kernels.mix(w, kernels.pattern(w, l, q, k, q_pos, group=1), v, group=1)
        if kq_grad is not None and receiver_grad is not None and not final:
            _on_kq_grad(gm, l, z, q.detach(), resid.detach(), torch.cat([kh, vh]).detach(), rot, q_pos,
                        None if prefix is None else prefix.kv[l], coupled, kq_grad)
        if kq is not None:
            z = _kq_mix(gm, l, kq, z, q, q_pos, rot, resid, D, n_attn, coupled)
        Pq = z.shape[2]
        heads = torch.bmm(z.transpose(0, 1).reshape(H, KN * Pq, -1), gm.W_O[l]).view(H, KN, Pq, d)
        heads, rest = _post_attn(lw, heads)
        pre = resid_q if final else resid
        if final:
            D_last = store(D_last, rep_last, g.head_senders(l), heads)
        else:
            D = store(D, rep, g.head_senders(l), heads)
        resid_mid = pre + heads.sum(0) + rest
        if g.has_mlp:
            mr = g.mlp_receiver(l)
            src = pre if lw.parallel else resid_mid
            m_in = patched(src, D_last if final else D, g.senders_before_mlp(l), mr)
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
            if final:
                D_last = store(D_last, rep_last, g.mlp_sender(l), mlp_out)
            else:
                D = store(D, rep, g.mlp_sender(l), mlp_out)
            resid = resid_mid + mlp_out
        else:
            resid = resid_mid
    if w.unembed_device != here:
        cross(w.unembed_device)
    # The logits receiver: only each example's last position is read.
    final_resid = resid[:, 0] if last_only else resid[rows, at.repeat(K)]  # [KN, d]
    if drop is not None:
        dr = drop[:, :, g.logits_receiver]  # [K, S], or [K, S, N, pos] position-resolved
        if positional:
            dr = dr[:, :, torch.arange(N, device=resid.device), at]  # each example's last position
        if bool(dr.any()) or dr.requires_grad:
            D_fin = D_last[:, :, :, 0] if last_only else D[:, :, torch.arange(N, device=resid.device), at]
            how = "ksnd,ksn->knd" if positional else "ksnd,ks->knd"
            final_resid = final_resid - torch.einsum(how, D_fin, dr).reshape(KN, d)
    if receiver_grad is not None:
        final_resid = final_resid.unsqueeze(0)
        _on_grad(final_resid, g.logits_receiver, receiver_grad)
        final_resid = final_resid[0]
    targets = as_targets(answers).to(resid.device).repeat(K)
    cols = readout(kernels.final_norm(w, final_resid), w.W_U, w.b_U, targets, w.logit_softcap)
    return GraphRun(answer_logits=placement.move(cols, home).view(K, N, targets.width), outputs=outs)


def _project(gm: GraphModel, l: int, lo: int, hi: int, resid: torch.Tensor, inp: torch.Tensor | None,
             coupled: bool) -> torch.Tensor:
    """Receivers ``lo:hi`` (of the layer's q, k, v blocks) projected ``[hi−lo, KN, Pq, d_head]``.

    From their own inputs ``inp`` ``[hi−lo, KN, Pq, d]`` when patched, else from the shared
    ``resid`` in one matmul. Biases are left to the caller unless the heads are coupled.
    """
    d, n = gm.d_model, hi - lo
    if inp is not None:
        normed = kernels.attn_in(gm.w, l, inp)
        if coupled:
            return _coupled_qkv(gm, l, normed, lo)
        return torch.bmm(normed.reshape(n, -1, d), gm.W_QKV[l][lo:hi]).view(n, *inp.shape[1:3], -1)
    Wf = gm.W_QKV[l][lo:hi].permute(1, 0, 2).reshape(d, -1)
    KN, Pq = resid.shape[:2]
    qkv = (kernels.attn_in(gm.w, l, resid) @ Wf).view(KN, Pq, n, -1).permute(2, 0, 1, 3)
    return _coupled_norms(gm, l, qkv, lo) if coupled else qkv


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


def _blocks(gm: GraphModel, lo: int, n: int) -> list[tuple[str, int]]:
    """Which of the layer's q, k, v receiver blocks rows ``lo:lo+n`` hold, with each one's first row."""
    H = gm.w.n_heads
    return [(name, i * H - lo) for i, name in enumerate("qkv") if lo <= i * H < lo + n]


def _coupled_qkv(gm: GraphModel, l: int, normed: torch.Tensor, lo: int = 0) -> torch.Tensor:
    """Per-receiver q/k/v ``[n, KN, P, d_head]`` when a query/key norm spans all heads.

    Receiver h runs the whole projection (and its norm) from its own input and keeps head h's
    slice (its key/value head's, for keys and values); biases are included, norms applied.
    ``normed`` holds whole q, k or v blocks, starting at receiver row ``lo``.
    """
    w = gm.w
    lw = w.layers[l]
    H, dh = w.n_heads, w.d_head
    idx = torch.arange(H, device=normed.device)
    kv = idx // w.group
    parts = {"q": (lw.w_q, lw.b_q, lw.q_norm, idx), "k": (lw.w_k, lw.b_k, lw.k_norm, kv),
             "v": (lw.w_v, lw.b_v, None, kv)}

    def run(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, norm: Any, pick: torch.Tensor):
        full = kernels.linear(x, weight, bias)  # [H, KN, P, n·dh]
        if norm is not None:
            full = norm(full)
        full = full.view(*full.shape[:-1], -1, dh)  # [H, KN, P, n, dh]
        return full[idx, :, :, pick]  # [H, KN, P, dh]

    return torch.cat([run(normed[at:at + H], *parts[name]) for name, at in _blocks(gm, lo, normed.shape[0])])


def _coupled_norms(gm: GraphModel, l: int, qkv: torch.Tensor, lo: int = 0) -> torch.Tensor:
    """The unpatched path's q/k/v blocks (one shared input, rows from ``lo``) with biases and
    all-head norms applied."""
    w = gm.w
    lw = w.layers[l]
    H, g = w.n_heads, w.group
    if gm.b_QKV[l] is not None:
        qkv = qkv + gm.b_QKV[l][lo:lo + qkv.shape[0], None, None, :]
    flat = lambda t: t.permute(1, 2, 0, 3).flatten(-2)  # noqa: E731  [n, KN, P, dh] -> [KN, P, n·dh]
    back = lambda t, n: t.view(*t.shape[:-1], n, -1).permute(2, 0, 1, 3)  # noqa: E731
    out = []
    for name, at in _blocks(gm, lo, qkv.shape[0]):
        t = qkv[at:at + H]
        if name == "q" and lw.q_norm is not None:
            t = back(lw.q_norm(flat(t)), H)
        elif name == "k" and lw.k_norm is not None:
            k = back(lw.k_norm(flat(t[::g])), w.n_kv_heads)  # the distinct key heads
            t = k.repeat_interleave(g, 0)
        out.append(t)
    return torch.cat(out)


def _on_device(device: torch.device, receiver_grad: ReceiverGrad) -> ReceiverGrad:
    """``receiver_grad`` handed its gradients on ``device`` (where the caller's sums live)."""
    return lambda rs, grad: receiver_grad(rs, placement.move(grad, device))


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


def _kv_heads(gm: GraphModel, l: int, resid: torch.Tensor, inp: torch.Tensor, rot: Any, coupled: bool,
              pkv: tuple[torch.Tensor, torch.Tensor] | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Layer ``l``'s prepared keys and values ``[KN, H, key, d_head]`` from the key then value
    receivers' own inputs ``inp`` ``[2H, KN, P, d]`` (the forward's kernels, so the same numbers),
    after the prefix's ``pkv`` (repeated to KN rows) if any."""
    H = gm.graph.n_heads
    kv = _project(gm, l, H, 3 * H, resid, inp, coupled)
    if gm.b_QKV[l] is not None and not coupled:
        kv = kv + gm.b_QKV[l][H:, None, None, :]
    k = kernels.prep_k(gm.w, l, kv[:H].permute(1, 2, 0, 3), rot, norm=not coupled)
    v = kv[H:].transpose(0, 1)
    if pkv is not None:
        r = k.shape[0] // pkv[0].shape[0]
        k, v = torch.cat([pkv[0].repeat(r, 1, 1, 1), k], 2), torch.cat([pkv[1].repeat(r, 1, 1, 1), v], 2)
    return k, v


def _on_kq_grad(gm: GraphModel, l: int, z: torch.Tensor, q: torch.Tensor, resid: torch.Tensor, kv: torch.Tensor,
                rot: Any, q_pos: torch.Tensor, pkv: tuple[torch.Tensor, torch.Tensor] | None, coupled: bool,
                kq_grad: KQGrad) -> None:
    """On ``z``'s gradient, hand ``kq_grad`` the key/value input gradients split by query rows.

    A query row's output ``z[q]`` reads the keys and values only through its own attention row, so
    the part of ∂m/∂in_r[k] that flows through query ``q`` is the backward of ``z`` from its
    gradient at rows ``q`` alone: the layer's attention is re-run from detached inputs for that —
    from the heads' keys and values ``kv`` ``[2H, KN, P, d_head]`` (biases added), then back through
    the projection and the norm as :func:`_on_qkv_grad` does; with query/key norms over all heads,
    from each receiver's own input.
    """
    H = gm.graph.n_heads
    ln = gm.w.layers[l].ln1

    def hook(gz: torch.Tensor) -> None:
        def split(rows: torch.Tensor) -> torch.Tensor:
            back = gz * rows[:, None, :, None].to(gz.device, gz.dtype)
            with torch.enable_grad():
                if coupled:
                    inp = resid.unsqueeze(0).expand(2 * H, *resid.shape).detach().requires_grad_(True)
                    k, v = _kv_heads(gm, l, resid, inp, rot, coupled, pkv)
                else:
                    inp = kv.detach().requires_grad_(True)
                    k = kernels.prep_k(gm.w, l, inp[:H].permute(1, 2, 0, 3), rot)
                    v = inp[H:].transpose(0, 1)
                    if pkv is not None:
                        r = k.shape[0] // pkv[0].shape[0]
                        k = torch.cat([pkv[0].repeat(r, 1, 1, 1), k], 2)
                        v = torch.cat([pkv[1].repeat(r, 1, 1, 1), v], 2)
                zz = kernels.mix(gm.w, kernels.pattern(gm.w, l, q, k, q_pos, group=1), v, group=1)
                (g,) = torch.autograd.grad(zz, inp, back)
            if coupled:
                return g
            R, KN, P, dh = g.shape
            dy = torch.bmm(g.reshape(R, KN * P, dh), gm.W_QKV[l][H:].transpose(1, 2)).view(R, KN, P, -1)
            return dy if ln is None else ln.backward(resid, dy)

        kq_grad(l, split)

    z.register_hook(hook)


@dataclass(frozen=True)
class KQPatch:
    """Key/value edges kept per (key column, query column): ``keep`` ``[K, sender, layer, 2H, C, C]``
    (the layer's key receivers, then its values; 1 = the edge's value at that key column is read live
    by the queries of that query column, 0 = from ``replacement``); ``columns`` ``[N, pos]`` each
    position's column (−1: none, read live)."""

    keep: torch.Tensor
    columns: torch.Tensor


def _kq_mix(gm: GraphModel, l: int, kq: KQPatch, z: torch.Tensor, q: torch.Tensor, q_pos: torch.Tensor, rot: Any,
            resid: torch.Tensor, D: torch.Tensor | None, n_attn: int, coupled: bool) -> torch.Tensor:
    """``z`` with each query column's rows recomputed from keys and values patched for that column."""
    if D is None:
        raise ValueError("kq needs a position-resolved keep and replacement")
    H, C = gm.graph.n_heads, kq.keep.shape[-1]
    K, N, P = D.shape[0], D.shape[2], D.shape[3]
    cols = kq.columns.to(z.device)
    onehot = torch.zeros(N, P, C + 1, dtype=D.dtype, device=z.device)
    onehot.scatter_(-1, torch.where(cols < 0, C, cols)[..., None], 1.0)
    rs = gm.graph.qkv_receivers(l)
    adj = gm.graph.adjacency[:n_attn, rs.start + H:rs.stop].to(D.dtype).to(z.device)  # [S, 2H]
    keep = kq.keep[:, :n_attn, l].to(D.dtype).to(z.device)  # [K, S, 2H, C, C]
    for c in range(C):
        rows = (cols == c).repeat(K, 1)  # [KN, P]
        if not bool(rows.any()):
            continue
        kc = torch.cat([keep[..., c], torch.ones_like(keep[..., :1, c])], -1)  # padding reads live
        drop = (1 - torch.einsum("ksrj,npj->ksrnp", kc, onehot)) * adj[None, :, :, None, None]
        delta = torch.einsum("ksrnp,ksnpd->rknpd", drop, D[:, :n_attn]).reshape(2 * H, K * N, P, -1)
        k, v = _kv_heads(gm, l, resid, resid.unsqueeze(0) - delta, rot, coupled, None)
        zc = kernels.mix(gm.w, kernels.pattern(gm.w, l, q, k, q_pos, group=1), v, group=1)
        z = torch.where(rows[:, None, :, None], zc, z)
    return z


def check_against_bridge(model: Any, gm: GraphModel, tokens: torch.Tensor, last: torch.Tensor,
                         answers: torch.Tensor, *, atol: float = 1e-3) -> None:
    """Raise if the graph forward's answer logits differ from the bridge's own forward.

    Once a model has passed (for these weights), later calls return at once.
    """
    if gm.checked:
        return
    atol = tolerance(model.W_E.dtype, atol)
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


__all__ = ["ACTIVATIONS", "GraphModel", "GraphRun", "KQGrad", "KQPatch", "Prefix", "ReceiverGrad",
           "check_against_bridge", "first_difference", "graph_model", "run_graph", "shared_prefix"]
