"""How a model reads its residual stream into logits: the facts direct logit attribution needs.

Direct logit attribution is linear only once every norm between a component and the logits is
frozen at its cached scale (TransformerLens's ``apply_ln_to_stack`` convention). Which norms
those are, whether they centre, and whether their weights were folded into the next matrix
differs by family, so it is read from the bridge's own modules, never assumed:

- the final norm: LayerNorm (centres), RMSNorm (does not), their weight-free Pre forms, or
  none; Gemma stores its RMSNorm weight as an offset from 1; with ``fold_ln`` the weight (and
  a LayerNorm's bias) are already in ``W_U`` / ``b_U``, without processing they are not;
- post-sublayer ("sandwich") norms (Gemma 2/3, OLMo 2): a head's output is normed together
  with its layer's other heads before it joins the residual;
- parallel attention + MLP blocks (GPT-J, Pythia, Phi): no ``resid_mid``;
- a logit soft-cap (Gemma 2): the output logit is a non-linear function of the decomposed one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch

Nonlinearity = Literal["logit_soft_cap", "post_norm"]


@dataclass(frozen=True)
class FrozenNorm:
    """A norm read with its scale frozen: ``norm(x) = centre?(x) / scale * weight + bias``.

    ``weight`` is the effective multiplier (``1 + w`` where the family stores an offset);
    ``None`` means 1 (weight-free, or folded into the next matrix).
    """

    name: str
    centres: bool
    weight: torch.Tensor | None
    bias: torch.Tensor | None

    @property
    def scale_hook(self) -> str:
        return f"{self.name}.hook_scale"

    def pull_back(self, direction: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        """``D'`` [batch, d_model] with ``x @ D' == (norm(x) - bias) @ direction``, scale [batch] frozen.

        Centring a vector before a dot product equals centring the other side, so the whole
        norm moves onto the direction and components can be projected one by one.
        """
        d = direction if self.weight is None else direction * self.weight.to(direction)
        if self.centres:
            d = d - d.mean(-1, keepdim=True)
        return d / scale.to(d)[:, None]

    def bias_term(self, direction: torch.Tensor) -> torch.Tensor:
        """``bias @ direction`` per example: what the norm adds whatever its input."""
        if self.bias is None:
            return torch.zeros(direction.shape[0], dtype=direction.dtype, device=direction.device)
        return direction @ self.bias.to(direction)


@dataclass(frozen=True)
class Readout:
    final: FrozenNorm | None
    post_attn: tuple[FrozenNorm | None, ...]  # per layer, the norm between attn.hook_out and hook_attn_out
    has_post_mlp: bool
    parallel: bool
    soft_cap: float | None
    pos_embed: bool

    @property
    def nonlinear(self) -> tuple[Nonlinearity, ...]:
        out: list[Nonlinearity] = []
        if self.soft_cap is not None:
            out.append("logit_soft_cap")
        # A post-MLP norm alone breaks nothing we decompose (mlp_out is read after it); a
        # post-attention norm mixes the heads of its layer.
        if any(n is not None for n in self.post_attn):
            out.append("post_norm")
        return tuple(out)


def frozen_norm(model: Any, name: str) -> FrozenNorm | None:
    """The bridge module ``name`` as a :class:`FrozenNorm`; None where there is no such norm."""
    from transformer_lens.model_bridge.generalized_components.normalization import (
        LayerNormPreBridge,
        NormalizationBridge,
        RMSNormPreBridge,
    )

    try:
        module = model.get_submodule(name)
    except AttributeError:
        return None
    if not isinstance(module, NormalizationBridge) or f"{name}.hook_scale" not in model.hook_dict:
        return None
    if isinstance(getattr(module, "original_component", None), torch.nn.Identity):
        return None
    rms = bool(module.uses_rms_norm)
    weight = None
    if not isinstance(module, (LayerNormPreBridge, RMSNormPreBridge)):
        w = getattr(module, "weight", None)
        if isinstance(w, torch.Tensor):
            w = w.detach().float()
            # The bridge's own rule (NormalizationBridge._apply_weight_and_bias).
            w = 1.0 + w if module.uses_weight_offset else w
            weight = None if bool((w == 1).all()) else w
    bias = None
    orig = getattr(module, "original_component", None)
    b = getattr(orig, "bias", None) if not rms else None
    if isinstance(b, torch.Tensor) and bool((b != 0).any()):
        bias = b.detach().float()
    return FrozenNorm(name, centres=not rms, weight=weight, bias=bias)


def readout(model: Any) -> Readout:
    cfg = model.cfg
    L = cfg.n_layers
    hooks = model.hook_dict
    cap = getattr(cfg, "output_logits_soft_cap", None)
    return Readout(
        final=frozen_norm(model, "ln_final"),
        post_attn=tuple(frozen_norm(model, f"blocks.{l}.ln1_post") for l in range(L)),
        has_post_mlp=any(frozen_norm(model, f"blocks.{l}.ln2_post") is not None for l in range(L)),
        parallel=any(f"blocks.{l}.hook_resid_mid" not in hooks for l in range(L)),
        soft_cap=float(cap) if cap is not None and cap > 0 else None,
        pos_embed=cfg.positional_embedding_type == "standard" and "hook_pos_embed" in hooks,
    )


__all__ = ["FrozenNorm", "Nonlinearity", "Readout", "frozen_norm", "readout"]
