"""``mib-ioi``: MIB's indirect-object identification task, generated offline to MIB's definitions.

A separate task from ``ioi`` (whose templates, names, splits and ABC corruption stay as they are):
this one follows MIB's data set so that circuits found on it are comparable with MIB's.

Definitions and their sources (``aaronmueller/MIB`` @ ``cc2a160ef6da``, see ``_mib``):

- Templates: ``MIB-causal-variable-track/tasks/IOI_task/templates.json`` (70 templates; each of the
  31 "a {object}" / "an {object}" twins is kept once and the article is chosen by the object, so 39).
  ``{name_A}``/``{name_B}`` are the two people introduced, ``{name_C}`` the one named again (the
  subject, S); the answer is the other one (the indirect object, IO) with a leading space, the wrong
  answer S (``MIB_circuit_track/dataset.py``: ``" " + indirect_object`` against ``" " + subject``).
- Names, places, objects: ``IOI_task/names.json`` (100 first names), ``places.json`` and
  ``objects.json`` (8 each). Guess: MIB's Hub rows use a wider vocabulary (its notebook's first row
  is "As Carl and Maria left the consulate, Carl gave a fridge to", none of those words in these
  lists); the template is MIB's, the word lists the ones its code ships.
- Both orders of introduction are drawn (IO first, "ABBA", or S first, "BABA"), as Wang et al.
- Counterfactuals: MIB's eight column names (``ioi_task.py`` and its notebook list the flip
  families; ``random``/``abc`` are the others). Definitions, from the names and the causal model in
  ``ioi_task.py`` (name_C equal to name_A or name_B decides the answer): ``s2_io_flip`` names IO
  where S2 was (the answer flips to S); ``s1_io_flip`` swaps the two introduced names (positions
  change, the answer does not); ``s1_ioi_flip_s2_ioi_flip`` does both; ``abc`` puts three new,
  distinct names in the three slots (nothing says who the answer is); ``random_names`` replaces IO
  and S by two new names throughout, and ``random_names_*`` combine that with the flips. The default
  is ``s2_io_flip_counterfactual``, MIB's circuit track's.
- Splits: MIB's names and sizes, train 10,000, validation 10,000, test 1,000 (the Hub data set's
  split sizes as recorded by others who downloaded it; MIB's code only names the splits). The three
  are disjoint: one seeded stream of distinct prompts is cut in that order.

The examples do not depend on the counterfactual chosen: example *i* has the same clean prompt
under every ``--corruption``. Not every name is one token for every tokenizer: MIB keeps a row only
when IO, S and the third name have equal token lengths for the model, and circuitwise drops (and
counts) the examples whose answers are not single tokens, or whose counterfactual has another token
length, for the model in use.
"""

from __future__ import annotations

import random
from functools import lru_cache
from typing import Any, Literal, get_args

from circuitwise.tasks.builtin import TaskSpec, register
from circuitwise.tasks.builtin._mib import (
    CARDS,
    Accuracy,
    Card,
    Split,
    check_options,
    source,
    split_bounds,
    split_task,
)
from circuitwise.tasks.task import Example, Task
from circuitwise.tasks.templating import article, fill

Counterfactual = Literal[
    "s2_io_flip_counterfactual",
    "s1_io_flip_counterfactual",
    "s1_ioi_flip_s2_ioi_flip_counterfactual",
    "abc_counterfactual",
    "random_names_counterfactual",
    "random_names_s1_ioi_flip_counterfactual",
    "random_names_s2_ioi_flip_counterfactual",
    "random_names_s1_ioi_flip_s2_ioi_flip_counterfactual",
]
COUNTERFACTUALS: tuple[str, ...] = get_args(Counterfactual)
SPLIT_SIZES: dict[str, int] = {"train": 10_000, "validation": 10_000, "test": 1_000}

