"""``timezones``: the seed's time-zone probe. "In New York the time is 8:00 PM. In Los Angeles the
time is" → " 5", and the written variant "... eight PM ..." → " five".

The wrong answer is the stated hour (copying it is the easy mistake). Cities are in zones that
keep their offsets to each other all year (US zones that observe daylight saving, the UK and
central Europe; the few weeks where US and European clocks change on different dates aside).

Placeholders: ``{c1}``/``{c2}`` the cities, ``{t}`` the stated time. Roles: ``CITY1``, ``TIME``
(the hour), ``CITY2``, ``END``. Splits: ``digits`` ("8:00 PM"), ``words`` ("eight PM"), or both
(the default). Corruption ``flip`` states a different hour, so the answer changes.
Held-out splits: :data:`HELDOUT_TEMPLATES` is the last template; ``train`` / ``heldout-template``
are both forms on the other templates / on it, and ``digits-train``, ``digits-heldout-template``,
``words-train``, ``words-heldout-template`` one form. The digits and words variants of a split
list the same combinations in the same order, so they stay twins example by example.
"""

from __future__ import annotations

from typing import Any, Literal, get_args

from circuitwise.tasks.builtin import TaskSpec, register
from circuitwise.tasks.builtin._common import NUMBER_WORDS, check_choice, check_n, example_rng, sample
from circuitwise.tasks.templating import fill
from circuitwise.tasks.task import Example, Task

Corruption = Literal["flip"]
Split = Literal["all", "digits", "words", "train", "heldout-template", "digits-train",
                "digits-heldout-template", "words-train", "words-heldout-template"]

# Standard-time offsets from UTC, in hours.
CITIES: tuple[tuple[str, int], ...] = (
    ("New York", -5), ("Boston", -5), ("Miami", -5), ("Atlanta", -5),
    ("Chicago", -6), ("Dallas", -6), ("Houston", -6),
    ("Denver", -7),
    ("Los Angeles", -8), ("Seattle", -8), ("San Francisco", -8),
    ("London", 0),
    ("Paris", 1), ("Berlin", 1), ("Rome", 1), ("Madrid", 1),
)

TEMPLATES: tuple[str, ...] = (
    "In {c1} the time is {t}. In {c2} the time is",  # the seed's prompt
    "It is {t} in {c1}. In {c2}, it is",
    "When it is {t} in {c1}, in {c2} it is",
    "The clock in {c1} shows {t}. The clock in {c2} shows",
)


HELDOUT_TEMPLATE_INDICES: tuple[int, ...] = (len(TEMPLATES) - 1,)
HELDOUT_TEMPLATES: tuple[str, ...] = tuple(TEMPLATES[i] for i in HELDOUT_TEMPLATE_INDICES)
TRAIN_TEMPLATES: tuple[str, ...] = tuple(t for i, t in enumerate(TEMPLATES) if i not in HELDOUT_TEMPLATE_INDICES)


def clock(hour: int, half: str, form: str) -> str:
    return f"{hour}:00 {half}" if form == "digits" else f"{NUMBER_WORDS[hour]} {half}"


def hour_word(hour: int, form: str) -> str:
    return str(hour) if form == "digits" else NUMBER_WORDS[hour]


def shift(hour: int, delta: int) -> int:
    """The hour on a 12-hour clock ``delta`` hours later (earlier when negative)."""
    return (hour - 1 + delta) % 12 + 1


def combinations(split: str) -> list[tuple[int, int, int, int, str, str]]:
    if split in ("train", "heldout-template"):
        form_part, template_part = "all", split
    elif split.endswith("-train"):
        form_part, template_part = split[: -len("-train")], "train"
    elif split.endswith("-heldout-template"):
        form_part, template_part = split[: -len("-heldout-template")], "heldout-template"
    else:
        form_part, template_part = split, "all"
    forms = ("digits", "words") if form_part == "all" else (form_part,)
    templates = {
        "all": range(len(TEMPLATES)),
        "train": [i for i in range(len(TEMPLATES)) if i not in HELDOUT_TEMPLATE_INDICES],
        "heldout-template": HELDOUT_TEMPLATE_INDICES,
    }[template_part]
    out = []
    for form in forms:
        for ti in templates:
            for i, (_, o1) in enumerate(CITIES):
                for j, (_, o2) in enumerate(CITIES):
                    if (o2 - o1) % 12 == 0:  # same hour (or twelve hours apart): nothing to compute
                        continue
                    for hour in range(1, 13):
                        for half in ("AM", "PM"):
                            out.append((ti, i, j, hour, half, form))
    return out


def _prompt(ti: int, i: int, j: int, hour: int, half: str, form: str) -> tuple[str, dict[str, int]]:
    return fill(TEMPLATES[ti], {"c1": CITIES[i][0], "c2": CITIES[j][0], "t": clock(hour, half, form)})


def build(n: int | None = None, seed: int = 0, corruption: str | None = None, split: str | None = None,
          **_: Any) -> Task:
    corruption = check_choice("timezones", "corruption", corruption, get_args(Corruption), "flip")
    split = check_choice("timezones", "split", split, get_args(Split), "all")
    examples = []
    for ti, i, j, hour, half, form in sample(combinations(split), check_n(n), seed):
        delta = CITIES[j][1] - CITIES[i][1]
        clean, offsets = _prompt(ti, i, j, hour, half, form)
        # Keyed without the form, so timezones[digits] and timezones[words] corrupt alike (twins).
        hour2 = example_rng(seed, f"{ti}:{i}:{j}:{hour}:{half}").choice([h for h in range(1, 13) if h != hour])
        corrupted, _ = _prompt(ti, i, j, hour2, half, form)
        examples.append(Example(
            clean=clean,
            correct=" " + hour_word(shift(hour, delta), form),
            incorrect=" " + hour_word(hour, form),
            corrupted=corrupted,
            roles={"CITY1": offsets["c1"], "TIME": offsets["t"], "CITY2": offsets["c2"], "END": offsets["END"]},
            meta={"form": form, "template": ti, "from": CITIES[i][0], "to": CITIES[j][0], "hours": delta,
                  "hour": hour, "half": half, "corrupted_hour": hour2, "corruption": corruption, "corrupted_answer": " " + hour_word(shift(hour2, delta), form)},
        ))
    name = "timezones" if split == "all" else f"timezones[{split}]"
    return Task(name, tuple(examples), f"Time-zone conversion prompts ({split}; seed {seed}).",
                {"seed": seed, "split": split, "corruption": corruption})


register(TaskSpec("timezones", "Time-zone conversion ('In New York the time is 8:00 PM. In Los Angeles "
                  "the time is' -> ' 5'; the 'eight PM' -> ' five' variant).", build,
                  corruptions=get_args(Corruption), splits=get_args(Split)))
