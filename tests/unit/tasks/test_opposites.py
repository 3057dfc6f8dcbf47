"""``opposites``: the curated lists, the three corruptions, roles and splits, on GPT-2's tokenizer."""

from __future__ import annotations

import pytest

from circuitwise.errors import TaskError
from circuitwise.tasks import get_task, tokenize_task
from circuitwise.tasks.builtin import opposites as op
from circuitwise.tasks.templating import article

SCHEMES = ("flip", "connective", "other")


def test_lists_are_big_enough_and_consistent():
    assert len(op.PAIRS) >= 50
    assert len(op.TEMPLATES) >= 6
    adjectives = [w for p in op.PAIRS for w in (p.a, p.b)]
    assert len(adjectives) == len(set(adjectives)), "an adjective in two pairs makes 'other' ambiguous"
    for p in op.PAIRS:
        assert len(p.nouns_a) >= 3 and len(p.nouns_b) >= 3, p.name
        assert not set(p.nouns_a) & set(p.nouns_b), p.name
        assert p.a == p.a.strip() and p.b == p.b.strip()
    for t in op.TEMPLATES:
        assert t.count(" but ") == 1 and not t.endswith(" ")


def test_every_word_is_one_gpt2_token_with_a_leading_space(gpt2):
    words = {w for p in op.PAIRS for w in (p.a, p.b, *p.nouns_a, *p.nouns_b)}
    multi = sorted(w for w in words if len(gpt2.to_tokens(" " + w, prepend_bos=False)[0]) != 1)
    assert multi == []


@pytest.mark.parametrize("word,art", [("owl", "an"), ("elephant", "an"), ("unicorn", "a"),
                                      ("hour", "an"), ("kitten", "a"), ("uncle", "an"), ("hero", "a")])
def test_articles(word, art):
    assert article(word) == art


def test_articles_in_prompts():
    for ex in get_task("opposites", n=2000, seed=3):
        words = ex.clean.replace(",", "").split()
        for prev, w in zip(words, words[1:]):
            if prev.lower() in ("a", "an"):
                assert prev.lower() == article(w), ex.clean


@pytest.mark.parametrize("scheme", SCHEMES)
def test_at_least_300_valid_examples_per_scheme_on_gpt2(gpt2, scheme):
    task = get_task("opposites", n=400, corruption=scheme, seed=0)
    tok, dropped = tokenize_task(gpt2, task, need_corrupted=True, on_invalid="drop")
    assert dropped == [] and len(tok) == 400
    assert len({e.clean for e in tok.task}) == 400
    # Single-token answers, equal lengths: checked by tokenize_task; here the tensors agree.
    assert tok.corrupted is not None and tok.corrupted.shape == tok.clean.shape
    for j, ex in enumerate(tok.task):
        pos, s = tok.roles[j], tok.str_tokens[j]
        meta = ex.meta
        assert s[pos["N1"]] == " " + meta["n1"] and s[pos["N2"]] == " " + meta["n2"]
        assert s[pos["ADJ"]] == " " + meta["a1"] and s[pos["BUT"]] == " but"
        assert pos["END"] == len(s) - 1
        corrupted = tok.corrupted_str_tokens[j]
        changed = [i for i, (a, b) in enumerate(zip(s, corrupted)) if a != b]
        assert changed == [pos["BUT" if scheme == "connective" else "ADJ"]]


def test_full_task_has_no_duplicate_prompts_and_roles_point_at_words():
    task = get_task("opposites")
    assert len(task) >= 300 * 3
    assert len({e.clean for e in task}) == len(task)
    for ex in task:
        r = ex.roles
        assert ex.clean[r["N1"]:].startswith(ex.meta["n1"]) and ex.clean[r["N2"]:].startswith(ex.meta["n2"])
        assert ex.clean[r["ADJ"]:].startswith(ex.meta["a1"] + ",") and ex.clean[r["BUT"]:].startswith("but ")
        assert r["N1"] < r["ADJ"] < r["BUT"] < r["N2"] < r["END"]


def test_corruptions_do_what_they_say():
    flip = get_task("opposites", n=300, corruption="flip", seed=5)
    conn = get_task("opposites", n=300, corruption="connective", seed=5)
    other = get_task("opposites", n=300, corruption="other", seed=5)
    pair_of = {w: p for p in op.PAIRS for w in (p.a, p.b)}
    for f, c, o in zip(flip, conn, other):
        assert f.clean == c.clean == o.clean  # the scheme never changes which examples are drawn
        a1, a2 = f.meta["a1"], f.meta["a2"]
        assert f.correct == " " + a2 and f.incorrect == " " + a1
        assert f.corrupted == f.clean.replace(f" {a1},", f" {a2},", 1)
        assert f.meta["corrupted_answer"] == " " + a1
        assert c.corrupted == c.clean.replace(" but ", " and ", 1)
        new = o.meta["corrupted_adjective"]
        assert pair_of[new] is not pair_of[a1]
        assert o.corrupted == o.clean.replace(f" {a1},", f" {new},", 1)


def test_seed_and_n_are_deterministic():
    a = get_task("opposites", n=50, seed=1)
    assert a == get_task("opposites", n=50, seed=1)
    assert [e.clean for e in a] != [e.clean for e in get_task("opposites", n=50, seed=2)]
    assert len(a) == 50
    # Corruption choices do not depend on n: the first examples of a bigger draw are the same.
    assert get_task("opposites", n=80, seed=1, corruption="other").examples[:50] == \
        get_task("opposites", n=50, seed=1, corruption="other").examples


def test_splits_hold_out_pairs_and_templates():
    held_pairs = {p.name for p in op.HELDOUT_PAIRS}
    held_t = set(op.HELDOUT_TEMPLATE_INDICES)
    assert held_pairs and held_t and len(op.TRAIN_PAIRS) + len(op.HELDOUT_PAIRS) == len(op.PAIRS)
    assert op.HELDOUT_PAIRS == tuple(op.PAIRS[i] for i in range(4, len(op.PAIRS), 5))
    assert op.HELDOUT_TEMPLATES == op.TEMPLATES[-2:]
    seen = {}
    for split in ("train", "heldout-pair", "heldout-template", "heldout-both"):
        task = get_task("opposites", split=split)
        pairs = {e.meta["pair"] for e in task}
        temps = {e.meta["template"] for e in task}
        assert pairs <= held_pairs if "pair" in split or "both" in split else not pairs & held_pairs
        assert temps <= held_t if "template" in split or "both" in split else not temps & held_t
        seen[split] = {e.clean for e in task}
        assert len(task) >= 300, split
    assert sum(len(v) for v in seen.values()) == len(get_task("opposites"))
    assert not seen["train"] & (seen["heldout-pair"] | seen["heldout-template"] | seen["heldout-both"])


@pytest.mark.parametrize("opts,needle", [
    ({"corruption": "swap"}, "flip, connective, other"),
    ({"split": "test"}, "heldout-pair"),
    ({"n": 0}, "positive whole number"),
    ({"n": "5"}, "positive whole number"),
])
def test_bad_options_say_what_is_allowed(opts, needle):
    with pytest.raises(TaskError, match=needle):
        get_task("opposites", **opts)
