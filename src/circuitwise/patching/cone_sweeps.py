"""Each sweep's patches, turned into start states of the cone engine.

Every patch reduces to "the residual entering block S changed from position p on":

- ``resid_pre`` (L, p): block S = L, row p replaced;
- ``attn_out``/``mlp_out``/``heads_by_pos`` (L, p): only row p of layer L's output changes, so
  finish layer L on that row and start at S = L + 1 with row p replaced;
- ``heads``/``head_q|k|v|pattern`` (L, h): recompute head h's output at every position from the
  patched q, k, v or pattern (the rest from the cache), finish layer L on positions p0…, where p0
  is the first position whose patched input differs, and start at S = L + 1.

A patch whose source and base activations are identical (all positions before a corruption,
typically) changes nothing: its value is the unpatched metric, exactly, without a forward.
So is a patch after an example's last token (padding).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from circuitwise.metrics import targets_of
from circuitwise.models import kernels as K
from circuitwise.models import placement
from circuitwise.models.weights import Weights, read_weights
from circuitwise.patching.cells import skipped_cells
from circuitwise.patching.cone import MAX_ROWS, Cone
from circuitwise.patching.runs import MetricFn, PairRun
from circuitwise.patching.sweeps import Sweep


def needed_names(sweep: Sweep, n_layers: int) -> tuple[set[str], set[str]]:
    """Activations the cone engine reads from the base and the source run."""
    per = lambda fmt: {fmt.format(l=l) for l in range(n_layers)}  # noqa: E731
    base = per("blocks.{l}.hook_resid_pre") | per("blocks.{l}.attn.hook_z")
    base |= {sweep.hook_name(l) for l in range(n_layers)}
    extra = {"mlp_out": ["blocks.{l}.hook_resid_post"], "head_q": ["blocks.{l}.attn.hook_k"],
             "head_k": ["blocks.{l}.attn.hook_q"], "head_v": ["blocks.{l}.attn.hook_pattern"],
             "head_pattern": ["blocks.{l}.attn.hook_v"]}
    for fmt in extra.get(sweep.name, []):
        base |= per(fmt)
    if sweep.name in ("head_q", "head_k"):
        base |= per("blocks.{l}.attn.hook_v")
    return base, {sweep.hook_name(l) for l in range(n_layers)}


class ConeSweeper:
    engine = "cone"

    def __init__(self, model: Any, pair: PairRun, metric: MetricFn, weights: Weights | None = None):
        self.w = weights or read_weights(model)
        self.pair = _at_home(pair) if self.w.split else pair
        L = self.w.n_layers
        self.last = pair.tok.last
        self.cone = Cone(self.w, [self.resid_pre(l) for l in range(L)], self.last, targets_of(pair.tok), metric)

    def self_check(self) -> float:
        return self.cone.self_check(self.pair.base["blocks.0.hook_resid_pre"], self.pair.base_metric)

    def resid_pre(self, l: int) -> torch.Tensor:
        return self.pair.base[f"blocks.{l}.hook_resid_pre"]

    # ---- dispatch -----------------------------------------------------------------------------

    def layer_values(self, sweep: Sweep, l: int, pos_index: torch.Tensor | None,
                     mask: torch.Tensor | None = None) -> torch.Tensor:
        """Patched metric per example for every cell of layer ``l``: ``[batch, *cells]``; only the
        cells in ``mask`` (``[*cells]``, default all) are patched, the others are NaN."""
        if mask is not None:
            mask = mask.to(self.last.device)
        if sweep.site == "head":
            return skipped_cells(self._head_layer(sweep, l, mask), mask)
        assert pos_index is not None
        return skipped_cells(self._pos_layer(sweep, l, pos_index.to(self.last.device), mask), mask)

    def _from_rows(self, start: int, ex: torch.Tensor, pos: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """Metric of variants whose residual entering block ``start`` differs at one row only."""
        out = self.pair.base_metric[ex].clone()
        if start >= self.w.n_layers:
            at_answer = pos == self.last[ex]  # elsewhere the final row is never read
            if bool(at_answer.any()):
                out[at_answer] = self.cone.metric_at(rows[at_answer], ex[at_answer])
            return out
        base = self.resid_pre(start)
        T = base.shape[1]

        def build(p: int, sel: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            x = base[ex[sel], p:].clone()
            x[:, 0] = rows[sel]
            return x, ex[sel]

        pieces = [(p, sel) for p in torch.unique(pos).tolist()
                  for sel in _chunks((pos == p).nonzero().squeeze(1), T - p)]
        for (_, sel), metric in self._run_pieces(start, T, pieces, build):
            out[sel] = metric
        return out

    def _run_pieces(self, start: int, T: int, pieces: list, build):
        """Run ``pieces`` (p0, selection) through the cone, as few stacked calls as MAX_ROWS allows."""
        batch: list = []
        rows = 0
        for piece in pieces + [None]:
            n = 0 if piece is None else len(piece[1]) * (T - piece[0])
            if batch and (piece is None or rows + n > MAX_ROWS):
                metrics = self.cone.run_many(start, [(p0, *build(p0, sel)) for p0, sel in batch])
                yield from zip(batch, metrics)
                batch, rows = [], 0
            if piece is not None:
                batch.append(piece)
                rows += n

    def _pos_layer(self, sweep: Sweep, l: int, pos_index: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        pair, name = self.pair, sweep.hook_name(l)
        B, P = pos_index.shape
        rows_b = torch.arange(B, device=pos_index.device)[:, None].expand(B, P)
        src, base = pair.src[name][rows_b, pos_index], pair.base[name][rows_b, pos_index]
        changed = (src != base).any(-1)  # [B, P] or [B, P, H]
        in_prompt = pos_index <= self.last[:, None]
        changed &= in_prompt[..., None] if changed.dim() == 3 else in_prompt
        out = pair.base_metric.view(B, *[1] * (changed.dim() - 1)).expand(changed.shape).clone()
        if mask is not None:
            changed &= mask
        idx = changed.nonzero()
        if idx.shape[0] == 0:
            return out
        ex, col = idx[:, 0], idx[:, 1]
        pos = pos_index[ex, col]
        start, rows = getattr(self, _ROW_PATCHES[sweep.name])(l, idx, pos, src[ex, col], base[ex, col])
        out[tuple(idx.T)] = self._from_rows(start, ex, pos, rows)
        return out

    # Each returns (block S, the residual row entering S) for patched cells ``idx`` at ``pos``.

    def _resid_pre_row(self, l, idx, pos, src, base):
        return l, src

    def _mlp_out_row(self, l, idx, pos, src, base):
        # resid_post = (resid_pre + attention) + MLP in sequential and parallel blocks alike.
        return l + 1, self.pair.base[f"blocks.{l}.hook_resid_post"][idx[:, 0], pos] - base + src

    def _attn_out_row(self, l, idx, pos, src, base):
        return l + 1, self.cone.finish(l, self.resid_pre(l)[idx[:, 0], pos], src)

    def _head_z_row(self, l, idx, pos, src, base):
        """One head's z replaced in the row's full z ``[V, head, d_head]``, then the rest of layer l."""
        ar, head = torch.arange(idx.shape[0], device=idx.device), idx[:, 2]
        z = base.clone()
        z[ar, head] = src[ar, head]
        return l + 1, self.cone.finish(l, self.resid_pre(l)[idx[:, 0], pos], self.cone.attn_write(l, z.flatten(1)))

    # ---- whole-head sweeps --------------------------------------------------------------------

    def _head_inputs(self, sweep: Sweep, l: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Head-major patched z ``[batch, head, pos, d_head]`` and which positions' inputs changed.

        Every cell is patched at once: a query head's z depends only on its own query and its
        key/value head, so each cell's z is as if it alone were patched. Cells are query heads,
        or key/value heads for ``k``/``v`` (with grouped keys one cell feeds its whole group).
        """
        pair, w = self.pair, self.w
        hm = lambda t: t.transpose(1, 2)  # noqa: E731  [b,pos,head,d] -> [b,head,pos,d]
        get = lambda run, act: run[f"blocks.{l}.attn.hook_{act}"]  # noqa: E731
        src, base = get(pair.src, sweep.act), get(pair.base, sweep.act)
        if sweep.act == "pattern":
            differs = (src != base).any(-1)  # [b, head, dest]
            return K.mix(w, src, hm(get(pair.base, "v"))), differs
        differs = hm((src != base).any(-1))  # [b, cell, pos]
        if sweep.act == "z":
            return hm(src), differs
        if sweep.act == "v":
            return K.mix(w, get(pair.base, "pattern"), hm(src)), differs
        T = src.shape[1]
        rot = w.rotary(T)[l] if w.rot_dim else None
        v = hm(get(pair.base, "v"))

        def z_of(q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
            def on_layer(q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:  # the norms' weights live there
                return K.pattern(w, l, K.prep_q(w, l, q, rot), K.prep_k(w, l, k, rot), torch.arange(T, device=q.device))

            return K.mix(w, self.cone.on_layer(l, on_layer, q, k), v)

        lw = w.layers[l]
        if lw.qk_norm_per_head or (lw.q_norm if sweep.act == "q" else lw.k_norm) is None:
            return z_of(src if sweep.act == "q" else get(pair.base, "q"),
                        src if sweep.act == "k" else get(pair.base, "k")), differs
        # A norm over all heads' queries (OLMo 2) couples the heads: one cell's patch moves every
        # head, so each cell gets its own run ([batch, cell, head, pos, d_head]).
        cells = []
        for c in range(base.shape[2]):
            mixed = base.clone()
            mixed[:, :, c] = src[:, :, c]
            cells.append(z_of(mixed, get(pair.base, "k")) if sweep.act == "q" else z_of(get(pair.base, "q"), mixed))
        return torch.stack(cells, 1), differs

    def _head_layer(self, sweep: Sweep, l: int, mask: torch.Tensor | None) -> torch.Tensor:
        pair, w = self.pair, self.w
        z_new, differs = self._head_inputs(sweep, l)
        B, C, T = differs.shape
        per_cell = z_new.dim() == 5  # each cell moves every head
        g = w.n_heads if per_cell else w.n_heads // C  # query heads per cell
        out = pair.base_metric[:, None].expand(B, C).clone()
        any_diff = differs.any(-1)
        first = torch.where(any_diff, differs.int().argmax(-1), torch.full_like(any_diff, T, dtype=torch.long))
        live = any_diff & (first <= self.last[:, None])
        if mask is not None:
            live &= mask
        idx = live.nonzero()
        z_base = pair.base[f"blocks.{l}.attn.hook_z"]  # [b, pos, head, d_head]
        p_first = first[idx[:, 0], idx[:, 1]]
        in_group = torch.arange(g, device=z_base.device)

        def build(p0: int, sel: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            """The cell's heads' new z in the full z from p0 on, then the rest of layer l on those rows."""
            ex = idx[sel, 0]
            if per_cell:
                z = z_new[ex, idx[sel, 1], :, p0:].transpose(1, 2)  # [V, pos, head, d_head]
            else:
                heads = idx[sel, 1, None] * g + in_group  # [V, g]
                z = z_base[ex, p0:].clone()  # [V, pos, head, d_head]
                z[torch.arange(len(sel), device=z.device)[:, None], :, heads] = z_new[ex[:, None], heads, p0:]
            return self.cone.finish(l, self.resid_pre(l)[ex, p0:], self.cone.attn_write(l, z.flatten(2))), ex

        pieces = [(p0, sel) for p0 in torch.unique(p_first).tolist()
                  for sel in _chunks((p_first == p0).nonzero().squeeze(1), T - p0)]
        for (_, sel), metric in self._run_pieces(l + 1, T, pieces, build):
            out[idx[sel, 0], idx[sel, 1]] = metric
        return out


_ROW_PATCHES = {"resid_pre": "_resid_pre_row", "attn_out": "_attn_out_row", "mlp_out": "_mlp_out_row",
                "heads_by_pos": "_head_z_row"}


def _at_home(pair: PairRun) -> PairRun:
    """A split model's cached runs on the caller's device (the tokens'), where the sweeps index them;
    the cone carries each variant's rows to every block's device (models.placement)."""
    home = pair.tok.last.device
    at = lambda run: {n: placement.move(t, home) for n, t in run.items()}  # noqa: E731
    return dataclasses.replace(pair, base=at(pair.base), src=at(pair.src),
                               base_metric=placement.move(pair.base_metric, home),
                               src_metric=placement.move(pair.src_metric, home))


def _chunks(sel: torch.Tensor, row_width: int) -> list[torch.Tensor]:
    """Split variant indices so one stacked call holds at most MAX_ROWS rows of ``row_width``."""
    n = max(1, MAX_ROWS // max(row_width, 1))
    return list(sel.split(n))


__all__ = ["ConeSweeper", "needed_names"]
