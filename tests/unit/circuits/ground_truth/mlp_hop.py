"""Two hops through an MLP: a head moves the letter to the last position, an MLP maps it to the answer.

Task: " C and then" → the letter 3 places on (" F"; wrapping within A–H), corrupted with another
letter. L0H0 attends to the letter from every position (constant query, key on position 1's
positional dim) and copies it into space A. MLP1's hidden unit ``i`` fires on A's dim ``i`` and
writes letter ``i + 3`` into B, the only space the unembedding reads; so the head alone cannot
answer (it writes A, which nothing but the MLP reads), and the MLP has nothing to map without it.

    input ──▶ L0H0.v     L0H0 ──▶ MLP1     MLP1 ──▶ logits
"""

from __future__ import annotations

import random
from pathlib import Path

from tests.unit.circuits.ground_truth.gpt2 import A, B, CONST, LETTERS, POS, save, sketch
from tests.unit.circuits.known_circuit import FILLERS

PLANTED = frozenset({("input", "L0H0.v"), ("L0H0", "MLP1"), ("MLP1", "logits")})
HEAD, MLP = (0, 0), 1
SHIFT = 3


def answer(letter: str) -> str:
    return LETTERS[(LETTERS.index(letter) + SHIFT) % len(LETTERS)]


def build(out: Path, seed: int = 0) -> Path:
    import torch

    s = sketch(out)
    with torch.no_grad():
        s.q(*HEAD)[CONST, 0] = 5.0
        s.k(*HEAD)[POS + 1, 0] = 5.0
        for i in range(8):
            s.v(*HEAD)[i, i] = 1.0
            s.o(*HEAD)[i, A + i] = 1.0
        fc = s.tr.h[MLP].mlp.c_fc
        for i in range(8):  # after ln_2 a present A dim reads about 4, an absent one about -0.2
            fc.weight[A + i, i] = 1.0
            fc.bias[i] = -1.0
            s.mlp_out(MLP)[i, B + (i + SHIFT) % 8] = 1.0
        s.unembed_letters_from(B)
        s.distract([HEAD], [MLP], seed=seed)
    return save(s, out)


def task(n: int = 16, seed: int = 0):
    import circuitwise as cw

    rng = random.Random(seed)
    examples = []
    for _ in range(n):
        a, b = rng.sample(LETTERS, 2)
        filler = "".join(rng.choice(FILLERS) for _ in range(2))
        examples.append(cw.Example(clean=a + filler, correct=answer(a), incorrect=answer(b), corrupted=b + filler))
    return cw.Task("letter-plus-3", tuple(examples), "The letter three on (a head then an MLP).")


__all__ = ["HEAD", "MLP", "PLANTED", "answer", "build", "task"]
