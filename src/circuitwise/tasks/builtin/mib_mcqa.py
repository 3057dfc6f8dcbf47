"""``mib-mcqa``: MIB's multiple-choice colour questions (its "copycolors" MCQA), generated offline.

"Question: Coconuts are brown. What color are coconuts?\\nA. red\\nB. orange\\nC. brown\\nD. purple\\nAnswer:"
→ ``C``, the letter of the choice that repeats the stated colour.

Definitions and their sources (``aaronmueller/MIB`` @ ``cc2a160ef6da``, see ``_mib``):

- Prompt layout: the row above, printed by ``MIB-causal-variable-track/example_submission.ipynb``
  from the Hub data set (``mib-bench/copycolors_mcqa``, config ``4_answer_choices``): a statement,
  the question, four choices ``{letter}. {colour}`` on their own lines, then ``Answer:``.
- Objects and colours: ``tasks/simple_MCQA/object_color_pairs.json`` (180 objects, 13 colours;
  kept as MIB has them, e.g. a sapphire is green there). Choices: the object's colour and three
  other colours, at a random position, lettered A-D (``simple_MCQA.py``: four choices, the answer
  pointer is the position of the stated colour). How each object is phrased is a guess from the
  one published row ("Coconuts are brown"): countable objects in the plural, mass nouns in the
  singular without an article ("Snow is white"), the sky and the ocean with "the".
- Answers: the letters with no leading space, ``choices.label[answerKey]`` against the
  counterfactual's, as ``MIB_circuit_track/dataset.py`` tokenizes them.
- Counterfactuals: ``symbol_counterfactual`` (MIB's circuit track's default) gives the same question
  and choices new letters, four distinct capitals other than A-D, so the answer's letter changes
  and its position does not; ``answerPosition_counterfactual`` keeps the letters and moves the
  stated colour to another position among the same four colours, so the answer's letter changes
  with its position. Guess: MIB's code names both (and ``randomLetter``/``noun``/``color``
  variants not generated here) without their generator; the definitions follow the names.
- Splits: MIB's sizes for four choices, train 110, validation 50, test 50 (the Hub data set's
  sizes as recorded by others who downloaded it; its notebook's filter counts 110 and 50 agree),
  cut in that order from one seeded stream of distinct prompts.
"""

from __future__ import annotations

import random
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

Counterfactual = Literal["symbol_counterfactual", "answerPosition_counterfactual"]
COUNTERFACTUALS: tuple[str, ...] = get_args(Counterfactual)
SPLIT_SIZES: dict[str, int] = {"train": 110, "validation": 50, "test": 50}
NUM_CHOICES = 4
LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"

_BY_COLOUR = {
    "yellow": "lemon|banana|daffodil|sunflower|dandelion|canary|buttercup|corn|pineapple|bumblebee",
    "red": "apple|cherry|strawberry|rose|tomato|cardinal|ruby|lobster|brick|barn|cranberry|pomegranate|radish|"
           "maple|fire|ambulance|stop sign|heart|blood|wine",
    "green": "grass|emerald|lime|spinach|lettuce|kale|broccoli|cucumber|asparagus|frog|sapphire|kiwi|avocado|"
             "moss|seaweed|artichoke|pear|zucchini|cabbage|basil|parsley",
    "blue": "sky|ocean|denim|jeans",
    "grey": "shark|dolphin|whale|seal|mackerel|ash|lead|steel|concrete|stone|elephant|mouse|pigeon|smoke|fog|"
            "storm cloud",
    "orange": "carrot|orange|tangerine|pumpkin|marigold|clementine|mandarin|basketball|persimmon|apricot|"
              "cantaloupe|papaya|mango|sunset|rust|copper|tiger|fox|coral|autumn",
    "purple": "eggplant|grape|lavender|plum|amethyst|iris|lilac|orchid|thistle|wisteria",
    "brown": "chocolate|coffee|soil|bark|chestnut|walnut|beaver|acorn|bear|bison|mahogany|teak|oak|coconut|pecan|"
             "cinnamon|deer|moose|camel|horse",
    "white": "snow|cloud|milk|pearl|cotton|sugar|salt|tooth|paper|flour|cauliflower|garlic|rice|snowflake|chalk|"
             "marshmallow|cream|foam|ivory|porcelain",
    "black": "coal|panther|obsidian|crow|raven|tire|spider|ink|pepper",
    "pink": "shrimp|salmon|bubblegum|pig|flamingo|peony|carnation|tulip|lotus|grapefruit",
    "silver": "spoon|foil|sterling|platinum|mirror|nickel|chrome|cutlery|mercury|zinc",
    "gold": "ring|trophy|medal|crown|wheat|honey|brass|champagne|straw|coin",
}
#: (object, colour) in MIB's order (its JSON lists them grouped by colour, in this order).
OBJECTS: tuple[tuple[str, str], ...] = tuple((o, c) for c, objs in _BY_COLOUR.items() for o in objs.split("|"))
COLOURS: tuple[str, ...] = tuple(_BY_COLOUR)

# Mass nouns read in the singular with no article; "the" nouns are one of a kind.
_MASS = frozenset(
    "corn grass spinach lettuce kale broccoli asparagus fire blood wine moss seaweed basil parsley denim ash lead "
    "steel concrete stone smoke fog rust copper coral autumn lavender wisteria chocolate coffee soil bark mahogany "
    "teak oak cinnamon snow milk cotton sugar salt paper flour cauliflower garlic rice chalk cream foam ivory "
    "porcelain coal obsidian ink pepper salmon bubblegum foil sterling platinum nickel chrome cutlery mercury zinc "
    "wheat honey brass champagne straw".split())
