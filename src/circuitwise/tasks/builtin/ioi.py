"""``ioi``: indirect-object identification (Wang et al., 2022), the field's reference task.

"When Mary and John went to the store, John gave a drink to" → " Mary" (the indirect object,
IO), not " John" (the subject, S, named twice). Templates follow the paper's: two people are
introduced, one of them (S) is named again and does something for the other (IO). Both orders
of the introduction are generated (IO first, "ABBA", and S first, "BABA").

Placeholders: ``{A}``/``{B}`` the two introduced names in order, ``{S}`` the repeated subject,
``{place}`` and ``{obj}``. Roles, as in the paper: ``IO``, ``S1`` (first mention of S), ``S2``
(second mention), ``END``. Corruption ``abc`` (the paper's ABC distribution; ``other`` is
accepted as the same) replaces the three names with three other, distinct names, so nothing
in the prompt says who the answer is. Splits: ``heldout-template`` is the last three templates,
``train`` the rest.
"""

from __future__ import annotations

from typing import Any, Literal, get_args

from circuitwise.tasks.builtin import TaskSpec, register
from circuitwise.tasks.builtin._common import check_choice, check_n, example_rng
from circuitwise.tasks.templating import fill
from circuitwise.tasks.task import Example, Task

Corruption = Literal["abc", "other"]
Split = Literal["all", "train", "heldout-template"]

TEMPLATES: tuple[str, ...] = (
    "When {A} and {B} went to the {place}, {S} gave a {obj} to",
    "Then, {A} and {B} went to the {place}. {S} gave a {obj} to",
    "After {A} and {B} went to the {place}, {S} gave a {obj} to",
    "While {A} and {B} were working at the {place}, {S} gave a {obj} to",
    "Then, {A} and {B} had a lot of fun at the {place}. {S} gave a {obj} to",
    "When {A} and {B} arrived at the {place}, {S} handed a {obj} to",
    "Afterwards, {A} and {B} went to the {place}. {S} gave a {obj} to",
    "Then, {A} and {B} were thinking about going to the {place}. {S} wanted to give a {obj} to",
    "Friends {A} and {B} found a {obj} at the {place}. {S} gave it to",
    "When {A} and {B} got a {obj} at the {place}, {S} decided to give it to",
    "After a long day, {A} and {B} went to the {place}. {S} brought a {obj} to",
)
HELDOUT_TEMPLATE_INDICES: tuple[int, ...] = tuple(range(len(TEMPLATES) - 3, len(TEMPLATES)))

# Single GPT-2 tokens with a leading space; consonant-initial objects so "a" is always right.
NAMES: tuple[str, ...] = (
    "Mary", "John", "Tom", "James", "Dan", "Martin", "Amy", "Anna", "Kate", "Paul", "Lisa", "Mark",
    "Sarah", "Alex", "Emma", "Mike", "Jane", "David", "Laura", "Peter", "Susan", "Ben", "Rachel",
    "Adam", "Jack", "Michael", "Robert", "Sam", "Kevin", "Eric",
)
PLACES: tuple[str, ...] = ("store", "garden", "restaurant", "school", "hospital", "office",
                           "house", "station", "park", "beach", "library", "market")
OBJECTS: tuple[str, ...] = ("ring", "kiss", "bone", "basketball", "computer", "necklace", "drink",
                            "snack", "book", "letter", "gift", "flower", "ball", "key", "pen", "card")


def _templates(split: str) -> list[int]:
    held = set(HELDOUT_TEMPLATE_INDICES)
    return {
        "all": list(range(len(TEMPLATES))),
        "train": [i for i in range(len(TEMPLATES)) if i not in held],
        "heldout-template": sorted(held),
    }[split]


def _prompt(ti: int, a: str, b: str, s: str, place: str, obj: str) -> tuple[str, dict[str, int]]:
    return fill(TEMPLATES[ti], {"A": a, "B": b, "S": s, "place": place, "obj": obj})


def build(n: int | None = None, seed: int = 0, corruption: str | None = None, split: str | None = None,
          **_: Any) -> Task:
    corruption = check_choice("ioi", "corruption", corruption, get_args(Corruption), "abc")
    split = check_choice("ioi", "split", split, get_args(Split), "all")
    n = check_n(n)
    # The full space (templates x ordered name pairs x places x objects x orders) is millions of
    # prompts; draw combinations instead, without repeats, until n (default 500) are found.
    want = 500 if n is None else n
    rng = example_rng(seed, f"ioi:{split}")
    templates = _templates(split)
    limit = len(templates) * len(NAMES) * (len(NAMES) - 1) * len(PLACES) * len(OBJECTS) * 2
    want = min(want, limit)
    seen: set[str] = set()
    examples = []
    while len(examples) < want:
        ti = rng.choice(templates)
        io, s = rng.sample(NAMES, 2)
        place, obj = rng.choice(PLACES), rng.choice(OBJECTS)
        order = rng.choice(("ABBA", "BABA"))
        a, b = (io, s) if order == "ABBA" else (s, io)
        clean, off = _prompt(ti, a, b, s, place, obj)
        if clean in seen:
            continue
        seen.add(clean)
        x, y, z = rng.sample([m for m in NAMES if m not in (io, s)], 3)
        corrupted, _ = _prompt(ti, x, y, z, place, obj)
        io_role, s1_role = ("A", "B") if order == "ABBA" else ("B", "A")
        examples.append(Example(
            clean=clean, correct=" " + io, incorrect=" " + s, corrupted=corrupted,
            roles={"IO": off[io_role], "S1": off[s1_role], "S2": off["S"], "END": off["END"]},
            meta={"template": ti, "order": order, "io": io, "s": s, "place": place, "obj": obj,
                  "corruption": "abc"},
        ))
    name = "ioi" if split == "all" else f"ioi[{split}]"
    return Task(name, tuple(examples), f"Indirect-object identification (Wang et al., 2022), ABC "
                f"corruption ({split}; seed {seed}).", {"seed": seed, "split": split, "corruption": "abc"})


register(TaskSpec("ioi", "Indirect-object identification, Wang et al. 2022 ('When Mary and John went to "
                  "the store, John gave a drink to' -> ' Mary'); ABC corruption; 500 drawn unless --n.", build,
                  corruptions=get_args(Corruption), splits=get_args(Split)))
