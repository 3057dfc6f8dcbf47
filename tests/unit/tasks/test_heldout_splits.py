"""Held-out template splits of numbers-digits / numbers-words and timezones (for the bundled models).

The splits partition the unsplit task, hold out whole templates, leave the unsplit task as it
was, and keep the digits/words twins paired example by example.
"""

from __future__ import annotations

import pytest

from circuitwise.errors import TaskError
from circuitwise.tasks import get_task
from circuitwise.tasks.builtin import numbers, timezones


def _clean(task):
    return {e.clean for e in task.examples}


@pytest.mark.parametrize("name", ("numbers-digits", "numbers-words"))
def test_numbers_splits_partition_the_task_by_template(name):
    full, train, held = (get_task(name, split=s) for s in (None, "train", "heldout-template"))
    assert _clean(train) | _clean(held) == _clean(full) and not _clean(train) & _clean(held)
    assert {e.meta["template"] for e in held.examples} == set(numbers.HELDOUT_TEMPLATE_INDICES)
    assert not {e.meta["template"] for e in train.examples} & set(numbers.HELDOUT_TEMPLATE_INDICES)
    assert full.name == name and held.name == f"{name}[heldout-template]"


@pytest.mark.parametrize("split", (None, "train", "heldout-template"))
def test_numbers_twins_stay_paired_in_every_split(split):
    d, w = get_task("numbers-digits", split=split, seed=3), get_task("numbers-words", split=split, seed=3)
    assert len(d) == len(w)
    for a, b in zip(d.examples, w.examples):
        assert (a.meta["template"], a.meta["k"], a.meta["corrupted_k"]) == (b.meta["template"], b.meta["k"],
                                                                           b.meta["corrupted_k"])


def test_the_unsplit_numbers_task_is_unchanged_by_the_splits():
    assert [e.clean for e in get_task("numbers-digits", n=50, seed=1).examples] == \
        [e.clean for e in numbers.build_numbers("digits", n=50, seed=1, split="all").examples]


def test_timezones_template_splits():
    full = get_task("timezones")
    train, held = get_task("timezones", split="train"), get_task("timezones", split="heldout-template")
    assert _clean(train) | _clean(held) == _clean(full) and not _clean(train) & _clean(held)
    assert {e.meta["template"] for e in held.examples} == set(timezones.HELDOUT_TEMPLATE_INDICES)
    for form in ("digits", "words"):
        t = get_task("timezones", split=f"{form}-heldout-template")
        assert {e.meta["form"] for e in t.examples} == {form}
        assert _clean(t) <= _clean(held)
    d = get_task("timezones", split="digits-heldout-template", seed=2, n=40)
    w = get_task("timezones", split="words-heldout-template", seed=2, n=40)
    for a, b in zip(d.examples, w.examples):
        assert (a.meta["from"], a.meta["to"], a.meta["template"]) == (b.meta["from"], b.meta["to"], b.meta["template"])
        assert a.correct.strip() == str(timezones.NUMBER_WORDS.index(b.correct.strip()))


def test_an_unknown_split_is_a_clear_error():
    with pytest.raises(TaskError, match="split"):
        get_task("numbers-digits", split="heldout-pair")
