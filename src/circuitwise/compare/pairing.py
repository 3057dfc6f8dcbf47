"""Whether two sides can be compared example by example, decided before any work and verified.

Pairs are example *i* of A with example *i* of B. They are paired when

- both sides are the same prompts (one task on two models, or with two settings): verified by
  equal clean prompts, answers and corrupted prompts;
- the tasks are declared twins (built to differ only in how numbers are written): verified by
  the same number of examples, the same role names (slots) in each pair and the same
  form-free provenance (template, number, corrupted number);
- the user says ``pairing="paired"`` for task files: verified by the same number of examples and
  the same role names in each pair.

Anything else (two splits of a task, unrelated tasks) is unpaired and uses unpaired statistics.
``pairing="paired"`` where the verification fails is an error, before any work.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Mapping

from circuitwise.errors import ConfigError
from circuitwise.tasks.task import Example, Task

Pairing = Literal["auto", "paired", "unpaired"]

# Built-in tasks built to be each other's twin: the same examples, another form of every number.
# A twin is named by its form-free key and its form; twins share the key (and so the split).
TWIN_TASKS = ("numbers-digits / numbers-words (each split)",
              "timezones digits / words (the splits digits, words, digits-S / words-S)")


def twin_form(name: str) -> tuple[str, str] | None:
    """(form-free key, form) of a built-in twin task's name ("numbers-words[train]"), else None."""
    base, _, rest = name.partition("[")
    split = rest[:-1] if rest.endswith("]") else None
    if base in ("numbers-digits", "numbers-words"):
        return f"numbers[{split or 'all'}]", base.removeprefix("numbers-")
    if base == "timezones" and split:
        for form in ("digits", "words"):
            if split == form or split.startswith(form + "-"):
                return f"timezones[{split[len(form):].lstrip('-') or 'all'}]", form
    return None


def are_twins(a: str, b: str) -> bool:
    """Whether tasks named ``a`` and ``b`` are twins: the same form-free examples in two forms."""
    fa, fb = twin_form(a), twin_form(b)
    return fa is not None and fb is not None and fa[0] == fb[0] and fa[1] != fb[1]


# Provenance keys that name the form itself (or depend on it) and so differ between twins.
FORM_KEYS = frozenset({"form", "corrupted_answer"})


@dataclass(frozen=True)
class PairingDecision:
    paired: bool
    kind: Literal["same-prompts", "twins", "declared", "unpaired"]
    reason: str


def _same_prompts(a: Example, b: Example) -> bool:
    return (a.clean, a.correct, a.incorrect, a.corrupted) == (b.clean, b.correct, b.incorrect, b.corrupted)


def _formless(meta: Mapping[str, Any] | None) -> dict[str, Any]:
    return {k: v for k, v in (meta or {}).items() if k not in FORM_KEYS}


def _slots(ex: Example) -> tuple[str, ...]:
    return tuple(sorted(ex.roles or {}))


def _mismatch(a: Task, b: Task, *, provenance: bool) -> str | None:
    """Why example i of A is not example i of B (None: they pair)."""
    if len(a) != len(b):
        return f"A has {len(a)} examples and B {len(b)}"
    for i, (x, y) in enumerate(zip(a.examples, b.examples)):
        if _slots(x) != _slots(y):
            return f"example {i} has roles {list(_slots(x))} in A but {list(_slots(y))} in B"
        if provenance and _formless(x.meta) != _formless(y.meta):
            return f"example {i} comes from {_formless(x.meta)} in A but {_formless(y.meta)} in B"
    return None


def decide_pairing(a: Task, b: Task, pairing: Pairing, *, twins: bool) -> PairingDecision:
    """Pair A and B or not (see the module docstring); ``twins``: the two tasks are declared twins."""
    if pairing not in ("auto", "paired", "unpaired"):
        raise ConfigError(f"Unknown pairing {pairing!r}. Use auto, paired or unpaired.")
    if pairing == "unpaired":
        return PairingDecision(False, "unpaired", "unpaired statistics were asked for (--pairing unpaired)")
    if len(a) == len(b) and all(_same_prompts(x, y) for x, y in zip(a.examples, b.examples)):
        return PairingDecision(True, "same-prompts", "both sides run the same prompts, example by example")
    if twins:
        why = _mismatch(a, b, provenance=True)
        if why is None:
            return PairingDecision(True, "twins", f"{a.name} and {b.name} are twin tasks: example i of one is "
                                   "example i of the other with every number written in the other form "
                                   "(same template, slots and numbers; checked)")
        if pairing == "paired":
            raise ConfigError(f"{a.name} and {b.name} are twins but do not pair here ({why}). Build both with "
                              "the same --n and --seed.")
        return PairingDecision(False, "unpaired", f"the twin tasks do not pair here ({why})")
    if pairing == "paired":
        why = _mismatch(a, b, provenance=False)
        if why is not None:
            raise ConfigError(f"--pairing paired needs example i of A to be example i of B, but {why}. "
                              "Give two tasks built from the same examples, or use --pairing unpaired.")
        return PairingDecision(True, "declared", "paired as asked (--pairing paired): same number of examples "
                               "and the same roles in each pair (checked)")
    return PairingDecision(False, "unpaired", "the two sides are different prompts (not the same task, not "
                           "twins); pass --pairing paired if example i of A is example i of B")


__all__ = ["FORM_KEYS", "TWIN_TASKS", "Pairing", "PairingDecision", "are_twins", "decide_pairing", "twin_form"]
