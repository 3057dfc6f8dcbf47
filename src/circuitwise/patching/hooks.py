"""The hook engine: TransformerLens's own patch, stacked and cut short. Any bridged architecture.

Each patched variant is a full forward of the base prompt with the same hook
``transformer_lens.patching`` would add, but many variants run as one batch, no-op patches
are skipped, and the forward stops at ``ln_final.hook_out``: the metric needs two unembedding
columns, not the whole vocabulary. Used where the cone engine does not implement the
architecture, or fails its self-check.
"""

from __future__ import annotations

from typing import Any

import torch

from circuitwise.metrics import targets_of
from circuitwise.models import placement
from circuitwise.patching.cells import skipped_cells
from circuitwise.patching.cone import MAX_ROWS
from circuitwise.patching.runs import MetricFn, PairRun, answer_logits_from_final
from circuitwise.patching.sweeps import Sweep


class _Stop(Exception):
    """Raised from the final-LayerNorm hook: everything after it is the unembedding."""


def needed_names(sweep: Sweep, n_layers: int) -> tuple[set[str], set[str]]:
    names = {sweep.hook_name(l) for l in range(n_layers)}
    if sweep.act == "pattern":  # patched through z, from the base run's values (see _run)
        return names | {f"blocks.{l}.attn.hook_v" for l in range(n_layers)}, names
    return names, names


class HookSweeper:
    engine = "hooks"

    def __init__(self, model: Any, pair: PairRun, metric: MetricFn):
        self.model, self.pair, self.metric = model, pair, metric
        self.last = pair.tok.last

    def layer_values(self, sweep: Sweep, l: int, pos_index: torch.Tensor | None,
                     mask: torch.Tensor | None = None) -> torch.Tensor:
        pair, name = self.pair, sweep.hook_name(l)
        src, base = pair.src[name], pair.base[name]
        B = src.shape[0]
        if sweep.site == "head":
            if sweep.act == "pattern":  # [b, head, dest, src]
                changed = (src != base).flatten(2).any(-1)
            else:  # [b, pos, head, d]
                changed = (src != base).any(-1).any(1)
            cell_pos = None
        else:
            assert pos_index is not None
            pos_index = pos_index.to(src.device)
            P = pos_index.shape[1]
            rows = torch.arange(B, device=src.device)[:, None].expand(B, P)
            changed = (src[rows, pos_index] != base[rows, pos_index]).any(-1)
            in_prompt = pos_index <= self.last[:, None]
            changed &= in_prompt[..., None] if changed.dim() == 3 else in_prompt
            cell_pos = pos_index
        out = pair.base_metric.view(B, *[1] * (changed.dim() - 1)).expand(changed.shape).clone()
        if mask is not None:
            changed &= mask.to(changed.device)
        idx = changed.nonzero()
        per_chunk = max(1, MAX_ROWS // pair.base_tokens.shape[1])
        for part in idx.split(per_chunk):
            out[tuple(part.T)] = self._run(sweep, name, part, cell_pos)
        return skipped_cells(out, mask)

    def _run(self, sweep: Sweep, name: str, idx: torch.Tensor, cell_pos: torch.Tensor | None) -> torch.Tensor:
        pair = self.pair
        ex = idx[:, 0]
        ar = torch.arange(ex.shape[0], device=ex.device)
        src = pair.src[name]
        pos = None if cell_pos is None else cell_pos[ex, idx[:, 1]]
        head = idx[:, -1]
        if sweep.act == "pattern":
            # Bridges whose attention runs inside the HF module (OPT, GPT-Neo, GPT-J) discard
            # hook_pattern edits, so TL's own pattern patch is a silent no-op there. The head's
            # output under the source pattern is pattern @ values (the base run's: a patch at
            # this layer cannot change them); patching hook_z with it works on every bridge.
            v = pair.base[name.replace("hook_pattern", "hook_v")]  # [b, pos, kv_head, d_head]
            group = self.model.cfg.n_heads // v.shape[2]
            z_new = torch.einsum("nqk,nkd->nqd", src[ex, head].to(v.dtype), v[ex, :, head // group])
            name = name.replace("hook_pattern", "hook_z")

        def patch(act: torch.Tensor, hook: Any) -> torch.Tensor:
            act = act.clone()
            on = lambda t: placement.move(t, act.device)  # noqa: E731  a split model's block may be elsewhere
            if sweep.site == "pos":
                act[on(ar), on(pos)] = on(src[ex, pos])
            elif sweep.site == "pos_head":
                act[on(ar), on(pos), on(head)] = on(src[ex, pos, head])
            elif sweep.act == "pattern":
                act[on(ar), :, on(head)] = on(z_new).to(act.dtype)
            else:
                act[on(ar), :, on(head)] = on(src[ex, :, head])
            return act

        final: list[torch.Tensor] = []

        def stop(act: torch.Tensor, hook: Any) -> None:
            final.append(placement.move(act[placement.move(ar, act.device), placement.move(self.last[ex], act.device)],
                                        self.last.device))
            raise _Stop

        with self.model.hooks(fwd_hooks=[(name, patch), ("ln_final.hook_out", stop)]):
            try:
                self.model(pair.base_tokens[ex])
            except _Stop:
                pass
        return self.metric(answer_logits_from_final(self.model, final[0], targets_of(pair.tok)[ex]))


__all__ = ["HookSweeper", "needed_names"]
