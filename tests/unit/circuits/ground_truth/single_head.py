"""One head does the task: L1H1 attends to the letter and writes it where the unembedding reads.

Task (the known-circuit task): " C and then" → " C", corrupted with another letter. L1H1's query is
the LayerNorm's constant, its key position 1's positional dim, so every position attends to the
letter; its value copies the letter into B. Layer 0 is all distractors, so the planted head is in
the last layer, not the first, and its index is not 0.

    input ──▶ L1H1.v     L1H1 ──▶ logits
"""

from __future__ import annotations

from pathlib import Path

from tests.unit.circuits.ground_truth.gpt2 import B, CONST, POS, save, sketch
from tests.unit.circuits.known_circuit import known_circuit_task

PLANTED = frozenset({("input", "L1H1.v"), ("L1H1", "logits")})
HEAD = (1, 1)


def build(out: Path, seed: int = 0) -> Path:
    import torch

    s = sketch(out)
    with torch.no_grad():
        s.q(*HEAD)[CONST, 0] = 5.0
        s.k(*HEAD)[POS + 1, 0] = 5.0
        for i in range(8):
            s.v(*HEAD)[i, i] = 1.0
            s.o(*HEAD)[i, B + i] = 1.0
        s.unembed_letters_from(B)
        s.distract([HEAD], [], seed=seed)
    return save(s, out)


task = known_circuit_task

__all__ = ["HEAD", "PLANTED", "build", "task"]