_THE = frozenset({"sky", "ocean"})
_PLURAL = {"mouse": "mice", "tooth": "teeth", "deer": "deer", "moose": "moose", "bison": "bison",
           "shrimp": "shrimp", "mackerel": "mackerel", "jeans": "jeans", "tomato": "tomatoes", "mango": "mangoes"}


def phrase(obj: str) -> tuple[str, str]:
    """How the question names ``obj``, and its verb: ("coconuts", "are"), ("snow", "is"), ("the sky", "is")."""
    if obj in _THE:
        return f"the {obj}", "is"
    if obj in _MASS:
        return obj, "is"
    if obj in _PLURAL:
        return _PLURAL[obj], "are"
    head, _, last = obj.rpartition(" ")
    if last.endswith(("s", "x", "ch", "sh")):
        last += "es"
    elif last.endswith("y") and last[-2:-1] not in "aeiou":
        last = last[:-1] + "ies"
    else:
        last += "s"
    return (f"{head} {last}" if head else last), "are"


def prompt(obj: str, colour: str, choices: tuple[str, ...], letters: tuple[str, ...]) -> str:
    name, verb = phrase(obj)
    lines = "".join(f"\n{letter}. {choice}" for letter, choice in zip(letters, choices, strict=True))
    return f"Question: {name[0].upper() + name[1:]} {verb} {colour}. What color {verb} {name}?{lines}\nAnswer:"


def _draw(rng: random.Random) -> tuple[str, str, tuple[str, ...], random.Random]:
    obj, colour = rng.choice(OBJECTS)
    others = rng.sample([c for c in COLOURS if c != colour], NUM_CHOICES - 1)
    at = rng.randrange(NUM_CHOICES)
    choices = tuple(others[:at] + [colour] + others[at:])
    # The counterfactuals' own draws come from a generator of their own, so example i is the same under all.
    return obj, colour, choices, random.Random(rng.getrandbits(64))


def counterfactual(cf: str, choices: tuple[str, ...], colour: str, rng: random.Random
                   ) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(choices, letters) of counterfactual ``cf`` for a question whose choices are ``choices``."""
    letters = tuple(LETTERS[:NUM_CHOICES])
    if cf == "symbol_counterfactual":
        return choices, tuple(rng.sample(LETTERS[NUM_CHOICES:], NUM_CHOICES))
    at = choices.index(colour)
    to = rng.choice([i for i in range(NUM_CHOICES) if i != at])
    moved = list(choices)
    moved[at], moved[to] = moved[to], moved[at]
    return tuple(moved), letters


def build(n: int | None = None, seed: int = 0, corruption: str | None = None, split: str | None = None,
          **_: Any) -> Task:
    n, cf, split = check_options("mib-mcqa", n, seed, corruption, split, COUNTERFACTUALS)
    start, stop = split_bounds(SPLIT_SIZES, split)
    want = stop if n is None else min(stop, start + n)
    rng = random.Random(f"mib-mcqa:{seed}")
    letters = tuple(LETTERS[:NUM_CHOICES])
    seen: set[str] = set()
    examples = []
    while len(seen) < want:
        obj, colour, choices, own = _draw(rng)
        clean = prompt(obj, colour, choices, letters)
        if clean in seen:
            continue
        seen.add(clean)
        if len(seen) <= start:
            continue
        cf_choices, cf_letters = counterfactual(cf, choices, colour, own)
        answer, cf_answer = letters[choices.index(colour)], cf_letters[cf_choices.index(colour)]
        examples.append(Example(
            clean=clean, correct=answer, incorrect=cf_answer, corrupted=prompt(obj, colour, cf_choices, cf_letters),
            roles={"ANSWER": clean.index(f"\n{answer}. ") + 1, "END": len(clean) - len("Answer:")},
            meta={"object": obj, "color": colour, "choices": list(choices), "answerKey": choices.index(colour),
                  "split": split, "counterfactual": cf, "counterfactual_choices": list(cf_choices),
                  "counterfactual_labels": list(cf_letters)},
        ))
    return split_task("mib-mcqa", "mcqa", examples, "MIB's multiple-choice colour questions", cf, split, seed)


CARDS["mib-mcqa"] = Card(
    task="mib-mcqa", mib_task="mcqa", counts=dict(SPLIT_SIZES), counterfactuals=COUNTERFACTUALS,
    source=source("MIB-causal-variable-track/tasks/simple_MCQA/ (simple_MCQA.py, object_color_pairs.json) and "
                  "example_submission.ipynb's printed row"),
    mib_counts="train 110, validation 50, test 50 (4 answer choices)",
    notes=(f"{len(OBJECTS)} objects, {len(COLOURS)} colours, 4 choices lettered A-D; answers are the letters "
           "with no leading space, as MIB's circuit track.",
           "Guess: how each object is phrased (plural, or singular for mass nouns), and the two counterfactuals' "
           "exact draws.",
           "The bundled models were trained on other tasks: at chance here (never the letter as top token).",),
    accuracy=(Accuracy("bundled", "test", 50, 50, 23 / 50, 0.0),
              Accuracy("bundled-llama", "test", 50, 50, 20 / 50, 0.0)),
    chance="50% correct > incorrect",
)

register(TaskSpec("mib-mcqa", "MIB's multiple-choice colour questions ('Question: Coconuts are brown. What color "
                  "are coconuts? A. red B. orange C. brown D. purple Answer:' -> 'C'); symbol/position "
                  "counterfactuals; train 110, validation 50, test 50.", build, corruptions=COUNTERFACTUALS,
                  splits=get_args(Split)))
