"""Shared pieces of the generated built-in tasks: option checks, sampling, word lists."""

from __future__ import annotations

import random
from typing import Any, Sequence, TypeVar

from circuitwise.errors import TaskError

T = TypeVar("T")

# Written-out numbers; all are single GPT-2 tokens with a leading space, as are the digits 1–20.
NUMBER_WORDS: tuple[str, ...] = (
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
    "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen",
    "nineteen", "twenty",
)

# (name, subject pronoun): common first names that are single GPT-2 tokens with a leading space.
PEOPLE: tuple[tuple[str, str], ...] = (
    ("John", "he"), ("Mary", "she"), ("Tom", "he"), ("Anna", "she"), ("James", "he"),
    ("Sarah", "she"), ("David", "he"), ("Emma", "she"), ("Paul", "he"), ("Lisa", "she"),
)


def check_choice(task: str, option: str, value: Any, allowed: Sequence[str], default: str | None) -> str | None:
    """``value`` if ``allowed`` (None gives ``default``), else a TaskError listing the choices."""
    if value is None:
        return default
    if value not in allowed:
        choices = ", ".join(allowed) if allowed else "none"
        raise TaskError(
            f"Task {task!r} has no {option} {value!r}. Its {option}s: {choices}"
            + (f" (default {default})." if default else "; leave --" + option + " unset.")
        )
    return value


def check_n(n: Any) -> int | None:
    if n is None:
        return None
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise TaskError(f"--n must be a positive whole number of examples, got {n!r}.")
    return n


def sample(items: list[T], n: int | None, seed: int) -> list[T]:
    """A seeded shuffle of ``items``, cut to ``n``: the same seed gives the same examples."""
    out = list(items)
    random.Random(seed).shuffle(out)
    return out if n is None else out[:n]


def example_rng(seed: int, key: str) -> random.Random:
    """A generator for one example's own choices, so they do not depend on ``n`` or the others."""
    return random.Random(f"{seed}:{key}")


__all__ = ["NUMBER_WORDS", "PEOPLE", "check_choice", "check_n", "example_rng", "sample"]
