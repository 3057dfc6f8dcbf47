"""``opposites``: the seed's opposite-adjective task, generated from curated lists.

"A grandfather is old, but a kitten is" → " young" (not " old"). Each :data:`PAIRS` entry is an
antonym pair with nouns that typify each pole; a prompt states one noun's adjective and asks for
the other noun's, in either direction (the ``a`` pole first or the ``b`` pole first).

Template placeholders (:data:`TEMPLATES`): ``{n1}``/``{n2}`` the first and second noun, ``{a1}``
the first noun's adjective, ``{art1}``/``{art2}`` their article ("a"/"an", by sound) and
``{Art1}``/``{Art2}`` the same capitalised. Every template contains the word "but". The answer is
the second noun's adjective with a leading space; the wrong answer is ``a1``'s.

Roles (character offsets, turned into token positions by tokenization): ``N1``, ``ADJ`` (the
first adjective), ``BUT``, ``N2`` and ``END`` (the last word, whose next token is the answer).

Corruptions (``corruption=``): ``flip`` puts the antonym in the ADJ slot, so the right answer
flips; ``connective`` replaces "but" with "and", the seed's hypothesis that "but" signals the
opposite; ``other`` puts an adjective from an unrelated pair in the ADJ slot, removing the
evidence without pointing at the other answer.

Splits (``split=``), fixed so findings can be checked on prompts they were not found on:
:data:`HELDOUT_PAIRS` is every fifth pair (indices 4, 9, 14, …) and :data:`HELDOUT_TEMPLATES`
the last two templates. ``train`` is the other pairs on the other templates; ``heldout-pair``
the held-out pairs on the train templates; ``heldout-template`` the train pairs on the held-out
templates; ``heldout-both`` the held-out pairs on the held-out templates; ``None``/``"all"``
everything. A model trained on text from these lists should train on :data:`TRAIN_PAIRS` and
:data:`TRAIN_TEMPLATES` only.

All words are common English and single GPT-2 tokens with a leading space (tested); other
tokenizers may split some, which tokenization drops and counts.
"""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass
from typing import Any, Literal, get_args

from circuitwise.tasks.builtin import TaskSpec, register
from circuitwise.tasks.builtin._common import check_choice, check_n, example_rng, sample
from circuitwise.tasks.templating import article, fill
from circuitwise.tasks.task import Example, Task

Corruption = Literal["flip", "connective", "other"]
Split = Literal["all", "train", "heldout-pair", "heldout-template", "heldout-both"]


@dataclass(frozen=True)
class Pair:
    """Two antonymous adjectives and nouns that typify each (``a`` is true of ``nouns_a``)."""

    a: str
    b: str
    nouns_a: tuple[str, ...]
    nouns_b: tuple[str, ...]

    @property
    def name(self) -> str:
        return f"{self.a}/{self.b}"


def _p(a: str, b: str, nouns_a: str, nouns_b: str) -> Pair:
    return Pair(a, b, tuple(nouns_a.split()), tuple(nouns_b.split()))


