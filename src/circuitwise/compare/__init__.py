"""compare: two studies side by side — two tasks, one task on two models, or on two splits.

``compare(a="numbers-digits", b="numbers-words", model="bundled", out="runs/cmp")`` runs the
baseline, direct logit attribution, the heads patching and circuit discovery on each side, and
tests every difference (paired where example i of A is example i of B, unpaired otherwise;
Benjamini–Hochberg over the cells of a map). It writes compare.html, compare.json, config.yaml.
"""

from circuitwise.compare.config import CompareConfig
from circuitwise.compare.pairing import PairingDecision, are_twins, decide_pairing
from circuitwise.compare.run import CompareOutputs, compare
from circuitwise.compare.schema import CompareResults, Comparison
from circuitwise.compare.stats import benjamini_hochberg, compare_sides

__all__ = ["CompareConfig", "CompareOutputs", "CompareResults", "Comparison", "PairingDecision",
           "are_twins", "benjamini_hochberg", "compare", "compare_sides", "decide_pairing"]
