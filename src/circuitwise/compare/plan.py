"""Plan a comparison before the heavy work: what each side runs and which differences exist.

Each side is planned as `run` would plan it (:func:`circuitwise.plan.plan_run`: no corrupted
prompts, a degenerate clean–corrupted gap or an unsupported architecture adapt the side, with a
note). A difference is only computed where both sides have the quantity on the same axes:
per-head maps need the same layers × heads, the logit lens the same points; cross-faithfulness
needs the same edge graph. Whatever is skipped is said, never an error after work has started.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from circuitwise.attribution.dla import accumulated_labels
from circuitwise.compare.config import CompareConfig
from circuitwise.compare.sides import Loaded
from circuitwise.plan import Plan, plan_run


@dataclass(frozen=True)
class ComparePlan:
    same_heads: bool
    same_lens: bool
    patching: bool
    circuit: tuple[str | None, str | None]
    cross: bool
    notes: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {"same_heads": self.same_heads, "same_lens": self.same_lens, "patching": self.patching,
                "circuit": list(self.circuit), "cross": self.cross}


def _shape(model: Any) -> tuple[int, int]:
    return int(model.cfg.n_layers), int(model.cfg.n_heads)


def plan_side(config: CompareConfig, side: Loaded, gap: float | None, scale: float) -> Plan:
    run_cfg = side.run.model_copy(update={"patching": ("heads",) if config.patching else (),
                                          "circuit": config.circuit or None, "attribution": False})
    return plan_run(run_cfg, side.tok, side.model, gap=gap, scale=scale)


def plan_compare(config: CompareConfig, a: Loaded, b: Loaded, plans: tuple[Plan, Plan]) -> ComparePlan:
    notes: list[str] = []
    for side, plan in zip((a, b), plans):
        notes += [f"Side {side.which.upper()} ({side.label}): {n}" for n in plan.notes]
    same_heads = _shape(a.model) == _shape(b.model)
    if not same_heads:
        notes.append("The two models have different layers × heads ({}×{} and {}×{}): the per-head maps and "
                     "the heads patching are shown side by side without a difference, and the circuits are not "
                     "cross-evaluated.".format(*_shape(a.model), *_shape(b.model)))
    # The lens and the per-layer decomposition are compared over the points both models share (compare.match),
    # whose note says what is left out.
    same_lens = accumulated_labels(a.model) == accumulated_labels(b.model)
    patching = config.patching and all("heads" in p.sweeps and not p.degenerate for p in plans)
    if config.patching and not patching and all(p.sweeps for p in plans):
        notes.append("The heads patching is shown but not compared: one side's clean–corrupted gap is degenerate.")
    circuit = (plans[0].circuit, plans[1].circuit)
    cross = bool(circuit[0] and circuit[1] and same_heads)
    if config.circuit and circuit[0] and circuit[1] and not cross:
        notes.append("Each side's circuit is shown, but not evaluated on the other side: their edge graphs differ.")
    return ComparePlan(same_heads, same_lens, patching, circuit, cross, tuple(notes))


__all__ = ["ComparePlan", "plan_compare", "plan_side"]