# Countable nouns only: every template may put "a"/"an" before them. Order is part of the split
# definition (every fifth pair is held out), so append new pairs at the end.
PAIRS: tuple[Pair, ...] = (
    _p("old", "young", "grandfather castle grandmother ruin", "kitten puppy child baby lamb"),
    _p("big", "small", "elephant whale mountain truck", "mouse ant bee seed button"),
    _p("dry", "wet", "desert bone towel", "swamp ocean river lake sponge"),
    _p("hard", "soft", "brick rock diamond stone", "pillow cushion feather blanket sponge"),
    _p("beautiful", "ugly", "rose sunset butterfly painting", "weed troll goblin ogre monster"),
    _p("hot", "cold", "oven stove furnace volcano", "glacier freezer iceberg fridge"),
    _p("fast", "slow", "rocket jet rabbit car horse", "snail turtle slug"),
    _p("heavy", "light", "boulder truck piano tank", "feather balloon leaf bubble"),
    _p("tall", "short", "tower tree building giant", "toddler dwarf stool pony"),
    _p("loud", "quiet", "drum trumpet explosion alarm", "library whisper mouse monk"),
    _p("rich", "poor", "king millionaire banker billionaire", "peasant orphan servant refugee"),
    _p("strong", "weak", "ox bull lion gorilla horse", "kitten baby infant patient"),
    _p("sharp", "blunt", "knife razor sword needle blade dagger", "spoon hammer club"),
    _p("clean", "dirty", "hospital towel laboratory soap", "pig sewer sock diaper toilet"),
    _p("happy", "sad", "wedding party birthday celebration", "funeral tragedy goodbye divorce"),
    _p("sweet", "bitter", "cake cookie candy peach plum", "coffee medicine pill"),
    _p("bright", "dark", "lamp star flashlight lantern sun", "cave tunnel basement dungeon"),
    _p("thick", "thin", "dictionary log rope steak wall", "thread wire needle straw"),
    _p("smooth", "rough", "mirror pearl marble", "rock brick boulder"),
    _p("safe", "dangerous", "home bank bunker vault shelter", "volcano shark cliff bomb"),
    _p("wide", "narrow", "highway river ocean valley avenue", "alley hallway path corridor crack"),
    _p("deep", "shallow", "ocean well canyon trench", "pond creek stream"),
    _p("cheap", "expensive", "pencil sandwich sticker toy candle", "diamond yacht mansion jewel"),
    _p("alive", "dead", "puppy baby flower bird", "fossil skeleton corpse mummy"),
    _p("kind", "cruel", "nurse saint angel grandmother", "tyrant villain bully dictator"),
    _p("good", "evil", "angel saint hero priest", "devil demon villain witch"),
    _p("rare", "common", "diamond pearl eclipse comet unicorn", "pigeon weed rat"),
    _p("raw", "cooked", "sushi carrot salad", "stew pie roast soup"),
    _p("straight", "curved", "ruler arrow pole spear line", "banana rainbow hook horn"),
    _p("round", "square", "ball orange coin wheel globe", "box cube tile"),
    _p("tame", "wild", "dog cow sheep pet", "wolf tiger fox bear"),
    _p("fierce", "gentle", "lion tiger shark wolf", "lamb dove deer puppy"),
    _p("ancient", "modern", "pyramid fossil ruin temple", "smartphone laptop robot computer"),
    _p("male", "female", "king father uncle brother boy son", "queen mother aunt sister girl daughter"),
    _p("innocent", "guilty", "child baby lamb kitten", "criminal thief murderer convict"),
    _p("natural", "artificial", "forest river mountain flower lake", "robot satellite machine statue"),
    _p("public", "private", "park library street museum school", "diary bedroom bathroom"),
    _p("wise", "foolish", "owl sage elder philosopher", "fool clown idiot"),
    _p("simple", "complex", "lever hammer spoon wheel", "computer brain engine machine"),
    _p("shiny", "dull", "diamond coin mirror trophy", "rock brick stick"),
    _p("healthy", "unhealthy", "salad apple vegetable carrot", "burger soda cigarette candy"),
    _p("warm", "cool", "blanket sweater fireplace coat bath", "fan breeze cellar pool"),
    _p("honest", "dishonest", "judge priest nun monk", "liar thief cheat"),
    _p("generous", "greedy", "donor saint grandmother", "miser pirate dragon landlord"),
    _p("high", "low", "mountain cloud tower", "valley basement ditch cellar"),
    _p("polite", "rude", "gentleman diplomat waiter", "bully thug troll"),
    _p("peaceful", "violent", "dove monk garden", "war riot storm tornado hurricane"),
    _p("mild", "spicy", "potato banana bread", "pepper chili curry"),
    _p("urban", "rural", "city apartment subway", "farm village barn ranch cottage"),
    _p("formal", "casual", "gown banquet ceremony", "picnic barbecue brunch"),
    _p("serious", "funny", "judge funeral surgeon lawyer", "clown comedian joke cartoon"),
    _p("fragile", "sturdy", "glass egg bubble", "brick rock tank"),
    _p("brave", "cowardly", "lion knight hero soldier", "chicken coward mouse"),
)

# Each has exactly one "but" (the BUT role) and ends on the word before the answer.
TEMPLATES: tuple[str, ...] = (
    "{Art1} {n1} is {a1}, but {art2} {n2} is",
    "The {n1} was {a1}, but the {n2} was",
    "The {n1} is {a1}, but the {n2} is",
    "Everyone knows that {art1} {n1} is {a1}, but {art2} {n2} is",
    "The {n1} seemed {a1}, but the {n2} seemed",
    "{Art1} {n1} is usually {a1}, but {art2} {n2} is usually",
    "In the picture, the {n1} looks {a1}, but the {n2} looks",
    "My friend said that the {n1} was {a1}, but the {n2} was",
)

HELDOUT_PAIR_INDICES: tuple[int, ...] = tuple(i for i in range(len(PAIRS)) if i % 5 == 4)
HELDOUT_TEMPLATE_INDICES: tuple[int, ...] = (len(TEMPLATES) - 2, len(TEMPLATES) - 1)
HELDOUT_PAIRS: tuple[Pair, ...] = tuple(PAIRS[i] for i in HELDOUT_PAIR_INDICES)
HELDOUT_TEMPLATES: tuple[str, ...] = tuple(TEMPLATES[i] for i in HELDOUT_TEMPLATE_INDICES)
TRAIN_PAIRS: tuple[Pair, ...] = tuple(p for i, p in enumerate(PAIRS) if i not in HELDOUT_PAIR_INDICES)
TRAIN_TEMPLATES: tuple[str, ...] = tuple(
    t for i, t in enumerate(TEMPLATES) if i not in HELDOUT_TEMPLATE_INDICES
)

