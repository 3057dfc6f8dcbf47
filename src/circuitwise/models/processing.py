"""Which of the seed's weight-processing steps a model can take, and what TransformerLens did.

The seed processes GPT-2 with ``fold_ln``, ``center_writing_weights``, ``center_unembed`` and
``refactor_factored_attn_matrices``. Not every architecture admits all four, and TransformerLens
4.3 is inconsistent about it: it asserts on the QK refactor with rotary positions, silently drops
``center_unembed`` under a logit soft-cap and ``center_writing_weights`` under RMSNorm, and some
adapters fold norms their own way (Phi-3) or not at all (OLMo 2's post-norms). So we decide up front
what to ask for, and afterwards read the weights to record what actually happened.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any, Literal

import torch

from circuitwise.models.precision import tolerance

StepName = Literal[
    "fold_ln",
    "center_writing_weights",
    "center_unembed",
    "fold_value_biases",
    "refactor_factored_attn_matrices",
]
STEP_NAMES: tuple[StepName, ...] = (
    "fold_ln",
    "center_writing_weights",
    "center_unembed",
    "fold_value_biases",
    "refactor_factored_attn_matrices",
)


# A step with nothing to act on (no value biases to fold) changes nothing: recorded, never a note.
NOTHING = "nothing to do: "


@dataclass(frozen=True)
class ProcessingStep:
    """One processing step: applied or not, and why not."""

    name: StepName
    applied: bool
    reason: str | None = None


@dataclass(frozen=True)
class Processing:
    """The weight processing a loaded model actually has, step by step."""

    requested: bool
    steps: tuple[ProcessingStep, ...]

    def step(self, name: StepName) -> ProcessingStep:
        for s in self.steps:
            if s.name == name:
                return s
        raise KeyError(name)

    def applied(self, name: StepName) -> bool:
        return self.step(name).applied

    def notes(self) -> list[str]:
        """One line per step skipped or only partly applied that matters (nothing when all applied).

        Steps that had nothing to act on are in :attr:`steps` but not here: they change nothing.
        """
        if not self.requested:
            return ["weight processing off (--no-processing): analysing the raw Hugging Face weights"]
        out = []
        for s in self.steps:
            if s.reason is None or s.reason.startswith(NOTHING):
                continue
            verb = "partly applied" if s.applied else "skipped"
            out.append(f"processing step {s.name} {verb}: {s.reason}")
        return out

    def to_json(self) -> dict[str, Any]:
        return {"requested": self.requested, "steps": [asdict(s) for s in self.steps]}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "Processing":
        return cls(bool(data["requested"]), tuple(ProcessingStep(**s) for s in data["steps"]))

    def __str__(self) -> str:
        return json.dumps(self.to_json())


@dataclass(frozen=True)
class _Plan:
    ask: dict[StepName, bool]
    reasons: dict[StepName, str]


def _softcap(cfg) -> float | None:
    cap = getattr(cfg, "output_logits_soft_cap", None)
    return cap if cap is not None and cap > 0 else None


def plan(bridge) -> _Plan:
    """What to ask ``enable_compatibility_mode`` for, before it runs."""
    cfg, adapter = bridge.cfg, bridge.adapter
    norm = getattr(cfg, "normalization_type", None)
    ask: dict[StepName, bool] = {n: True for n in STEP_NAMES}
    reasons: dict[StepName, str] = {}
    if norm not in ("LN", "LNPre") or getattr(cfg, "final_rms", False):
        # Centring what a block writes is invisible only to a norm that subtracts the mean.
        ask["center_writing_weights"] = False
        reasons["center_writing_weights"] = (
            f"the residual is read by {_norm_words(norm)}, which does not subtract the mean, so "
            "centring the writing weights would change the model's outputs"
        )
    elif not getattr(adapter, "supports_center_writing_weights", True):
        ask["center_writing_weights"] = False
        reasons["center_writing_weights"] = (
            f"TransformerLens's {type(adapter).__name__} does not support it (post-norm blocks)"
        )
    cap = _softcap(cfg)
    if cap is not None:
        ask["center_unembed"] = False
        reasons["center_unembed"] = (
            f"the logits are soft-capped (cap·tanh(x/cap), cap {cap:g}), which is not "
            "invariant to shifting every logit, so centring the unembedding would change outputs"
        )
    if getattr(cfg, "positional_embedding_type", None) == "rotary":
        ask["refactor_factored_attn_matrices"] = False
        reasons["refactor_factored_attn_matrices"] = (
            "rotary positions make the QK matrix depend on the query and key positions, so it "
            "has no single factorisation to refactor"
        )
    return _Plan(ask, reasons)


def _norm_words(norm: str | None) -> str:
    return {"RMS": "an RMSNorm", "RMSPre": "an RMSNorm without weights"}.get(norm or "", f"a {norm} norm")


# --- what TransformerLens really did -------------------------------------------------------------

_PRE_NORMS = ("ln1", "ln2")


def _pre_norm_params(bridge) -> dict[str, torch.Tensor]:
    """The weights/biases of the norms that read the residual (ln1, ln2 per block, ln_final)."""
    out: dict[str, torch.Tensor] = {}
    mods: list[tuple[str, Any]] = []
    for i, block in enumerate(getattr(bridge, "blocks", [])):
        for n in _PRE_NORMS:
            if n in getattr(block, "_modules", {}):
                mods.append((f"blocks.{i}.{n}", getattr(block, n)))
    if "ln_final" in getattr(bridge, "_modules", {}):
        mods.append(("ln_final", bridge.ln_final))
    for label, mod in mods:
        for pname in ("weight", "bias"):
            t = _param(mod, pname)
            if t is not None:
                out[f"{label}.{pname}"] = t.detach().float().clone()
    return out


def _param(mod, name: str) -> torch.Tensor | None:
    t = getattr(mod, name, None)
    if isinstance(t, torch.Tensor):
        return t
    inner = getattr(mod, "original_component", None)
    t = getattr(inner, name, None) if inner is not None else None
    return t if isinstance(t, torch.Tensor) else None


def _is_identity(key: str, t: torch.Tensor, offset: bool) -> bool:
    # Gemma's RMSNorm multiplies by (1 + w), so its identity weight is 0.
    if key.endswith(".bias"):
        target = 0.0
    else:
        target = 0.0 if offset else 1.0
    return bool(torch.allclose(t, torch.full_like(t, target), atol=1e-6))


def snapshot(bridge) -> dict[str, torch.Tensor]:
    """Norm parameters before processing, to tell afterwards which norms were folded."""
    return _pre_norm_params(bridge)


def record(bridge, p: _Plan, before: dict[str, torch.Tensor]) -> Processing:
    """The step-by-step record, checked against the processed weights."""
    offset = bool(getattr(bridge.cfg, "rmsnorm_uses_offset", False))
    steps: list[ProcessingStep] = []
    for name in STEP_NAMES:
        if not p.ask[name]:
            steps.append(ProcessingStep(name, False, p.reasons[name]))
        elif name == "fold_ln":
            steps.append(_fold_ln_truth(bridge, before, offset))
        elif name == "center_unembed":
            steps.append(_center_unembed_truth(bridge))
        elif name == "fold_value_biases":
            steps.append(_fold_value_biases_truth(bridge))
        elif name == "refactor_factored_attn_matrices":
            steps.append(_refactor_truth(bridge))
        else:
            steps.append(ProcessingStep(name, True, None))
    return Processing(True, tuple(steps))


def _fold_ln_truth(bridge, before: dict[str, torch.Tensor], offset: bool) -> ProcessingStep:
    after = _pre_norm_params(bridge)
    if not before:
        return ProcessingStep(
            "fold_ln", False, NOTHING + "no norm with learned weights reads the residual"
        )
    kept = sorted({k.rsplit(".", 1)[0] for k, v in after.items() if not _is_identity(k, v, offset)})
    if not kept:
        return ProcessingStep("fold_ln", True, None)
    adapter = type(bridge.adapter).__name__
    labels = sorted({k.rsplit(".", 1)[0] for k in after})
    where = ", ".join(kept) if len(kept) <= 4 else f"{len(kept)} of {len(labels)} norms"
    if len(kept) == len(labels):
        return ProcessingStep(
            "fold_ln", False, f"TransformerLens's {adapter} does not fold these norms: {where}"
        )
    return ProcessingStep("fold_ln", True, f"TransformerLens's {adapter} left unfolded: {where}")


def _fold_value_biases_truth(bridge) -> ProcessingStep:
    biases = [getattr(b.attn, "b_V", None) for b in bridge.blocks]
    biases = [b for b in biases if isinstance(b, torch.Tensor)]
    if not biases:
        return ProcessingStep("fold_value_biases", False, NOTHING + "the attention has no value biases")
    if all(bool((b == 0).all()) for b in biases):
        return ProcessingStep("fold_value_biases", True, None)
    return ProcessingStep("fold_value_biases", False, "TransformerLens left the value biases unfolded")


def _refactor_truth(bridge) -> ProcessingStep:
    # The refactor makes each head's W_O a rotation: orthonormal rows, W_O @ W_O.T = I.
    for block in bridge.blocks:
        w_o = block.attn.W_O.detach()
        atol = tolerance(w_o.dtype, 1e-4)  # rows rounded to the model's dtype are orthonormal to its eps
        w_o = w_o.float()
        gram = w_o @ w_o.transpose(-1, -2)
        if not torch.allclose(gram, torch.eye(gram.shape[-1]).expand_as(gram), atol=atol):
            return ProcessingStep(
                "refactor_factored_attn_matrices", False,
                "TransformerLens left W_O unrefactored (its rows are not orthonormal)",
            )
    return ProcessingStep("refactor_factored_attn_matrices", True, None)


def _center_unembed_truth(bridge) -> ProcessingStep:
    w_u = bridge.W_U.detach().float()
    # Relative to the spread of W_U: centring leaves a mean over the vocabulary at rounding level.
    mean = w_u.mean(-1).abs().max()
    if bool(mean <= 1e-4 * w_u.abs().max().clamp_min(1e-12)):
        return ProcessingStep("center_unembed", True, None)
    return ProcessingStep(
        "center_unembed", False, "TransformerLens left the unembedding uncentred"
    )


def of(model: Any) -> Processing | None:
    """The record :func:`circuitwise.load_model` attached, or None for a bridge loaded elsewhere."""
    rec = getattr(model, "circuitwise_processing", None)
    return rec if isinstance(rec, Processing) else None


def notes_of(model: Any) -> list[str]:
    rec = of(model)
    return rec.notes() if rec is not None else []


def not_requested() -> Processing:
    return Processing(False, tuple(ProcessingStep(n, False, "processing turned off") for n in STEP_NAMES))


__all__ = ["Processing", "ProcessingStep", "StepName", "STEP_NAMES"]
