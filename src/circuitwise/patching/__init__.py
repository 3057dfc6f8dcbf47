"""Stage 6: interventions — activation patching sweeps (exact) and attribution patching (gradient).

``activation_patching(model, task, what)`` patches one activation at a time, exactly as
TransformerLens's ``get_act_patch_*`` do, many times faster; ``attribution_patching`` estimates
the same sweep from one forward and backward pass. Both return a :class:`PatchResult`.
"""

from circuitwise.patching.activation import activation_patching
from circuitwise.patching.attribution import attribution_patching
from circuitwise.patching.result import DegenerateNormalizationWarning, PatchResult, pearson
from circuitwise.patching.sweeps import SWEEPS, Direction, Sweep, What

__all__ = [
    "SWEEPS",
    "DegenerateNormalizationWarning",
    "Direction",
    "PatchResult",
    "Sweep",
    "What",
    "activation_patching",
    "attribution_patching",
    "pearson",
]
