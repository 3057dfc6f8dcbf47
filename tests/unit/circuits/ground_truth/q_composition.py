"""Q-composition: a layer-0 head's output forms a layer-1 head's query.

Task: " second C F A and" → " F" (the selector word names which of the three letters to answer),
corrupted with another selector (" third C F A and" → " A"). Only the selector changes, so only
the query path carries the corruption: the letters (the values) and their positions (the keys)
are the same in both runs.

L0H2 attends from every position to position 1 (constant query, positional key) and copies the
selector into A. L1H1's query reads A and asks for position 2 + k (its key is positional), and
its value copies the attended letter into B.

    input ──▶ L0H2.v     L0H2 ──▶ L1H1.q     L1H1 ──▶ logits
"""

from __future__ import annotations

import random
from pathlib import Path

from tests.unit.circuits.ground_truth.gpt2 import A, B, CONST, LETTERS, POS, SELECT, SELECTORS, save, sketch

PLANTED = frozenset({("input", "L0H2.v"), ("L0H2", "L1H1.q"), ("L1H1", "logits")})
MOVER, READER = (0, 2), (1, 1)


def build(out: Path, seed: int = 0, sharp: float = 2.0) -> Path:
    import torch

    s = sketch(out)
    with torch.no_grad():
        s.q(*MOVER)[CONST, 0] = 5.0
        s.k(*MOVER)[POS + 1, 0] = 5.0
        for k in range(len(SELECTORS)):
            s.v(*MOVER)[SELECT + k, k] = 1.0
            s.o(*MOVER)[k, A + k] = 1.0
            s.q(*READER)[A + k, k] = sharp
            s.k(*READER)[POS + 2 + k, k] = sharp
        for i in range(8):
            s.v(*READER)[i, i] = 1.0
            s.o(*READER)[i, B + i] = 1.0
        s.unembed_letters_from(B)
        s.distract([MOVER, READER], [], seed=seed)
    return save(s, out)


def task(n: int = 16, seed: int = 0):
    import circuitwise as cw

    rng = random.Random(seed)
    examples = []
    for _ in range(n):
        letters = rng.sample(LETTERS, 3)
        k, j = rng.sample(range(3), 2)
        rest = "".join(letters) + " and"
        examples.append(cw.Example(clean=SELECTORS[k] + rest, correct=letters[k], incorrect=letters[j],
                                   corrupted=SELECTORS[j] + rest))
    return cw.Task("select-letter", tuple(examples), "Answer the letter the selector word names.")


__all__ = ["MOVER", "PLANTED", "READER", "build", "task"]
