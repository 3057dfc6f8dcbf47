"""Head loadings: which attention heads carry each edge of an attribution graph.

An edge from a sender at position ``s`` to a receiver at position ``t`` is a sum over paths through the
frozen replacement. Every path either passes through no attention head (only possible when ``s == t``:
the residual stream, skip paths and norms at ``s``) or has a unique *first* head ``(layer m, head h)``.
Grouping the paths by that first head splits the edge exactly::

    edge = residual + Σ_{m,h} loading[m, h]
    loading[m, h] = Σ_{t'} pattern_m[h, t', s] · post_attn(OV_h · ln1(r_m)) · ∂receiver/∂attn_m[t']

where ``r_m`` is the sender's write carried to layer ``m`` at position ``s`` without attention, and the
gradient (taken through the whole frozen model, later heads included) is at layer ``m``'s attention
output. For a single hop this is the pattern × OV decomposition; the heads are named ``L{m}H{h}`` as
in circuitwise's head-level circuits, so a feature edge can be read next to an edge circuit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from circuitwise.errors import ConfigError
from circuitwise.features.attribute import target_read
from circuitwise.features.graph import AttributionGraph
from circuitwise.features.replacement import (
    CleanRun,
    _mlp_norm,
    check_model,
    clean_run,
    frozen_norm,
    pullback,
)
from circuitwise.features.transcoder import TranscoderSet


@dataclass(frozen=True)
class HeadLoading:
    """One edge split by the first attention head its paths pass through (see the module docstring)."""

    receiver: int
    sender: int
    edge: float
    residual: float  # paths through no head
    heads: torch.Tensor  # [n_layers, n_heads]

    def top(self, k: int = 5) -> list[tuple[str, float]]:
        """The ``k`` heads carrying most of the edge, ``("L{m}H{h}", loading)``, largest magnitude first."""
        flat = self.heads.flatten()
        idx = flat.abs().argsort(descending=True)[:k].tolist()
        H = self.heads.shape[1]
        return [(f"L{i // H}H{i % H}", float(flat[i])) for i in idx]


def _writes(graph: AttributionGraph, run: CleanRun, tcs: TranscoderSet, j: int) -> dict[int, torch.Tensor]:
    """What sender ``j`` writes at its position: ``{-1: embedding}`` or ``{layer: MLP write}``."""
    n = graph.nodes[j]
    if n.kind == "token":
        return {-1: run.embed[n.position]}
    if n.kind == "error":
        return {n.layer: run.errors[n.layer][n.position]}
    if n.kind != "feature":
        raise ConfigError(f"node {j} is a {n.kind}: only features, errors and tokens send edges")
    t = tcs[n.layer]
    act = run.acts[n.layer][n.position, n.feature]
    if not t.cross_layer:
        return {n.layer: act * t.W_dec[n.feature]}
    return {n.layer + o: act * t.W_dec[n.feature, o] for o in range(t.n_out)}


def _at(scale: torch.Tensor | None, s: int) -> torch.Tensor | None:
    return None if scale is None else scale[s]


def _split(run: CleanRun, tcs: TranscoderSet, writes: dict[int, torch.Tensor], s: int, g_attn: list[torch.Tensor],
           read: tuple[int, int, torch.Tensor]) -> tuple[torch.Tensor, float]:
    """``(loadings [L, H], residual)`` of one sender's writes at ``s`` on one receiver's gradients."""
    w = run.w
    L, H, dh = w.n_layers, w.n_heads, w.d_head
    loads = torch.zeros(L, H, dtype=w.dtype, device=w.device)
    r = writes.get(-1, torch.zeros(w.d_model, dtype=w.dtype, device=w.device))
    site, t, u = read
    residual = 0.0
    for m in range(L):
        lw = w.layers[m]
        if bool(r.any()):
            h1 = frozen_norm(lw.ln1, r, _at(run.s_ln1[m], s), bias=False)
            v = (h1 @ lw.w_v).view(-1, dh)  # [Hkv, dh]
            heads = v.repeat_interleave(w.group, 0)  # [H, dh]
            out = torch.einsum("hk,hkd->hd", heads, lw.w_o.view(H, dh, -1))  # [H, d]
            p = run.patterns[m][:, :, s]  # [H, T'] pattern of every query t' on key s
            if lw.post_attn is None:
                loads[m] = torch.einsum("hd,ht,td->h", out, p, g_attn[m])
            else:
                # The post-norm is frozen per query position: apply its scale at each t'.
                T = p.shape[1]
                post = frozen_norm(lw.post_attn, out[:, None].expand(H, T, -1), run.s_post_attn[m], bias=False)
                loads[m] = torch.einsum("htd,ht,td->h", post, p, g_attn[m])
        norm = _mlp_norm(w, m)
        t_in = frozen_norm(norm, r, _at(run.s_ln2[m], s), bias=False) \
            if tcs[m].site == "mlp_in" else r
        if site == m and t == s:
            residual = float(t_in @ u)
        m_raw = tcs[m].skip(t_in) + writes.get(m, 0)
        r = r + frozen_norm(lw.post_mlp, m_raw, _at(run.s_post_mlp[m], s),
                            bias=False)
    if site == L and t == s:
        residual = float(frozen_norm(w.ln_final, r, _at(run.s_final, s),
                                     bias=False) @ u)
    return loads, residual


def head_loadings(model: Any, transcoders: TranscoderSet, graph: AttributionGraph,
                  edges: Sequence[tuple[int, int]] | None = None, *, top: int = 20,
                  prepared: tuple[CleanRun, TranscoderSet] | None = None) -> list[HeadLoading]:
    """Head loadings of ``edges`` (``(receiver, sender)`` node indices; default the ``top`` largest edges).
    ``prepared``: the prompt's clean run, where the caller has it (features.interventions.graph_run)."""
    if graph.positions != "absolute" or len(graph.tokens) != 1:
        raise ConfigError("head loadings need one prompt's graph (absolute positions): its attention patterns")
    if edges is None:
        a = graph.adjacency.abs().flatten()
        idx = a.argsort(descending=True)[:top]
        idx = idx[a[idx] > 0]
        N = graph.n_nodes
        edges = [(int(i) // N, int(i) % N) for i in idx]
    if prepared is None:
        w = check_model(model, transcoders)
        tcs = transcoders.to(w.device, w.dtype)
        run = clean_run(model, tcs, torch.tensor(graph.tokens[0]), w)
    else:
        run, tcs = prepared
        w = run.w
    L = w.n_layers
    out: list[HeadLoading] = []
    for i, j in edges:
        n = graph.nodes[i]
        if n.kind == "feature":
            read = (n.layer, n.position, tcs[n.layer].W_enc[:, n.feature])
        elif n.kind == "target":
            read = (L, n.position, target_read(graph, w, i - graph.target_nodes.start)[0])
        else:
            raise ConfigError(f"node {i} is a {n.kind}: only features and targets receive edges")
        _, _, g_a = pullback(run, tcs, [read])
        g_attn = [g[0] for g in g_a]
        loads, residual = _split(run, tcs, _writes(graph, run, tcs, j), graph.nodes[j].position, g_attn, read)
        out.append(HeadLoading(i, j, float(graph.adjacency[i, j]), residual, loads.float().cpu()))
    return out


__all__ = ["HeadLoading", "head_loadings"]
