"""timezones, counting, numbers-digits/-words and ioi: right answers, valid on GPT-2, roles."""

from __future__ import annotations

import re

import pytest

from circuitwise.errors import TaskError
from circuitwise.tasks import get_task, tokenize_task
from circuitwise.tasks.builtin import REGISTRY, _load_builtins, specs
from circuitwise.tasks.builtin._common import NUMBER_WORDS
from circuitwise.tasks.builtin.ioi import NAMES
from circuitwise.tasks.builtin.timezones import CITIES

GENERATED = ("opposites", "timezones", "counting", "numbers-digits", "numbers-words", "ioi")


def test_registry_lists_every_task():
    _load_builtins()
    assert set(GENERATED) | {"opposites-seed"} <= set(REGISTRY)
    assert [s.name for s in specs()] == sorted(REGISTRY)


@pytest.mark.parametrize("name", GENERATED)
def test_valid_on_gpt2_with_nothing_dropped(gpt2, name):
    task = get_task(name, n=150, seed=4)
    tok, dropped = tokenize_task(gpt2, task, need_corrupted=True, on_invalid="drop")
    assert [d.reason for d in dropped] == []
    assert len({e.clean for e in task}) == len(task) == 150
    names = set(tok.roles[0])
    assert "END" in names
    for j in range(len(tok)):
        assert set(tok.roles[j]) == names  # the same roles everywhere, so sweeps align by role
        assert tok.roles[j]["END"] == int(tok.last[j])


@pytest.mark.parametrize("name", GENERATED)
def test_deterministic_and_sized(name):
    a = get_task(name, n=20, seed=7)
    assert len(a) == 20 and a == get_task(name, n=20, seed=7)


def _hour(text: str) -> int:
    text = text.strip()
    return int(text) if text.isdigit() else NUMBER_WORDS.index(text)


def test_timezones_answers_are_the_converted_hour(gpt2):
    offset = dict(CITIES)
    task = get_task("timezones", n=300, seed=1)
    forms = {e.meta["form"] for e in task}
    assert forms == {"digits", "words"}
    for ex in task:
        m = re.search(r"(\w+)(?::00)? ([AP]M)", ex.clean)
        stated = _hour(m.group(1))
        delta = offset[ex.meta["to"]] - offset[ex.meta["from"]]
        assert _hour(ex.correct) == (stated - 1 + delta) % 12 + 1
        assert _hour(ex.incorrect) == stated
    tok, _ = tokenize_task(gpt2, task)
    for j, ex in enumerate(tok.task):
        s, r = tok.str_tokens[j], tok.roles[j]
        assert s[r["CITY1"]] == " " + ex.meta["from"].split()[0]
        assert s[r["CITY2"]] == " " + ex.meta["to"].split()[0]
    assert all(e.meta["form"] == "words" for e in get_task("timezones", split="words", n=50))


def test_timezones_contains_the_seed_prompts():
    task = get_task("timezones")
    by_prompt = {e.clean: e for e in task}
    seed = by_prompt["In New York the time is 8:00 PM. In Los Angeles the time is"]
    assert seed.correct == " 5" and seed.incorrect == " 8"
    words = by_prompt["In New York the time is eight PM. In Los Angeles the time is"]
    assert words.correct == " five"


def test_counting_contains_the_seed_prompt_and_counts_one_more():
    task = get_task("counting")
    seed = [e for e in task if e.clean == "John gets one new coin every day. Yesterday he had two coins. "
            "After getting a new coin, today he has"]
    assert len(seed) == 1 and seed[0].correct == " three" and seed[0].incorrect == " two"
    for ex in task.examples[:500]:
        assert NUMBER_WORDS.index(ex.correct.strip()) == NUMBER_WORDS.index(ex.incorrect.strip()) + 1
        assert ex.clean[ex.roles["COUNT"]:].startswith(ex.incorrect.strip())


def _to_words(text: str) -> str:
    return re.sub(r"\d+", lambda m: NUMBER_WORDS[int(m.group())], text)


def test_numbers_twins_differ_only_in_the_number_form():
    digits, words = get_task("numbers-digits", seed=3), get_task("numbers-words", seed=3)
    assert len(digits) == len(words) >= 300
    for d, w in zip(digits, words):
        assert not re.search(r"\d", w.clean + w.correct + w.incorrect + w.corrupted)
        assert re.search(r"\d", d.clean)
        for field in ("clean", "correct", "incorrect", "corrupted"):
            assert _to_words(getattr(d, field)) == getattr(w, field)
        assert {k: v for k, v in d.meta.items() if k not in ("form", "corrupted_answer")} == \
            {k: v for k, v in w.meta.items() if k not in ("form", "corrupted_answer")}


def test_numbers_twins_tokenize_alike_on_gpt2(gpt2):
    d_tok, d_drop = tokenize_task(gpt2, get_task("numbers-digits", n=200), need_corrupted=True, on_invalid="drop")
    w_tok, w_drop = tokenize_task(gpt2, get_task("numbers-words", n=200), need_corrupted=True, on_invalid="drop")
    assert d_drop == w_drop == []
    assert [len(s) for s in d_tok.str_tokens] == [len(s) for s in w_tok.str_tokens]
    assert d_tok.roles == w_tok.roles
    for j in range(len(d_tok)):
        num = d_tok.roles[j]["NUM"]
        assert d_tok.str_tokens[j][num].strip().isdigit()
        assert w_tok.str_tokens[j][num].strip() in NUMBER_WORDS


def test_ioi_roles_answers_and_abc_corruption(gpt2):
    task = get_task("ioi", n=300, seed=2)
    assert {e.meta["order"] for e in task} == {"ABBA", "BABA"}
    tok, dropped = tokenize_task(gpt2, task, need_corrupted=True, on_invalid="drop")
    assert dropped == []
    for j, ex in enumerate(tok.task):
        s, r = tok.str_tokens[j], tok.roles[j]
        io, subj = ex.correct, ex.incorrect
        assert s[r["IO"]] == io and s[r["S1"]] == subj and s[r["S2"]] == subj
        assert r["S1"] < r["S2"] and r["IO"] < r["S2"]
        clean_names = [w for w in s if w.strip() in NAMES]
        corrupted_names = [w for w in tok.corrupted_str_tokens[j] if w.strip() in NAMES]
        assert len(corrupted_names) == 3 and len(set(corrupted_names)) == 3
        assert not set(corrupted_names) & set(clean_names)
    assert all(e.meta["template"] >= 8 for e in get_task("ioi", split="heldout-template", n=50))
    assert all(e.meta["template"] < 8 for e in get_task("ioi", split="train", n=50))


@pytest.mark.parametrize("name,opts", [("counting", {"corruption": "connective"}),
                                       ("timezones", {"split": "heldout-pair"}),
                                       ("ioi", {"corruption": "flip"}),
                                       ("numbers-words", {"n": -1})])
def test_unsupported_options_raise(name, opts):
    with pytest.raises(TaskError, match="Its|positive"):
        get_task(name, **opts)
