"""attribution_patching(): the first-order estimate of an activation-patching sweep.

Patching activation ``a`` from ``a_base`` to ``a_src`` changes the metric by about
``(a_src − a_base) · ∂metric/∂a`` at the base run. One forward (stopped at the final LayerNorm:
the metric needs two unembedding columns) and one backward per batch give that for every cell
of a sweep at once. Parameters stay frozen; the embedding output is the gradient's leaf.
Exact where the metric is linear in the patched activation, a guide elsewhere — compare with
:func:`activation_patching` (``PatchResult.correlation``).
"""

from __future__ import annotations

from typing import Any, Sequence

import torch

from circuitwise.metrics import gather_last, get_metric, prepared_for, targets_of
from circuitwise.models import placement
from circuitwise.patching.common import Progress, auto_batch_size, sweep_axes, tokenized
from circuitwise.patching.result import MIN_GAP, PatchResult
from circuitwise.patching.runs import answer_logits_from_final
from circuitwise.patching.sweeps import Sweep, check_direction, get_sweep
from circuitwise.tasks.task import Task
from circuitwise.tasks.tokenize import TokenizedTask


class _Stop(Exception):
    pass


def attribution_patching(
    model: Any,
    task: Task | TokenizedTask,
    what: str,
    *,
    metric: str = "logit_diff",
    normalize: bool = True,
    direction: str = "denoise",
    batch_size: int | None = None,
    align: str = "auto",
    progress: Progress | None = None,
    min_gap: float = MIN_GAP,
) -> PatchResult:
    """Estimate ``activation_patching(model, task, what, ...)`` from gradients.

    Same arguments and result layout as :func:`activation_patching`; ``raw`` holds the estimated
    patched metric (unpatched metric + first-order change) per example.
    """
    return attribution_sweeps(model, task, [what], metric=metric, normalize=normalize, direction=direction,
                              batch_size=batch_size, align=align, progress=progress, min_gap=min_gap)[what]


def attribution_sweeps(
    model: Any,
    task: Task | TokenizedTask,
    whats: Sequence[str],
    *,
    metric: str = "logit_diff",
    normalize: bool = True,
    direction: str = "denoise",
    batch_size: int | None = None,
    align: str = "auto",
    progress: Progress | None = None,
    min_gap: float = MIN_GAP,
) -> dict[str, PatchResult]:
    """:func:`attribution_patching` for several sweeps (by the names given) from one forward and
    one backward per batch: a run's sweeps read the same two runs' activations and gradients."""
    sweeps = [get_sweep(w) for w in whats]
    direction = check_direction(direction)
    metric_obj = get_metric(metric)
    # A vocabulary metric reads every logit, kl the clean run's distribution too (computed once here).
    tok = prepared_for(model, tokenized(model, task), metric_obj)
    axes = [sweep_axes(model, sw, tok, align) for sw in sweeps]
    bs = batch_size or auto_batch_size(model, tok, "attribution")
    L = model.cfg.n_layers
    # A pattern's only consumer is z = pattern @ v, so ∂m/∂pattern = ∂m/∂z · vᵀ exactly. Read it
    # that way everywhere: on OPT, GPT-Neo and GPT-J, TL 4.3 fires hook_pattern after Hugging
    # Face's attention has used the pattern, so its gradient there would be silently zero.
    names = [[sw.hook_name(l) for l in range(L)] for sw in sweeps]
    act_names, grad_names = [], []
    for sw, ns in zip(sweeps, names):
        act_names += ns
        if sw.act == "pattern":
            act_names += [n.replace("hook_pattern", "hook_v") for n in ns]
            grad_names += [n.replace("hook_pattern", "hook_z") for n in ns]
        else:
            grad_names += ns
    act_names, grad_names = list(dict.fromkeys(act_names)), list(dict.fromkeys(grad_names))
    raws: list[list[torch.Tensor]] = [[] for _ in sweeps]
    cleans, corrupteds = [], []
    n_batches = (len(tok) + bs - 1) // bs
    for bi, batch in enumerate(tok.batches(bs)):
        start = bi * bs
        assert batch.corrupted is not None
        base_tokens, src_tokens = (
            (batch.corrupted, batch.clean) if direction == "denoise" else (batch.clean, batch.corrupted))
        src_names = list(dict.fromkeys(n for ns in names for n in ns))
        src, src_metric = _forward(model, src_tokens, batch, src_names, metric_obj.fn, grad=False)
        base, grads, base_metric = _forward(model, base_tokens, batch, list(dict.fromkeys(act_names + grad_names)), metric_obj.fn,
                                            grad=True, grad_names=grad_names)
        for i, (sw, ns, (positions, _)) in enumerate(zip(sweeps, names, axes)):
            pos = None if positions is None else positions.slice(start, start + len(batch)).index.to(batch.last.device)
            if sw.act == "pattern":
                g = {n: _pattern_grad(grads[n.replace("hook_pattern", "hook_z")], base[n.replace("hook_pattern", "hook_v")])
                     for n in ns}
            else:
                g = grads
            cells = [_cells(sw, (src[n] - base[n]) * g[n], pos) for n in ns]
            raws[i].append((base_metric[:, None, *([None] * (cells[0].dim() - 1))] + torch.stack(cells, 1)).cpu())
        clean, corr = (src_metric, base_metric) if direction == "denoise" else (base_metric, src_metric)
        cleans.append(clean.cpu())
        corrupteds.append(corr.cpu())
        if progress is not None:
            progress(bi + 1, n_batches)
    out = {}
    for what, sw, (positions, labels), raw in zip(whats, sweeps, axes, raws):
        config = {
            "what": sw.name, "direction": direction, "metric": metric_obj.name, "normalize": normalize,
            "method": "attribution", "align": None if positions is None else positions.mode, "batch_size": bs,
            "n_examples": len(tok), "task": tok.task.name, "model": str(getattr(model, "circuitwise_name", "?")),
            "pos_tokens": [list(t) for t in tok.str_tokens] if positions is not None else None,
        }
        out[what] = PatchResult.build(torch.cat(raw), torch.cat(cleans), torch.cat(corrupteds), axes=sw.axes,
                                      labels=labels, metric=metric_obj.name, normalize=normalize, config=config,
                                      min_gap=min_gap)
    return out


