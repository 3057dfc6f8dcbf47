"""Edge and node attributions computed with plain TransformerLens hooks, independent of our engine.

Senders are read at ``blocks.0.hook_resid_pre`` (the input), ``attn.hook_result`` (each head) and
``hook_mlp_out``; receivers at ``attn.hook_q_input`` / ``hook_k_input`` / ``hook_v_input`` (per
head), ``hook_mlp_in`` and the last block's ``hook_resid_post`` (the logits). Gradients come from
backward hooks on a bridge forward whose weights require grad; interventions are forward hooks
that replace a hook point's value.

Under grouped-query attention TransformerLens's k/v-input hooks are per key/value head: their
gradient is the sum over the group's query heads of our ungrouped receivers' gradients. References
are therefore ``[sender, TL receiver]`` matrices; :func:`on_tl_receivers` maps our scores onto them
(the identity without grouping).
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Callable, Iterator

import torch

from circuitwise.circuits.graph import Graph, graph_of
from tests.unit.circuits.tl_reference import params_require_grad


@contextmanager
def edge_hooks(model: Any) -> Iterator[None]:
    """The bridge flags that make per-head results and per-head q/k/v inputs fire."""
    cfg = model.cfg
    saved = (cfg.use_attn_result, cfg.use_split_qkv_input, cfg.use_hook_mlp_in)
    try:
        model.set_use_attn_result(True)
        model.set_use_split_qkv_input(True)
        model.set_use_hook_mlp_in(True)
        yield
    finally:
        model.set_use_attn_result(saved[0])
        model.set_use_split_qkv_input(saved[1])
        model.set_use_hook_mlp_in(saved[2])


def sender_hooks(g: Graph) -> list[tuple[str, slice]]:
    """(hook name, sender range) for every sender group, in sender order."""
    out = [("blocks.0.hook_resid_pre", slice(0, 1))]
    for l in range(g.n_layers):
        out.append((f"blocks.{l}.attn.hook_result", g.head_senders(l)))
        if g.has_mlp:
            out.append((f"blocks.{l}.hook_mlp_out", slice(g.mlp_sender(l), g.mlp_sender(l) + 1)))
    return out


def _n_kv(model: Any) -> int:
    return int(getattr(model.cfg, "n_key_value_heads", None) or model.cfg.n_heads)


def receiver_hooks(model: Any) -> list[tuple[str, list[list[int]]]]:
    """(hook name, for each of its heads our receivers it sums) in TL receiver order."""
    g = graph_of(model)
    H, group = g.n_heads, g.n_heads // _n_kv(model)
    out = []
    for l in range(g.n_layers):
        start = g.qkv_receivers(l).start
        out.append((f"blocks.{l}.attn.hook_q_input", [[start + h] for h in range(H)]))
        for i, x in ((1, "k"), (2, "v")):
            base = start + i * H
            out.append((f"blocks.{l}.attn.hook_{x}_input",
                        [[base + h for h in range(j * group, (j + 1) * group)] for j in range(H // group)]))
        if g.has_mlp:
            out.append((f"blocks.{l}.hook_mlp_in", [[g.mlp_receiver(l)]]))
    out.append((f"blocks.{g.n_layers - 1}.hook_resid_post", [[g.logits_receiver]]))
    return out


def tl_map(model: Any) -> torch.Tensor:
    """``[our receiver, TL receiver]``: 1 where ours is (one of those) summed into TL's."""
    g = graph_of(model)
    cols = [rs for _, heads in receiver_hooks(model) for rs in heads]
    A = torch.zeros(len(g.receivers), len(cols), dtype=torch.float64)
    for j, rs in enumerate(cols):
        A[rs, j] = 1.0
    return A


def on_tl_receivers(model: Any, scores: torch.Tensor) -> torch.Tensor:
    """Our edge scores as a ``[sender, TL receiver]`` matrix."""
    g = graph_of(model)
    return g.to_dense(scores.double(), fill=0.0) @ tl_map(model)


def _heads(t: torch.Tensor) -> torch.Tensor:
    """``[b, p, d]`` or ``[b, p, h, d]`` as ``[n, b, p, d]``."""
    return t.unsqueeze(0) if t.dim() == 3 else t.permute(2, 0, 1, 3)


def sender_values(model: Any, tokens: torch.Tensor) -> torch.Tensor:
    """Every sender's output ``[S, b, p, d]`` from a plain cached forward."""
    g = graph_of(model)
    names = [n for n, _ in sender_hooks(g)]
    with edge_hooks(model), torch.no_grad():
        _, cache = model.run_with_cache(tokens, names_filter=lambda n: n in names)
    return torch.cat([_heads(cache[n]).double() for n in names])


def _metric(logits: torch.Tensor, tok: Any) -> torch.Tensor:
    rows = torch.arange(logits.shape[0])
    a = logits[rows, tok.last].gather(-1, tok.answers)
    return (a[:, 0] - a[:, 1]).sum()


