"""``numbers-digits`` and ``numbers-words``: twin tasks that differ only in how numbers are written.

The seed asks how a model treats "3" and "three". Both tasks are built from the same list of
(template, values, number) combinations, shuffled by the same seed, so example *i* of one is
example *i* of the other with every number written in the other form ("Counting up: 3, 4, 5," →
" 6" against "Counting up: three, four, five," → " six"). Numbers stay within 1–20, all single
GPT-2 tokens in both forms, and never start a sentence (which would capitalise the word).

Placeholders: ``{k}`` is the number the prompt states; ``{k1}``, ``{k2}`` the next ones for the
sequence templates (or the previous ones counting down); ``{name}``/``{pron}``/``{objs}`` a
person, their pronoun and a plural object. Roles: ``NUM`` (the first number) and ``END``, in
every template. Corruption ``flip`` states a different number, so the answer changes.

Splits (``split=``): :data:`HELDOUT_TEMPLATES` are one story ("… years old. Next year …") and
one sequence ("Counting down: …"); ``train`` is the others, ``heldout-template`` those two, ``None``/``"all"`` every
template (the default). Both twins filter the same list the same way, so example *i* of
``numbers-digits`` with a split is still example *i* of ``numbers-words`` with that split.
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from typing import Any, Literal, get_args

from circuitwise.tasks.builtin import TaskSpec, register
from circuitwise.tasks.builtin._common import NUMBER_WORDS, PEOPLE, check_choice, check_n, example_rng, sample
from circuitwise.tasks.templating import fill
from circuitwise.tasks.task import Example, Task

Form = Literal["digits", "words"]
Corruption = Literal["flip"]
Split = Literal["all", "train", "heldout-template"]
LO, HI = 1, 20


@dataclass(frozen=True)
class NumberTemplate:
    """A prompt whose answer is ``k + answer_step`` and whose wrong answer is ``k + wrong_step``.

    ``seq`` is the step between the numbers ``{k}``, ``{k1}``, ``{k2}`` shown in the prompt.
    """

    text: str
    answer_step: int
    wrong_step: int
    seq: int = 0


TEMPLATES: tuple[NumberTemplate, ...] = (
    NumberTemplate("{name} had {k} {objs}. Then {pron} got one more, so now {pron} has", 1, 0),
    NumberTemplate("There were {k} {objs} on the table. After one more was added, there were", 1, 0),
    NumberTemplate("{name} is {k} years old. Next year {pron} will be", 1, 0),
    NumberTemplate("{name} had {k} {objs} and lost one, so now {pron} has", -1, 0),
    NumberTemplate("Counting up: {k}, {k1}, {k2},", 3, 2, seq=1),
    NumberTemplate("Counting down: {k}, {k1}, {k2},", -3, -2, seq=-1),
)

HELDOUT_TEMPLATE_INDICES: tuple[int, ...] = (2, 5)
HELDOUT_TEMPLATES: tuple[NumberTemplate, ...] = tuple(TEMPLATES[i] for i in HELDOUT_TEMPLATE_INDICES)
TRAIN_TEMPLATES: tuple[NumberTemplate, ...] = tuple(
    t for i, t in enumerate(TEMPLATES) if i not in HELDOUT_TEMPLATE_INDICES
)

OBJECTS: tuple[str, ...] = ("apples", "coins", "books", "eggs", "stamps", "cards", "cookies", "toys")


def spell(k: int, form: str) -> str:
    return str(k) if form == "digits" else NUMBER_WORDS[k]


def _numbers(t: NumberTemplate, k: int) -> dict[str, int]:
    return {"k": k, "k1": k + t.seq, "k2": k + 2 * t.seq}


def _valid(t: NumberTemplate, k: int) -> bool:
    used = [*_numbers(t, k).values(), k + t.answer_step, k + t.wrong_step]
    return all(LO <= v <= HI for v in used)


def _template_indices(split: str) -> list[int]:
    if split == "train":
        return [i for i in range(len(TEMPLATES)) if i not in HELDOUT_TEMPLATE_INDICES]
    if split == "heldout-template":
        return list(HELDOUT_TEMPLATE_INDICES)
    return list(range(len(TEMPLATES)))


def combinations(split: str = "all") -> list[tuple[int, int, str, str, str]]:
    """Every (template index, k, name, pronoun, objects) of ``split``, each prompt once, in a fixed order."""
    out = []
    for ti in _template_indices(split):
        t = TEMPLATES[ti]
        fields = {f for _, f, _, _ in string.Formatter().parse(t.text) if f}
        people = PEOPLE if "name" in fields else (("", ""),)
        objects = OBJECTS if "objs" in fields else ("",)
        for k in range(LO, HI + 1):
            if not _valid(t, k):
                continue
            for name, pron in people:
                for objs in objects:
                    out.append((ti, k, name, pron, objs))
    return out


def _prompt(t: NumberTemplate, k: int, form: str, name: str, pron: str, objs: str) -> tuple[str, dict[str, int]]:
    nums = {key: spell(v, form) for key, v in _numbers(t, k).items()}
    return fill(t.text, {**nums, "name": name, "pron": pron, "objs": objs})


def build_numbers(form: Form, n: int | None = None, seed: int = 0, corruption: str | None = None,
                  split: str | None = None, **_: Any) -> Task:
    corruption = check_choice(f"numbers-{form}", "corruption", corruption, get_args(Corruption), "flip")
    split = check_choice(f"numbers-{form}", "split", split, get_args(Split), "all")
    examples = []
    for ti, k, name, pron, objs in sample(combinations(split), check_n(n), seed):
        t = TEMPLATES[ti]
        clean, offsets = _prompt(t, k, form, name, pron, objs)
        # The same roles in every example: aligning prompts by role needs them all.
        roles = {"NUM": offsets["k"], "END": offsets["END"]}
        # The corrupted number is chosen from the form-free key, so both twins corrupt alike.
        rng = example_rng(seed, f"{ti}:{k}:{name}:{objs}")
        k2 = rng.choice([j for j in range(LO, HI + 1) if j != k and _valid(t, j)])
        corrupted, _ = _prompt(t, k2, form, name, pron, objs)
        examples.append(Example(
            clean=clean,
            correct=" " + spell(k + t.answer_step, form),
            incorrect=" " + spell(k + t.wrong_step, form),
            corrupted=corrupted,
            roles=roles,
            meta={"form": form, "template": ti, "k": k, "corrupted_k": k2, "corruption": corruption,
                  "corrupted_answer": " " + spell(k2 + t.answer_step, form)},
        ))
    # The unsplit task keeps its original name and options (runs and twins made before splits).
    name = f"numbers-{form}" if split == "all" else f"numbers-{form}[{split}]"
    options = {"form": form, "seed": seed, "corruption": corruption}
    if split != "all":
        options["split"] = split
    return Task(name, tuple(examples),
                f"Number prompts with numbers written as {form} (twin of numbers-"
                f"{'words' if form == 'digits' else 'digits'}; seed {seed}"
                + (f", split {split}" if split != "all" else "") + ").",
                options)


def build_digits(**options: Any) -> Task:
    return build_numbers("digits", **options)


def build_words(**options: Any) -> Task:
    return build_numbers("words", **options)


register(TaskSpec("numbers-digits", "Counting and arithmetic prompts with numbers as digits "
                  "('Counting up: 3, 4, 5,' -> ' 6'); twin of numbers-words.", build_digits,
                  corruptions=get_args(Corruption), splits=get_args(Split)))
register(TaskSpec("numbers-words", "The same prompts as numbers-digits with numbers as words "
                  "('Counting up: three, four, five,' -> ' six').", build_words,
                  corruptions=get_args(Corruption), splits=get_args(Split)))