def _cells(sweep: Sweep, contrib: torch.Tensor, pos: torch.Tensor | None) -> torch.Tensor:
    """Sum an elementwise ``Δa · grad`` over each cell: ``[batch, *cells]`` for one layer."""
    if sweep.site == "head":
        if sweep.act == "pattern":  # [b, head, dest, src]
            return contrib.sum((-1, -2))
        return contrib.sum(-1).sum(1)  # [b, pos, head, d] -> [b, head]
    per_pos = contrib.sum(-1)  # [b, pos] or [b, pos, head]
    assert pos is not None
    rows = torch.arange(per_pos.shape[0], device=per_pos.device)[:, None]
    return per_pos[rows, pos]


def _pattern_grad(grad_z: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """∂m/∂pattern ``[b, head, dest, src]`` from ∂m/∂z ``[b, dest, head, d]`` and v ``[b, src, kv_head, d]``."""
    v = v.repeat_interleave(grad_z.shape[2] // v.shape[2], dim=2)  # grouped keys: a copy per query head
    return torch.einsum("bqhd,bkhd->bhqk", grad_z, v)


def _forward(model: Any, tokens: torch.Tensor, batch: TokenizedTask, names: list[str], metric: Any, *, grad: bool,
             grad_names: list[str] | None = None):
    """Activations at ``names`` and the metric; with ``grad``, also ∂(Σ metric)/∂activation at
    ``grad_names`` (default: ``names``)."""
    grad_names = names if grad_names is None else grad_names
    acts: dict[str, torch.Tensor] = {}
    grads: dict[str, torch.Tensor] = {}
    live: list[torch.Tensor] = []
    final: list[torch.Tensor] = []

    def leaf(x: torch.Tensor, hook: Any) -> torch.Tensor:
        x = x.detach().requires_grad_(True)
        live.append(x)
        return x

    def keep(name: str, into: dict[str, torch.Tensor]):
        # One closure per requested name: the hook point's own name may be a canonical alias.
        # A split model's activations and gradients come to the tokens' device (models.placement).
        def hook_fn(x: torch.Tensor, hook: Any) -> None:
            into[name] = placement.move(x.detach(), tokens.device)
        return hook_fn

    def stop(x: torch.Tensor, hook: Any) -> None:
        final.append(placement.move(gather_last(x, batch.last), tokens.device))
        raise _Stop

    fwd = [(n, keep(n, acts)) for n in names] + [("ln_final.hook_out", stop)]
    bwd = [(n, keep(n, grads)) for n in grad_names] if grad else []
    if grad:
        fwd = [("hook_embed", leaf)] + fwd
    with torch.inference_mode(False), torch.set_grad_enabled(grad), model.hooks(fwd_hooks=fwd, bwd_hooks=bwd):
        try:
            model(tokens)
        except _Stop:
            pass
        m = metric(answer_logits_from_final(model, final[0], targets_of(batch)))
        if grad:
            torch.autograd.grad(m.sum(), live)
    if not grad:
        return acts, m.detach()
    for n in grad_names:
        if n not in grads:  # a point the metric does not depend on at all
            grads[n] = torch.zeros_like(acts[n])
    return acts, grads, m.detach()


__all__ = ["attribution_patching", "attribution_sweeps"]
