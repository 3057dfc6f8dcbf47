"""Direct logit attribution: how much each part of the residual stream writes to the answer.

Everything is read at each example's own last token and projected on that example's
logit-difference direction through the final norm with its scale frozen at this run, as
TransformerLens's ``apply_ln_to_stack(..., layer=-1, pos_slice=-1)`` does — centring only where
the final norm is a LayerNorm, and applying the norm's weight where processing did not fold it
into ``W_U``. The norm is moved onto the direction (see :mod:`circuitwise.attribution.readout`),
which lets us project heads without materialising ``[heads, batch, pos, d_model]`` stacks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch

from circuitwise.attribution.readout import Nonlinearity, Readout, readout
from circuitwise.metrics import answer_directions, gather_last
from circuitwise.models import placement
from circuitwise.tasks.tokenize import TokenizedTask
from circuitwise.types import Labelled, Shows

Target = Literal["logit_diff", "pre_cap_logit_diff"]


@dataclass(frozen=True, repr=False)
class DLA(Shows):
    """Direct logit attribution of one task on one model.

    ``final_resid`` [example]: the final residual through the frozen final norm, on the
    logit-difference direction. ``norm_bias`` [example]: what an unfolded final-norm bias adds
    (zero once ``fold_ln`` has moved it into ``b_U``). ``unembed_bias`` [example]: what the
    unembedding bias adds. ``logit_diff`` [example]: the ``target`` read from the model itself
    (the final norm's output on ``W_U``, plus ``b_U``); ``final_resid + norm_bias +
    unembed_bias`` equals it. ``target`` is the output logit difference, or the pre-cap one where
    the model soft-caps its logits.
    ``logit_lens``: [point] each accumulated residual through the real final norm, with its own
    statistics (TransformerLens's ``accumulated_resid(apply_ln=True)``), on the direction.
    ``layers``: [component] embed, pos_embed, attn_out and mlp_out of each layer; they sum to
    ``final_resid``. ``heads``: [layer, head] each head's output (without b_O, as TransformerLens
    stacks them; through its layer's post-attention norm, scale frozen, where there is one).
    ``linear``: whether the target is the sum of these contributions with only the final norm's
    scale frozen; ``nonlinear`` names what breaks that and ``caveats`` says what is and is not
    decomposed. ``dtype``: the model's; ``rounding``: the closure gap its rounding of the final
    norm's output can explain (ours is computed in float32). Each Labelled keeps its per-example
    values.
    """

    final_resid: torch.Tensor
    norm_bias: torch.Tensor
    unembed_bias: torch.Tensor
    logit_diff: torch.Tensor
    target: Target
    linear: bool
    nonlinear: tuple[Nonlinearity, ...]
    caveats: tuple[str, ...]
    logit_lens: Labelled
    layers: Labelled
    heads: Labelled
    dtype: str = "float32"
    rounding: float = 0.0

    @property
    def closure_error(self) -> float:
        """Largest per-example gap between the decomposition and the model's own value."""
        return float((self.final_resid + self.norm_bias + self.unembed_bias - self.logit_diff).abs().max())

    def __repr__(self) -> str:
        L, H = self.heads.values.shape
        flat = int(self.heads.values.abs().argmax())
        top = head_label(*divmod(flat, H))
        closes = "closes" if self.closure_error < 1e-4 else f"gap {self.closure_error:.2g}"
        return (f"DLA({len(self.final_resid)} prompts, {L} layers × {H} heads: final resid "
                f"{float(self.final_resid.mean()):+.3f} ({closes}); largest head {top} "
                f"{float(self.heads.values.flatten()[flat]):+.3f})")

    def to_json(self) -> dict[str, Any]:
        return {
            "final_resid": float(self.final_resid.mean()),
            "final_resid_per_prompt": self.final_resid.tolist(),
            "norm_bias": float(self.norm_bias.mean()),
            "unembed_bias": float(self.unembed_bias.mean()),
            "logit_diff": float(self.logit_diff.mean()),
            "target": self.target,
            "closure_error": self.closure_error,
            "dtype": self.dtype,
            "rounding": self.rounding,
            "linear": self.linear,
            "nonlinear": list(self.nonlinear),
            "caveats": list(self.caveats),
            "logit_lens": {"labels": self.logit_lens.labels["point"], "values": self.logit_lens.values.tolist()},
            "layers": {"labels": self.layers.labels["component"], "values": self.layers.values.tolist()},
            "heads": self.heads.values.tolist(),
            "heads_per_prompt": self.heads.per_example.tolist() if self.heads.per_example is not None else None,
        }


def accumulated_points(model: Any) -> tuple[list[str], list[str]]:
    """Hook names and labels of the logit lens: every resid_pre and resid_mid that exists, and the end.

    Parallel blocks (GPT-J, Pythia, Phi) have no resid_mid: attention and MLP read the same
    residual, so there is no point between them to read.
    """
    L = model.cfg.n_layers
    names, labels = [], []
    for l in range(L):
        names.append(f"blocks.{l}.hook_resid_pre")
        labels.append(f"{l}_pre")
        if f"blocks.{l}.hook_resid_mid" in model.hook_dict:
            names.append(f"blocks.{l}.hook_resid_mid")
            labels.append(f"{l}_mid")
    return names + [f"blocks.{L - 1}.hook_resid_post"], labels + ["final_post"]


def accumulated_labels(model: Any) -> list[str]:
    return accumulated_points(model)[1]


def _components(model: Any, ro: Readout) -> tuple[list[str], list[str]]:
    names = ["hook_embed"] + (["hook_pos_embed"] if ro.pos_embed else [])
    labels = ["embed"] + (["pos_embed"] if ro.pos_embed else [])
    for l in range(model.cfg.n_layers):
        names += [f"blocks.{l}.hook_attn_out", f"blocks.{l}.hook_mlp_out"]
        labels += [f"{l}_attn_out", f"{l}_mlp_out"]
    return names, labels


def caveats(ro: Readout) -> tuple[str, ...]:
    out = []
    if ro.soft_cap is not None:
        out.append(
            f"The model soft-caps its logits ({ro.soft_cap:g}·tanh(logit/{ro.soft_cap:g})), which is not "
            "linear: the attribution decomposes the pre-cap logit difference, not the output one."
        )
    if any(n is not None for n in ro.post_attn):
        out.append(
            "Each attention layer's output is normalised (post-attention norm) before it joins the "
            "residual stream: per-layer values are the normalised outputs and sum exactly, but per-head "
            "values pass each head through that norm with its scale frozen at this run, so a head's effect "
            "on the norm's scale is not attributed to it."
        )
    elif ro.has_post_mlp:
        out.append("MLP outputs are normalised before they join the residual stream; per-layer values are "
                   "the normalised outputs and sum exactly.")
    if ro.parallel:
        out.append("Attention and MLP read the same residual (parallel blocks): the logit lens has no "
                   "resid_mid points.")
    return tuple(out)


@torch.inference_mode()
def direct_logit_attribution(model: Any, tok: TokenizedTask, *, batch_size: int = 32) -> DLA:
    """Per-example DLA of the final residual, logit lens, layers and heads, in one forward per batch."""
    L, H = model.cfg.n_layers, model.cfg.n_heads
    ro = readout(model)
    comps, comp_labels = _components(model, ro)
    accum, accum_labels = accumulated_points(model)
    z_names = [f"blocks.{l}.attn.hook_z" for l in range(L)]
    norms = [n for n in (ro.final, *ro.post_attn) if n is not None]
    out_name = "ln_final.hook_out" if ro.final is not None else accum[-1]
    wanted = set(comps + accum + z_names + [n.scale_hook for n in norms] + [out_name])
    W_O = model.W_O  # [L, H, d_head, d_model]
    # A split model's caches and the answer directions on the embedding's device (models.placement).
    home = placement.cache_device(model)
    parts: dict[str, list[torch.Tensor]] = {k: [] for k in ("final", "nbias", "ubias", "ld", "spread", "lens", "layers", "heads")}
    for b in tok.batches(batch_size):
        _, cache = model.run_with_cache(b.clean, names_filter=lambda n: n in wanted, return_type=None, device=home)
        last = lambda name: gather_last(cache[name], b.last).float()  # noqa: E731
        dirs, ubias = answer_directions(model, b.answers)
        dirs, ubias = dirs.float().to(home), ubias.float().to(home)
        if ro.final is None:
            D, nbias = dirs, torch.zeros_like(ubias)
        else:
            D = ro.final.pull_back(dirs, last(ro.final.scale_hook)[:, 0])
            nbias = ro.final.bias_term(dirs)
        project = lambda name: (last(name) * D).sum(-1)  # noqa: E731
        layers = torch.stack([project(n) for n in comps], 0)
        parts["layers"].append(layers)
        parts["final"].append(project(accum[-1]))
        parts["nbias"].append(nbias)
        parts["ubias"].append(ubias)
        parts["ld"].append((last(out_name) * dirs).sum(-1) + ubias)
        parts["spread"].append((last(out_name) * dirs).abs().sum(-1))
        parts["lens"].append(_lens(model, ro, torch.stack([gather_last(cache[n], b.last) for n in accum], 0), dirs))
        heads = []
        for l, post in enumerate(ro.post_attn):
            D_l = D if post is None else post.pull_back(D, last(post.scale_hook)[:, 0])
            # Direction first, then z: never a [batch, head, d_head, d_model] product.
            to_z = torch.einsum("hdm,bm->bhd", W_O[l].float().to(D_l.device), D_l)  # split models: a copy
            heads.append((last(z_names[l]) * to_z).sum(-1))
        parts["heads"].append(torch.stack(heads, 1))  # [batch, L, H]
    cat = {k: torch.cat(v, -1 if k in ("lens", "layers") else 0).cpu() for k, v in parts.items()}
    head_labels = {"layer": [str(l) for l in range(L)], "head": [str(h) for h in range(H)]}
    nonlinear = ro.nonlinear
    return DLA(
        final_resid=cat["final"],
        norm_bias=cat["nbias"],
        unembed_bias=cat["ubias"],
        logit_diff=cat["ld"],
        target="pre_cap_logit_diff" if ro.soft_cap is not None else "logit_diff",
        linear=not nonlinear,
        nonlinear=nonlinear,
        caveats=caveats(ro),
        logit_lens=Labelled(cat["lens"].mean(1), ("point",), {"point": accum_labels},
                            per_example=cat["lens"].T.contiguous()),
        layers=Labelled(cat["layers"].mean(1), ("component",), {"component": comp_labels},
                        per_example=cat["layers"].T.contiguous()),
        heads=Labelled(cat["heads"].mean(0), ("layer", "head"), head_labels, per_example=cat["heads"]),
        dtype=str(model.W_U.dtype).removeprefix("torch."),
        rounding=_rounding(model.W_U.dtype, cat["spread"]),
    )


def _rounding(dtype: torch.dtype, spread: torch.Tensor) -> float:
    """The closure gap the model's rounding of the final norm's output can make.

    The norm's output is stored in the model's dtype (and scaled by its weight there): up to
    about one ulp per channel, i.e. ``eps * sum_j |out_j * direction_j|`` on the logit difference.
    """
    eps = torch.finfo(dtype).eps if dtype.is_floating_point else 0.0
    return float(2 * eps * spread.max()) if spread.numel() else 0.0


def _lens(model: Any, ro: Readout, points: torch.Tensor, dirs: torch.Tensor) -> torch.Tensor:
    """[point, batch]: each residual through the model's own final norm (its own statistics)."""
    if ro.final is None:
        return (points.float() * dirs).sum(-1)
    P, B, d = points.shape
    # On a split model the final norm lives with the last block, not where the cache was gathered.
    where = next(model.ln_final.parameters(), points).device
    normed = model.ln_final(points.reshape(P * B, 1, d).to(where)).reshape(P, B, d).to(dirs.device)
    return (normed.float() * dirs).sum(-1)


def top_heads(heads: torch.Tensor, k: int) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """The k most positive and k most negative heads of a [layer, head] map, as (layer, head)."""
    H = heads.shape[1]
    flat = heads.flatten()
    k = min(k, flat.numel())
    pos = [divmod(int(i), H) for i in flat.topk(k).indices]
    neg = [divmod(int(i), H) for i in (-flat).topk(k).indices]
    return pos, neg


def head_label(layer: int, head: int) -> str:
    return f"L{layer}H{head}"


__all__ = ["DLA", "Target", "accumulated_labels", "accumulated_points", "caveats", "direct_logit_attribution",
           "head_label", "top_heads"]
