"""Pairing is decided before any work and verified: twins and same prompts pair, the rest is unpaired."""

from __future__ import annotations

import pytest

from circuitwise.compare.pairing import are_twins, decide_pairing
from circuitwise.errors import ConfigError
from circuitwise.tasks import get_task
from tests.unit.compare.known_forms import form_task


def test_number_twins_pair_example_by_example():
    a, b = get_task("numbers-digits", n=60, seed=3), get_task("numbers-words", n=60, seed=3)
    d = decide_pairing(a, b, "auto", twins=are_twins(a.name, b.name))
    assert d.paired and d.kind == "twins"
    for x, y in zip(a, b):  # what the decision checked, seen directly: same template, numbers and slots
        assert {k: v for k, v in x.meta.items() if k not in ("form", "corrupted_answer")} == \
               {k: v for k, v in y.meta.items() if k not in ("form", "corrupted_answer")}
        assert set(x.roles) == set(y.roles) == {"NUM", "END"}


def test_timezone_forms_are_twins_with_the_same_corruption():
    a, b = get_task("timezones", split="digits", n=40), get_task("timezones", split="words", n=40)
    assert decide_pairing(a, b, "auto", twins=are_twins(a.name, b.name)).paired
    assert all(x.meta["corrupted_hour"] == y.meta["corrupted_hour"] for x, y in zip(a, b))


def test_twins_are_named_by_task_form_and_split():
    assert are_twins("numbers-digits", "numbers-words") and are_twins("numbers-words[train]", "numbers-digits[train]")
    assert not are_twins("numbers-digits[train]", "numbers-words[heldout-template]")
    assert not are_twins("numbers-digits", "numbers-digits") and not are_twins("opposites", "numbers-words")
    assert are_twins("timezones[digits]", "timezones[words]")
    assert are_twins("timezones[digits-heldout-template]", "timezones[words-heldout-template]")
    assert not are_twins("timezones[digits-train]", "timezones[words]") and not are_twins("timezones", "timezones")
    for split in ("train", "heldout-template"):
        a, b = get_task("numbers-digits", n=30, split=split), get_task("numbers-words", n=30, split=split)
        assert decide_pairing(a, b, "auto", twins=are_twins(a.name, b.name)).kind == "twins"
    a, b = get_task("timezones", split="digits-train", n=30), get_task("timezones", split="words-train", n=30)
    assert decide_pairing(a, b, "auto", twins=are_twins(a.name, b.name)).kind == "twins"


def test_twins_of_another_size_or_seed_do_not_pair():
    a, b = get_task("numbers-digits", n=30), get_task("numbers-words", n=30, seed=1)
    twins = are_twins(a.name, b.name)
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


def test_timezone_forms_run_paired_end_to_end(tmp_path, tiny_model):
    import circuitwise as cw

    r = cw.compare("timezones", split_a="digits", split_b="words", n=8, model=tiny_model, out=tmp_path / "tz",
                   patching=False, circuit=None).results
    assert r.pairing.kind == "twins" and r.heads.paired and r.heads.n_a == r.heads.n_b == 8
    assert r.a.task == "timezones[digits]" and r.b.task == "timezones[words]"
    from circuitwise.tasks.builtin._common import NUMBER_WORDS

    def words(s):  # the prompt without its time: the same in both forms, pair by pair
        return [w for w in s.split() if not any(c.isdigit() for c in w) and w.strip(".,") not in NUMBER_WORDS]

    assert all(words(x.clean) == words(y.clean) for x, y in zip(r.a.examples, r.b.examples))


def test_an_example_unusable_on_one_side_is_dropped_on_both(tmp_path, two_route):
    import json

    import circuitwise as cw

    root, _, model = two_route
    rows = [json.loads(line) for line in (root / "lower.jsonl").read_text().splitlines()]
    body = [r for r in rows if "clean" in r]
    body[3]["correct"] = " youthfulness"  # two tokens for GPT-2: unusable on side B only
    bad = tmp_path / "lower_bad.jsonl"
    bad.write_text("".join(json.dumps(r) + "\n" for r in rows))
    r = cw.compare(str(root / "upper.jsonl"), str(bad), model=model, out=tmp_path / "drop", pairing="paired",
                   drop_invalid=True, patching=False, circuit=None).results
    assert r.a.n_prompts == r.b.n_prompts == 11 and r.a.n_dropped == 1 and r.b.n_dropped == 1
    assert "twin" in r.a.dropped_reasons[0]
    for x, y in zip(r.a.examples, r.b.examples):  # the pairs stayed aligned
        assert x.clean.lower() == y.clean