ROLE_OF_FIELD = {"n1": "N1", "a1": "ADJ", "n2": "N2"}


def _split_indices(split: str | None) -> tuple[list[int], list[int]]:
    """Pair indices and template indices of ``split``."""
    split = check_choice("opposites", "split", split, get_args(Split), "all")
    held_p, held_t = list(HELDOUT_PAIR_INDICES), list(HELDOUT_TEMPLATE_INDICES)
    train_p = [i for i in range(len(PAIRS)) if i not in held_p]
    train_t = [i for i in range(len(TEMPLATES)) if i not in held_t]
    return {
        "all": (list(range(len(PAIRS))), list(range(len(TEMPLATES)))),
        "train": (train_p, train_t),
        "heldout-pair": (held_p, train_t),
        "heldout-template": (train_p, held_t),
        "heldout-both": (held_p, held_t),
    }[split]


def _values(n1: str, a1: str, n2: str) -> dict[str, str]:
    art1, art2 = article(n1), article(n2)
    return {"n1": n1, "a1": a1, "n2": n2, "art1": art1, "art2": art2,
            "Art1": art1.capitalize(), "Art2": art2.capitalize()}


def _unrelated(pair_index: int, rng: random.Random) -> str:
    """An adjective from another pair that is not one of this pair's words."""
    own = {PAIRS[pair_index].a, PAIRS[pair_index].b}
    choices = [w for j, p in enumerate(PAIRS) if j != pair_index for w in (p.a, p.b) if w not in own]
    return rng.choice(choices)


def combinations(split: str | None = None) -> list[tuple[int, int, bool, str, str]]:
    """Every (pair index, template index, b-pole first?, n1, n2) of ``split``, in a fixed order."""
    pairs, templates = _split_indices(split)
    out = []
    for pi in pairs:
        p = PAIRS[pi]
        for flipped in (False, True):
            first, second = (p.nouns_b, p.nouns_a) if flipped else (p.nouns_a, p.nouns_b)
            for n1, n2 in itertools.product(first, second):
                if n1 == n2:
                    continue
                for ti in templates:
                    out.append((pi, ti, flipped, n1, n2))
    return out


def build(
    n: int | None = None,
    seed: int = 0,
    corruption: Corruption | None = "flip",
    split: Split | None = None,
    **_: Any,
) -> Task:
    """``n`` examples (all of the split when None), shuffled deterministically by ``seed``."""
    corruption = check_choice("opposites", "corruption", corruption, get_args(Corruption), "flip")
    combos = sample(combinations(split), check_n(n), seed)
    examples = []
    for pi, ti, flipped, n1, n2 in combos:
        p = PAIRS[pi]
        a1, a2 = (p.b, p.a) if flipped else (p.a, p.b)
        template = TEMPLATES[ti]
        clean, offsets = fill(template, _values(n1, a1, n2), {"BUT": "but"})
        roles = {ROLE_OF_FIELD[k]: v for k, v in offsets.items() if k in ROLE_OF_FIELD}
        roles["BUT"], roles["END"] = offsets["BUT"], offsets["END"]
        meta: dict[str, Any] = {"pair": p.name, "template": ti, "n1": n1, "n2": n2, "a1": a1,
                                "a2": a2, "corruption": corruption}
        if corruption == "flip":
            corrupted, _ = fill(template, _values(n1, a2, n2))
            meta["corrupted_answer"] = " " + a1  # the right answer to the corrupted prompt
        elif corruption == "other":
            other = _unrelated(pi, example_rng(seed, clean))
            corrupted, _ = fill(template, _values(n1, other, n2))
            meta["corrupted_adjective"] = other
        else:
            b = roles["BUT"]
            corrupted = clean[:b] + "and" + clean[b + 3:]
        examples.append(Example(clean=clean, correct=" " + a2, incorrect=" " + a1,
                                corrupted=corrupted, roles=roles, meta=meta))
    name = "opposites" if split in (None, "all") else f"opposites[{split}]"
    return Task(
        name,
        tuple(examples),
        f"Opposite adjectives from {len(PAIRS)} antonym pairs and {len(TEMPLATES)} templates "
        f"(corruption {corruption}, split {split or 'all'}, seed {seed}).",
        {"corruption": corruption, "split": split or "all", "seed": seed},
    )


register(TaskSpec(
    "opposites",
    "Opposite adjectives ('A grandfather is old, but a kitten is' -> ' young'), "
    f"{len(PAIRS)} antonym pairs x {len(TEMPLATES)} templates.",
    build,
    corruptions=get_args(Corruption),
    splits=get_args(Split),
))
