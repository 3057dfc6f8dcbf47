"""Direct logit attribution: how much each part of the residual stream writes to the answer.

Everything is read at each example's own last token and projected on that example's
logit-difference direction through the final LayerNorm's scale (the seed's
``apply_ln_to_stack(..., layer=-1, pos_slice=-1)``). Centring the *direction* instead of each
component is the same linear map, and lets us project heads without materialising
``[heads, batch, pos, d_model]`` stacks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from circuitwise.metrics import answer_directions, gather_last
from circuitwise.tasks.tokenize import TokenizedTask
from circuitwise.types import Labelled


@dataclass(frozen=True)
class DLA:
    """Direct logit attribution of one task on one model.

    ``final_resid`` [example]: the LN-scaled final residual on the logit-difference direction.
    ``unembed_bias`` [example]: what the unembedding bias adds; ``final_resid + unembed_bias``
    is the logit difference the model outputs.
    ``logit_lens``: [point] accumulated residual (resid_pre, resid_mid of each layer, final).
    ``layers``: [component] embed, pos_embed, attn_out and mlp_out of each layer.
    ``heads``: [layer, head] each head's output (without b_O, as TransformerLens stacks them).
    Each Labelled keeps its per-example values.
    """

    final_resid: torch.Tensor
    unembed_bias: torch.Tensor
    logit_lens: Labelled
    layers: Labelled
    heads: Labelled

    def to_json(self) -> dict[str, Any]:
        return {
            "final_resid": float(self.final_resid.mean()),
            "final_resid_per_prompt": self.final_resid.tolist(),
            "unembed_bias": float(self.unembed_bias.mean()),
            "logit_lens": {"labels": self.logit_lens.labels["point"], "values": self.logit_lens.values.tolist()},
            "layers": {"labels": self.layers.labels["component"], "values": self.layers.values.tolist()},
            "heads": self.heads.values.tolist(),
            "heads_per_prompt": self.heads.per_example.tolist() if self.heads.per_example is not None else None,
        }


def _hook_names(model: Any) -> tuple[list[str], list[str], list[str]]:
    L = model.cfg.n_layers
    comps = ["hook_embed"] + (["hook_pos_embed"] if _has_pos_embed(model) else [])
    comp_labels = ["embed"] + (["pos_embed"] if _has_pos_embed(model) else [])
    for l in range(L):
        comps += [f"blocks.{l}.hook_attn_out", f"blocks.{l}.hook_mlp_out"]
        comp_labels += [f"{l}_attn_out", f"{l}_mlp_out"]
    accum = []
    for l in range(L):
        accum += [f"blocks.{l}.hook_resid_pre", f"blocks.{l}.hook_resid_mid"]
    accum.append(f"blocks.{L - 1}.hook_resid_post")
    return comps, comp_labels, accum


def _has_pos_embed(model: Any) -> bool:
    return model.cfg.positional_embedding_type in ("standard", "shortformer") and "hook_pos_embed" in model.hook_dict


def accumulated_labels(n_layers: int) -> list[str]:
    labels = []
    for l in range(n_layers):
        labels += [f"{l}_pre", f"{l}_mid"]
    return labels + ["final_post"]


@torch.inference_mode()
def direct_logit_attribution(model: Any, tok: TokenizedTask, *, batch_size: int = 32) -> DLA:
    """Per-example DLA of the final residual, logit lens, layers and heads, in one forward per batch."""
    L, H = model.cfg.n_layers, model.cfg.n_heads
    comps, comp_labels, accum = _hook_names(model)
    z_names = [f"blocks.{l}.attn.hook_z" for l in range(L)]
    wanted = set(comps + accum + z_names + ["ln_final.hook_scale"])
    W_O = model.W_O  # [L, H, d_head, d_model]
    finals, biases, lens, layers, heads = [], [], [], [], []
    for b in tok.batches(batch_size):
        _, cache = model.run_with_cache(b.clean, names_filter=lambda n: n in wanted, return_type=None)
        dirs, bias = answer_directions(model, b.answers)
        dirs = dirs - dirs.mean(-1, keepdim=True)  # LayerNorm centring, moved onto the direction
        scale = gather_last(cache["ln_final.hook_scale"], b.last)  # [batch, 1]

        def project(name: str) -> torch.Tensor:
            x = gather_last(cache[name], b.last)
            return (x * dirs).sum(-1) / scale[:, 0]

        lens.append(torch.stack([project(n) for n in accum], 0))
        layers.append(torch.stack([project(n) for n in comps], 0))
        finals.append(lens[-1][-1])
        biases.append(bias)
        z = torch.stack([gather_last(cache[n], b.last) for n in z_names], 1)  # [batch, L, H, d_head]
        proj = torch.einsum("lhdm,bm->blhd", W_O, dirs)
        heads.append(torch.einsum("blhd,blhd->blh", z, proj) / scale[:, 0, None, None])
    lens_t, layers_t, heads_t = torch.cat(lens, 1).cpu(), torch.cat(layers, 1).cpu(), torch.cat(heads, 0).cpu()
    head_labels = {"layer": [str(l) for l in range(L)], "head": [str(h) for h in range(H)]}
    return DLA(
        final_resid=torch.cat(finals).cpu(),
        unembed_bias=torch.cat(biases).cpu(),
        logit_lens=Labelled(lens_t.mean(1), ("point",), {"point": accumulated_labels(L)},
                            per_example=lens_t.T.contiguous()),
        layers=Labelled(layers_t.mean(1), ("component",), {"component": comp_labels},
                        per_example=layers_t.T.contiguous()),
        heads=Labelled(heads_t.mean(0), ("layer", "head"), head_labels, per_example=heads_t),
    )


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


__all__ = ["DLA", "accumulated_labels", "direct_logit_attribution", "head_label", "top_heads"]
