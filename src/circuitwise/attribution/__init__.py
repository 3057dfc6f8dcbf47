"""Stage 4: read-only attribution — baseline answers, direct logit attribution, logit lens."""

from circuitwise.attribution.attention import attention_patterns
from circuitwise.attribution.baseline import Baseline, baseline
from circuitwise.attribution.dla import DLA, direct_logit_attribution, top_heads
from circuitwise.attribution.mechanism import Mechanism, mechanism_readouts

__all__ = ["DLA", "Baseline", "Mechanism", "attention_patterns", "baseline", "direct_logit_attribution",
           "mechanism_readouts", "top_heads"]
