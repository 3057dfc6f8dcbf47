"""The sweeps activation patching can run: one frozen registry entry per ``what``.

Each entry names the TransformerLens activation it patches, the result's axes in
TransformerLens's order, and the ``transformer_lens.patching`` function it must equal, so
the engines, the parity tests and the benchmark all read the same table.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

from circuitwise.errors import ConfigError

What = Literal[
    "resid_pre", "attn_out", "mlp_out", "heads", "heads_by_pos", "head_q", "head_k", "head_v", "head_pattern"
]
Direction = Literal["denoise", "noise"]
Site = Literal["pos", "pos_head", "head"]


@dataclass(frozen=True)
class Sweep:
    """One kind of patch, swept over every layer.

    ``site`` says how one cell of a layer is addressed: ``pos`` (one position of a residual-
    width activation), ``pos_head`` (one head at one position) or ``head`` (one head at every
    position).
    """

    name: str
    act: str  # TransformerLens activation name: resid_pre, attn_out, mlp_out, z, q, k, v, pattern
    site: Site
    axes: tuple[str, ...]
    tl_function: str
    description: str

    @property
    def by_pos(self) -> bool:
        return self.site in ("pos", "pos_head")

    @property
    def by_head(self) -> bool:
        return self.site in ("pos_head", "head")

    def hook_name(self, layer: int) -> str:
        if self.act in ("resid_pre", "attn_out", "mlp_out"):
            return f"blocks.{layer}.hook_{self.act}"
        return f"blocks.{layer}.attn.hook_{self.act}"


SWEEPS: dict[str, Sweep] = {}


def _register(*sweeps: Sweep) -> None:
    for s in sweeps:
        SWEEPS[s.name] = s


_register(
    Sweep("resid_pre", "resid_pre", "pos", ("layer", "pos"), "get_act_patch_resid_pre",
          "residual stream at the start of each block, one position at a time"),
    Sweep("attn_out", "attn_out", "pos", ("layer", "pos"), "get_act_patch_attn_out",
          "each attention layer's output, one position at a time"),
    Sweep("mlp_out", "mlp_out", "pos", ("layer", "pos"), "get_act_patch_mlp_out",
          "each MLP layer's output, one position at a time"),
    Sweep("heads", "z", "head", ("layer", "head"), "get_act_patch_attn_head_out_all_pos",
          "each head's output (z) at every position"),
    Sweep("heads_by_pos", "z", "pos_head", ("layer", "pos", "head"), "get_act_patch_attn_head_out_by_pos",
          "each head's output (z) at one position"),
    Sweep("head_q", "q", "head", ("layer", "head"), "get_act_patch_attn_head_q_all_pos",
          "each head's queries at every position"),
    Sweep("head_k", "k", "head", ("layer", "head"), "get_act_patch_attn_head_k_all_pos",
          "each head's keys at every position"),
    Sweep("head_v", "v", "head", ("layer", "head"), "get_act_patch_attn_head_v_all_pos",
          "each head's values at every position"),
    Sweep("head_pattern", "pattern", "head", ("layer", "head"), "get_act_patch_attn_head_pattern_all_pos",
          "each head's attention pattern at every position"),
)
assert set(SWEEPS) == set(get_args(What))  # the Literal and the registry must not drift apart


def get_sweep(what: str) -> Sweep:
    if what not in SWEEPS:
        raise ConfigError(
            f"Unknown patching sweep {what!r}. Choose one of: {', '.join(SWEEPS)} "
            "(e.g. --patch heads or --patch resid_pre)."
        )
    return SWEEPS[what]


def check_direction(direction: str) -> Direction:
    if direction not in get_args(Direction):
        raise ConfigError(
            f"Unknown patching direction {direction!r}. Use 'denoise' (patch clean activations "
            "into the corrupted run) or 'noise' (patch corrupted activations into the clean run)."
        )
    return direction  # type: ignore[return-value]


__all__ = ["SWEEPS", "Direction", "Site", "Sweep", "What", "check_direction", "get_sweep"]