TEMPLATES: tuple[str, ...] = (
    "After the lunch, {name_A} and {name_B} went to the {place}. {name_C} gave a {object} to",
    "After {name_A} and {name_B} went to the {place}, {name_C} gave a {object} to",
    "After {name_A} and {name_B} spent some time at the {place}, {name_C} offered a {object} to",
    "After {name_A} and {name_B} finished their work at the {place}, {name_C} gave a {object} to",
    "After {name_A} and {name_B} went to the {place}, {name_C} handed a {object} to",
    "Afterwards, {name_A} and {name_B} went to the {place}. {name_C} gave a {object} to",
    "As {name_A} and {name_B} left the {place}, {name_C} gave a {object} to",
    "At the {place}, {name_A} and {name_B} found a {object}. {name_C} gave it to",
    "Before {name_A} and {name_B} left the {place}, {name_C} decided to give a {object} to",
    "Friends {name_A} and {name_B} found a {object} at the {place}. {name_C} gave it to",
    "Just as {name_A} and {name_B} were leaving the {place}, {name_C} offered a {object} to",
    "Later, {name_A} and {name_B} met at the {place}. {name_C} bought a {object} for",
    "{name_A} and {name_B} walked to the {place}. {name_C} gave a {object} to",
    "{name_A} and {name_B} decided to visit the {place}. Then, {name_C} gave a {object} to",
    "{name_A} and {name_B} were sitting together. {name_C} handed over a {object} to",
    "{name_A} and {name_B} were sitting at the {place}. {name_C} handed over a {object} to",
    "{name_A} and {name_B} were working together. {name_C} gave a {object} to",
    "{name_A} and {name_B} went to the {place}. Then, {name_C} handed a {object} to",
    "{name_A} and {name_B} were working at the {place}. Then, {name_C} decided to give a {object} to",
    "{name_A} and {name_B} were thinking about going to the {place}. {name_C} wanted to give a {object} to",
    "{name_A} and {name_B} had a lot of fun at the {place}. {name_C} gave a {object} to",
    "Once {name_A} and {name_B} finished at the {place}, {name_C} gave a {object} to",
    "Once {name_A} and {name_B} arrived at the {place}, {name_C} gave a {object} to",
    "Then, {name_A} and {name_B} went to the {place}. {name_C} gave a {object} to",
    "Then, {name_A} and {name_B} had a lot of fun at the {place}. {name_C} gave a {object} to",
    "Then, {name_A} and {name_B} were working at the {place}. {name_C} decided to give a {object} to",
    "Then, {name_A} and {name_B} were thinking about going to the {place}. {name_C} wanted to give a {object} to",
    "Then, {name_A} and {name_B} had a long argument, and afterwards {name_C} said to",
    "Then, {name_A} and {name_B} had a long argument. Afterwards {name_C} said to",
    "The {place} {name_A} and {name_B} went to had a {object}. {name_C} gave it to",
    "When {name_A} and {name_B} got a {object} at the {place}, {name_C} decided to give it to",
    "When {name_A} and {name_B} got a {object} at the {place}, {name_C} decided to give the {object} to",
    "When {name_A} and {name_B} were done exploring the {place}, {name_C} decided to give a {object} to",
    "When {name_A} and {name_B} were about to leave the {place}, {name_C} gave a {object} to",
    "While {name_A} and {name_B} were working at the {place}, {name_C} gave a {object} to",
    "While {name_A} and {name_B} were commuting to the {place}, {name_C} gave a {object} to",
    "While {name_A} and {name_B} relaxed at the {place}, {name_C} presented a {object} to",
    "While {name_A} and {name_B} relaxed, {name_C} gave a {object} to",
    "While {name_A} and {name_B} were playing at the {place}, {name_C} gave a {object} to",
)

NAMES: tuple[str, ...] = tuple(
    "Michael Christopher Jessica Matthew Ashley Jennifer Joshua Amanda Daniel David James Robert John Joseph "
    "Andrew Ryan Brandon Jason Justin Sarah William Jonathan Stephanie Brian Nicole Nicholas Anthony Heather "
    "Eric Elizabeth Adam Megan Melissa Kevin Steven Thomas Timothy Christina Kyle Rachel Laura Lauren Amber "
    "Brittany Danielle Richard Kimberly Jeffrey Amy Crystal Michelle Tiffany Jeremy Benjamin Mark Emily Aaron "
    "Charles Rebecca Jacob Stephen Patrick Sean Erin Jamie Kelly Samantha Nathan Sara Dustin Paul Angela Tyler "
    "Scott Katherine Andrea Gregory Erica Mary Travis Lisa Kenneth Bryan Lindsey Kristen Jose Alexander Jesse "
    "Katie Lindsay Shannon Vanessa Courtney Christine Alicia Cody Allison Bradley Samuel".split()
)
PLACES: tuple[str, ...] = ("store", "garden", "restaurant", "school", "hospital", "office", "house", "station")
OBJECTS: tuple[str, ...] = ("ring", "kiss", "bone", "basketball", "computer", "necklace", "drink", "snack")


def prompt(ti: int, a: str, b: str, c: str, place: str, obj: str) -> tuple[str, dict[str, int]]:
    """Template ``ti`` filled (``a``/``b`` introduced, ``c`` named again), with each field's offset."""
    # MIB's templates come in "a"/"an" twins; the object's sound picks the article.
    template = TEMPLATES[ti].replace(" a {object}", f" {article(obj)} {{object}}")
    return fill(template, {"name_A": a, "name_B": b, "name_C": c, "place": place, "object": obj})


def counterfactual_names(cf: str, io: str, s: str, new: tuple[str, str, str], io_first: bool
                         ) -> tuple[str, str, str]:
    """(name_A, name_B, name_C) of counterfactual ``cf`` for an example whose IO/S are ``io``/``s``."""
    if cf == "abc_counterfactual":
        return new
    if cf.startswith("random_names"):
        io, s = new[0], new[1]
    a, b = (io, s) if io_first else (s, io)
    if "s1_io" in cf:  # "s1_io_flip" and "s1_ioi_flip": the two introduced names trade places
        a, b = b, a
    c = io if "s2_io" in cf else s  # "s2_io_flip" and "s2_ioi_flip": IO is named where S2 was
    return a, b, c


