"""``opposites-seed``: the seed notebook's six prompts, exactly as its output printed them.

The notebook's prompt list mixes "but a" and "but, a"; both are kept so a user with GPT-2 small
can compare with the seed's per-prompt logit differences. The corrupted prompt flips the first
adjective to the correct answer (so the right answer flips), for patching.
"""

from __future__ import annotations

from typing import Any

from circuitwise.tasks.builtin import TaskSpec, register
from circuitwise.tasks.task import Example, Task

SEED_PROMPTS = (
    ("A tortoise is old, but a kitten is", " young", " old"),
    ("A mouse is small, but, an elephant is", " big", " small"),
    ("A desert is dry, but a rainforest is", " wet", " dry"),
    ("A pillow is soft, but, a brick is", " hard", " soft"),
    ("A rock is hard, but, a sponge is", " soft", " hard"),
    ("A rose is beautiful, but, a weed is", " ugly", " beautiful"),
)


def build(**_: Any) -> Task:
    examples = []
    for clean, correct, incorrect in SEED_PROMPTS:
        # Replace the first occurrence only: the first adjective, never the answer slot.
        corrupted = clean.replace(incorrect + ",", correct + ",", 1)
        examples.append(Example(clean=clean, correct=correct, incorrect=incorrect, corrupted=corrupted))
    return Task("opposites-seed", tuple(examples), "The seed notebook's six opposite-adjective prompts.")


register(TaskSpec("opposites-seed", "The seed notebook's six opposite-adjective prompts (GPT-2 small).", build))