def receiver_grads(model: Any, tok: Any, fwd_hooks: list[tuple[str, Callable]]) -> torch.Tensor:
    """∂(Σ metric)/∂input of every TL receiver ``[R_tl, b, p, d]``, the clean prompts run with ``fwd_hooks``."""
    grads: dict[str, torch.Tensor] = {}

    def keep(name: str) -> Callable:
        def hook(grad: torch.Tensor, hook: Any) -> None:
            grads[name] = grad.detach().double()
        return hook

    bwd = [(n, keep(n)) for n, _ in receiver_hooks(model)]
    with edge_hooks(model), params_require_grad(model), torch.enable_grad():
        with model.hooks(fwd_hooks=fwd_hooks, bwd_hooks=bwd):
            logits = model(tok.clean)
            _metric(logits, tok).backward()
        model.zero_grad(set_to_none=True)
    ref = next(iter(grads.values()))
    B, P, d = ref.shape[0], ref.shape[1], ref.shape[-1]
    # a receiver off every path to the metric (the inputs of a replaced node) gets no backward call
    return torch.cat([_heads(grads[n]) if n in grads else torch.zeros(len(h), B, P, d, dtype=torch.float64)
                      for n, h in receiver_hooks(model)])


def contract(model: Any, delta: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
    """``Σ_{b,p,d} delta_s · grad_r / b`` on the edges, ``[sender, TL receiver]`` (0 off the edges)."""
    g = graph_of(model)
    edges = (g.adjacency.double() @ tl_map(model)) > 0
    return torch.einsum("sbpd,rbpd->sr", delta, grads) / delta.shape[1] * edges


def replace(value: torch.Tensor, senders: slice | None = None) -> Callable:
    """A forward hook setting the hook point to ``value`` (``[S_group, b, p, d]`` as the hook's layout)."""
    def hook(act: torch.Tensor, hook: Any) -> torch.Tensor:
        v = value.to(act.dtype)
        v = v[0] if act.dim() == 3 else v.permute(1, 2, 0, 3).contiguous()
        # a leaf: the receivers after it are differentiated, nothing flows back through it
        return v.detach().requires_grad_(True)
    return hook


def eap_at(model: Any, tok: Any, alpha: float, delta: torch.Tensor, x_c: torch.Tensor, x_k: torch.Tensor
           ) -> torch.Tensor:
    """``(clean − corr) · ∂m/∂in_r`` with the input embedding at ``x_k + α (x_c − x_k)``."""
    x = (x_k + alpha * (x_c - x_k))
    grads = receiver_grads(model, tok, [("blocks.0.hook_resid_pre", replace(x))])
    return contract(model, delta, grads)


def ig_inputs(model: Any, tok: Any, alphas: list[float], weights: list[float]) -> torch.Tensor:
    clean, corr = sender_values(model, tok.clean), sender_values(model, tok.corrupted)
    delta = clean - corr
    return sum(w * eap_at(model, tok, a, delta, clean[:1], corr[:1]) for a, w in zip(alphas, weights))


def ig_activations(model: Any, tok: Any, alphas: list[float], weights: list[float]) -> torch.Tensor:
    """EAP-IG's ``get_scores_ig_activations``: each layer node's output interpolated in turn."""
    g = graph_of(model)
    clean, corr = sender_values(model, tok.clean), sender_values(model, tok.corrupted)
    delta = clean - corr
    groups = sender_hooks(g)
    total = 0.0
    for name, sl in groups:
        for a, w in zip(alphas, weights):
            value = corr[sl] + a * delta[sl]  # a constant: no gradient flows back through the node
            grads = receiver_grads(model, tok, [(name, replace(value))])
            total = total + w * contract(model, delta, grads)
    return total / len(groups)


def node_noising(model: Any, tok: Any) -> torch.Tensor:
    """m(clean) − m(clean with one sender's output from the corrupted run), per sender, mean over examples."""
    g = graph_of(model)
    corr = sender_values(model, tok.corrupted)
    n = len(tok)
    with edge_hooks(model), torch.no_grad():
        base = float(_metric(model(tok.clean), tok)) / n
        out = []
        for name, sl in sender_hooks(g):
            for s in range(sl.start, sl.stop):
                def hook(act: torch.Tensor, hook: Any, s: int = s, start: int = sl.start) -> torch.Tensor:
                    act = act.clone()
                    if act.dim() == 3:
                        act[:] = corr[s].to(act.dtype)
                    else:
                        act[:, :, s - start] = corr[s].to(act.dtype)
                    return act
                with model.hooks(fwd_hooks=[(name, hook)]):
                    out.append(base - float(_metric(model(tok.clean), tok)) / n)
    return torch.tensor(out, dtype=torch.float64)


def node_gradients(model: Any, tok: Any) -> torch.Tensor:
    """``(clean_s − corr_s) · ∂m/∂out_s`` at the clean run, per sender (TL hooks on the senders)."""
    g = graph_of(model)
    clean, corr = sender_values(model, tok.clean), sender_values(model, tok.corrupted)
    grads: dict[str, torch.Tensor] = {}

    def keep(name: str) -> Callable:
        def hook(grad: torch.Tensor, hook: Any) -> None:
            grads[name] = grad.detach().double()
        return hook

    names = [n for n, _ in sender_hooks(g)]
    # hook_resid_pre's own backward hook sees its gradient only if something upstream needs it
    with edge_hooks(model), params_require_grad(model), torch.enable_grad():
        with model.hooks(bwd_hooks=[(n, keep(n)) for n in names]):
            _metric(model(tok.clean), tok).backward()
        model.zero_grad(set_to_none=True)
    G = torch.cat([_heads(grads[n]) for n in names])
    return torch.einsum("sbpd,sbpd->s", clean - corr, G) / len(tok)
