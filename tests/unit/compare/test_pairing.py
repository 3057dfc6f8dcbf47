"""Pairing is decided before any work and verified: twins and same prompts pair, the rest is unpaired."""

from __future__ import annotations

import pytest

from circuitwise.compare.pairing import TWINS, decide_pairing
from circuitwise.errors import ConfigError
from circuitwise.tasks import get_task
from tests.unit.compare.known_forms import form_task


def test_number_twins_pair_example_by_example():
    a, b = get_task("numbers-digits", n=60, seed=3), get_task("numbers-words", n=60, seed=3)
    d = decide_pairing(a, b, "auto", twins=frozenset({a.name, b.name}) in TWINS)
    assert d.paired and d.kind == "twins"
    for x, y in zip(a, b):  # what the decision checked, seen directly: same template, numbers and slots
        assert {k: v for k, v in x.meta.items() if k not in ("form", "corrupted_answer")} == \
               {k: v for k, v in y.meta.items() if k not in ("form", "corrupted_answer")}
        assert set(x.roles) == set(y.roles) == {"NUM", "END"}


def test_timezone_forms_are_twins_with_the_same_corruption():
    a, b = get_task("timezones", split="digits", n=40), get_task("timezones", split="words", n=40)
    assert decide_pairing(a, b, "auto", twins=frozenset({a.name, b.name}) in TWINS).paired
    assert all(x.meta["corrupted_hour"] == y.meta["corrupted_hour"] for x, y in zip(a, b))


def test_twins_of_another_size_or_seed_do_not_pair():
    a, b = get_task("numbers-digits", n=30), get_task("numbers-words", n=30, seed=1)
    twins = frozenset({a.name, b.name}) in TWINS
    d = decide_pairing(a, b, "auto", twins=twins)
    assert not d.paired and "do not pair" in d.reason
    with pytest.raises(ConfigError, match="same --n and --seed"):
        decide_pairing(a, b, "paired", twins=twins)


def test_splits_are_unpaired_and_the_same_prompts_paired():
    train, held = get_task("opposites", split="train", n=20), get_task("opposites", split="heldout-template", n=20)
    assert not decide_pairing(train, held, "auto", twins=False).paired
    assert decide_pairing(train, train, "auto", twins=False).kind == "same-prompts"
    assert not decide_pairing(train, train, "unpaired", twins=False).paired


def test_declared_pairing_is_checked():
    up, low = form_task("upper", n=6), form_task("lower", n=6)
    assert decide_pairing(up, low, "paired", twins=False).kind == "declared"
    with pytest.raises(ConfigError, match="A has 6 examples and B 5"):
        decide_pairing(up, form_task("lower", n=5), "paired", twins=False)
    roles = get_task("numbers-digits", n=6)
    with pytest.raises(ConfigError, match="roles"):
        decide_pairing(up, roles, "paired", twins=False)
