"""K-composition: an induction pair, a previous-token head whose output forms a later head's keys.

Task: " Q X R Y Q" → " X" (the letter that followed the last letter's first occurrence), corrupted
" R X Q Y Q" → " Y" (Q and R swapped). The corruption moves *where* Q occurred and nothing else
the answer reads: the letters after each position (X at 2, Y at 4) and the final Q are the same,
so only the keys change.

L0H1 (previous-token head): the query at position p matches the key at position p − 1 (positional
dims only) and copies that position's letter into A. L1H0 (induction head): its query is the
current letter, its key the letter in A (the previous token's), so at the last Q it attends to
the position after the first Q and its value copies that position's letter into B.

    input ──▶ L0H1.v     L0H1 ──▶ L1H0.k     L1H0 ──▶ logits

``input → L1H0.v`` and ``input → L1H0.q`` are real inputs of the circuit but carry nothing here:
the attended letters and the query letter are the same in both runs.
"""

from __future__ import annotations

import random
from pathlib import Path

from tests.unit.circuits.ground_truth.gpt2 import A, B, LETTERS, N_POS, POS, save, sketch

PLANTED = frozenset({("input", "L0H1.v"), ("L0H1", "L1H0.k"), ("L1H0", "logits")})
PREV, INDUCTION = (0, 1), (1, 0)


def build(out: Path, seed: int = 0, sharp: float = 2.0) -> Path:
    import torch

    s = sketch(out)
    with torch.no_grad():
        for p in range(N_POS - 1):  # query at p (dim p) meets the key of p − 1 (dim p too)
            s.q(*PREV)[POS + p, p] = sharp
            s.k(*PREV)[POS + p, p + 1] = sharp
        for i in range(8):
            s.v(*PREV)[i, i] = 1.0
            s.o(*PREV)[i, A + i] = 1.0
            s.q(*INDUCTION)[i, i] = sharp
            s.k(*INDUCTION)[A + i, i] = sharp
            s.v(*INDUCTION)[i, i] = 1.0
            s.o(*INDUCTION)[i, B + i] = 1.0
        s.unembed_letters_from(B)
        s.distract([PREV, INDUCTION], [], seed=seed)
    return save(s, out)


def task(n: int = 16, seed: int = 0):
    import circuitwise as cw

    rng = random.Random(seed)
    examples = []
    for _ in range(n):
        q, x, r, y = rng.sample(LETTERS, 4)
        examples.append(cw.Example(clean=q + x + r + y + q, correct=x, incorrect=y, corrupted=r + x + q + y + q))
    return cw.Task("induction", tuple(examples), "Complete the repeated letter's successor (induction).")


__all__ = ["INDUCTION", "PLANTED", "PREV", "build", "task"]