def _answer(a: str, b: str, c: str) -> str | None:
    """The indirect object of a prompt: the introduced name that is not named again (None: no IO)."""
    if c == a and c != b:
        return b
    if c == b and c != a:
        return a
    return None


Drawn = tuple[int, str, str, str, str, bool, tuple[str, str, str]]


def _draw(rng: random.Random) -> Drawn:
    ti = rng.randrange(len(TEMPLATES))
    io, s = rng.sample(NAMES, 2)
    place, obj = rng.choice(PLACES), rng.choice(OBJECTS)
    io_first = rng.random() < 0.5
    # Drawn for every example, whichever counterfactual is asked for, so example i is the same under all.
    x, y, z = rng.sample([n for n in NAMES if n not in (io, s)], 3)
    return ti, io, s, place, obj, io_first, (x, y, z)


@lru_cache(maxsize=4)
def stream(seed: int) -> tuple[tuple[str, dict[str, int], Drawn], ...]:
    """Seed ``seed``'s distinct clean prompts, train | validation | test in that order, with their draws."""
    rng = random.Random(f"mib-ioi:{seed}")
    seen: set[str] = set()
    out: list[tuple[str, dict[str, int], Drawn]] = []
    while len(out) < sum(SPLIT_SIZES.values()):
        d = _draw(rng)
        ti, io, s, place, obj, io_first, _ = d
        clean, off = prompt(ti, *((io, s) if io_first else (s, io)), s, place, obj)
        if clean not in seen:  # templates without a place or object repeat prompts; keep each once
            seen.add(clean)
            out.append((clean, off, d))
    return tuple(out)


def build(n: int | None = None, seed: int = 0, corruption: str | None = None, split: str | None = None,
          **_: Any) -> Task:
    n, cf, split = check_options("mib-ioi", n, seed, corruption, split, COUNTERFACTUALS)
    # One stream of distinct prompts per seed, cut train | validation | test, so the splits never overlap.
    start, stop = split_bounds(SPLIT_SIZES, split)
    rows = stream(seed)[start:stop][:n]
    examples: list[Example] = []
    for clean, off, (ti, io, s, place, obj, io_first, new) in rows:
        ca, cb, cc = counterfactual_names(cf, io, s, new, io_first)
        corrupted, _ = prompt(ti, ca, cb, cc, place, obj)
        io_field, s_field = ("name_A", "name_B") if io_first else ("name_B", "name_A")
        cf_answer = _answer(ca, cb, cc)
        examples.append(Example(
            clean=clean, correct=" " + io, incorrect=" " + s, corrupted=corrupted,
            roles={"IO": off[io_field], "S1": off[s_field], "S2": off["name_C"], "END": off["END"]},
            meta={"template": ti, "order": "ABBA" if io_first else "BABA", "indirect_object": io, "subject": s,
                  "random_c": new[2], "place": place, "object": obj, "split": split, "counterfactual": cf,
                  "corrupted_answer": None if cf_answer is None else " " + cf_answer},
        ))
    return split_task("mib-ioi", "ioi", examples, "MIB's indirect-object identification", cf, split, seed)


CARDS["mib-ioi"] = Card(
    task="mib-ioi", mib_task="ioi", counts=dict(SPLIT_SIZES), counterfactuals=COUNTERFACTUALS,
    source=source("MIB-causal-variable-track/tasks/IOI_task/ (templates.json, names.json, places.json, "
                  "objects.json)"),
    mib_counts="train 10,000, validation 10,000, test 1,000",
    notes=(f"{len(TEMPLATES)} templates (MIB's 70, a/an twins merged), {len(NAMES)} names, {len(PLACES)} places, "
           f"{len(OBJECTS)} objects, both orders of introduction; answer ' IO' against ' S'.",
           "Guess: MIB's Hub rows use a wider vocabulary than the word lists its code ships (used here).",
           "Every name is one GPT-2 token after a space: with the default counterfactual every example is usable "
           "on GPT-2's tokenizer. The others move names into a template's first word, where a name has no space "
           "before it and may take more tokens ('Brittany' is 3): those examples are dropped and counted, as "
           "are examples whose names are not single tokens for another model.",
           "The bundled models know only their own small vocabulary: 7 of the 1,000 test prompts are usable "
           "there, too few to say more than that the task is not theirs."),
    accuracy=(
        Accuracy("bundled", "test", 1000, 7, 5 / 7, 1 / 7),
        Accuracy("bundled-llama", "test", 1000, 7, 4 / 7, 1 / 7),
    ),
    chance="50% correct > incorrect",
)

register(TaskSpec("mib-ioi", "MIB's IOI ('As Carl and Maria left the consulate, Carl gave a fridge to' -> "
                  "' Maria'): its templates, names and eight counterfactuals; train 10,000, validation 10,000, "
                  "test 1,000.", build, corruptions=COUNTERFACTUALS, splits=get_args(Split)))
