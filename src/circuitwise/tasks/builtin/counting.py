"""``counting``: the seed's coins prompt and variations of it.

"John gets one new coin every day. Yesterday he had two coins. After getting a new coin, today
he has" → " three" (not " two", the count the prompt states). Counts are written as words, as in
the seed; ``numbers-digits``/``numbers-words`` compare the two forms.

Placeholders: ``{name}``/``{pron}`` a person and pronoun, ``{obj}``/``{objs}`` an object in the
singular and plural, ``{k}`` yesterday's count. Roles: ``NAME``, ``COUNT`` (the stated count),
``END``. Corruption ``flip`` states a different count, so the answer changes.
"""

from __future__ import annotations

from typing import Any, Literal, get_args

from circuitwise.tasks.builtin import TaskSpec, register
from circuitwise.tasks.builtin._common import NUMBER_WORDS, PEOPLE, check_choice, check_n, example_rng, sample
from circuitwise.tasks.templating import fill
from circuitwise.tasks.task import Example, Task

Corruption = Literal["flip"]

TEMPLATES: tuple[str, ...] = (
    # The seed's prompt, word for word with John and coins.
    "{name} gets one new {obj} every day. Yesterday {pron} had {k} {objs}. After getting a new "
    "{obj}, today {pron} has",
    "{name} finds one {obj} every day. Yesterday {pron} had {k} {objs}. After finding another "
    "{obj}, today {pron} has",
    "Every day {name} buys one {obj}. Yesterday {pron} had {k} {objs}. After buying one more, "
    "today {pron} has",
    "{name} gets one new {obj} every week. Last week {pron} had {k} {objs}. After getting a new "
    "{obj}, this week {pron} has",
    "{name} collects one {obj} each day. Yesterday {pron} had {k} {objs}, and today {pron} got "
    "one more, so now {pron} has",
)

OBJECTS: tuple[tuple[str, str], ...] = (
    ("coin", "coins"), ("apple", "apples"), ("stamp", "stamps"), ("book", "books"),
    ("egg", "eggs"), ("card", "cards"), ("cookie", "cookies"), ("shell", "shells"),
)

COUNTS = range(2, 12)  # yesterday's count; the answer is one more, up to "twelve"


def combinations() -> list[tuple[int, int, int, int]]:
    """Every (template, person, object, count) index tuple, in a fixed order."""
    return [(ti, pi, oi, k) for ti in range(len(TEMPLATES)) for pi in range(len(PEOPLE))
            for oi in range(len(OBJECTS)) for k in COUNTS]


def _prompt(ti: int, pi: int, oi: int, k: int) -> tuple[str, dict[str, int]]:
    name, pron = PEOPLE[pi]
    obj, objs = OBJECTS[oi]
    return fill(TEMPLATES[ti], {"name": name, "pron": pron, "obj": obj, "objs": objs, "k": NUMBER_WORDS[k]})


def build(n: int | None = None, seed: int = 0, corruption: str | None = None, **_: Any) -> Task:
    corruption = check_choice("counting", "corruption", corruption, get_args(Corruption), "flip")
    examples = []
    for ti, pi, oi, k in sample(combinations(), check_n(n), seed):
        clean, offsets = _prompt(ti, pi, oi, k)
        k2 = example_rng(seed, clean).choice([j for j in COUNTS if j != k])
        corrupted, _ = _prompt(ti, pi, oi, k2)
        examples.append(Example(
            clean=clean,
            correct=" " + NUMBER_WORDS[k + 1],
            incorrect=" " + NUMBER_WORDS[k],
            corrupted=corrupted,
            roles={"NAME": offsets["name"], "COUNT": offsets["k"], "END": offsets["END"]},
            meta={"template": ti, "k": k, "corrupted_k": k2, "corruption": corruption,
                  "corrupted_answer": " " + NUMBER_WORDS[k2 + 1]},
        ))
    return Task("counting", tuple(examples), f"The seed's coin-counting prompt and variations (seed {seed}).",
                {"seed": seed, "corruption": corruption})


register(TaskSpec("counting", "Counting one more ('... Yesterday he had two coins. After getting a new "
                  "coin, today he has' -> ' three').", build, corruptions=get_args(Corruption)))
