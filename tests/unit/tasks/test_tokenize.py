"""Tokenizer-aware building: drops are counted and explained; roles land on the right tokens."""

from __future__ import annotations

import pytest

from circuitwise.errors import TaskError
from circuitwise.tasks import Example, Task, get_task, tokenize_task
from circuitwise.tasks.tokenize import describe_dropped
from circuitwise.tasks.tokenizer import TokenizerModel, load_tokenizer

GOOD = Example("A grandfather is old, but a kitten is", " young", " old",
               "A grandfather is young, but a kitten is", {"N1": 2, "ADJ": 17, "END": 35})
MULTI = Example("A mouse is small, but an elephant is", " gigantically", " small",
                "A mouse is big, but an elephant is")
LONGER = Example("A desert is dry, but a swamp is", " wet", " dry", "A desert is parched, but a swamp is")
SAME = Example("The sky is", " blue", " blue")


def test_drops_are_counted_by_kind_and_said(gpt2):
    task = Task("mixed", (GOOD, MULTI, LONGER, SAME))
    tok, dropped = tokenize_task(gpt2, task, on_invalid="drop")
    assert len(tok) == 1 and tok.task.examples == (GOOD,)
    assert [(d.index, d.kind) for d in dropped] == [(1, "answer-tokens"), (2, "corrupted-length"), (3, "same-answer")]
    msg = describe_dropped(dropped, len(task), "mixed")
    assert "dropped 3 of 4" in msg and "not a single token" in msg and "different token length" in msg
    assert "1 remain" in msg
    assert "all 4 examples" in describe_dropped([], 4, "t")


def test_raise_mode_names_the_fix(gpt2):
    with pytest.raises(TaskError, match="not one token in context"):
        tokenize_task(gpt2, Task("t", (MULTI,)))
    with pytest.raises(TaskError, match="line up"):
        tokenize_task(gpt2, Task("t", (LONGER,)))


def test_roles_of_leading_space_words(gpt2):
    tok, _ = tokenize_task(gpt2, Task("t", (GOOD,)))
    s, r = tok.str_tokens[0], tok.roles[0]
    assert s[0] == "<|endoftext|>"
    assert (s[r["N1"]], s[r["ADJ"]], s[r["END"]]) == (" grandfather", " old", " is")
    # The first word has no leading space; a role on it must still work.
    tok, _ = tokenize_task(gpt2, Task("t", (Example("Mary and John went", " home", " away", roles={"A": 0, "B": 9}),)))
    assert (tok.str_tokens[0][tok.roles[0]["A"]], tok.str_tokens[0][tok.roles[0]["B"]]) == ("Mary", " John")


def test_role_on_no_token_is_dropped_with_reason(gpt2):
    # GPT-2's offsets give " there" the span of its space, so a role on the space still lands.
    spaced = Example("Hi there", " you", " me", roles={"X": 2})
    outside = Example("Hi there", " you", " me", roles={"X": 50})
    tok, dropped = tokenize_task(gpt2, Task("t", (spaced, outside)), on_invalid="drop")
    assert tok.str_tokens[0][tok.roles[0]["X"]] == " there"
    assert [(d.index, d.kind) for d in dropped] == [(1, "role")]
    assert "no token covers" in dropped[0].reason


class _NoOffsets:
    """A tokenizer that cannot report offsets, like Hugging Face's slow Python tokenizers."""

    def __init__(self, inner):
        self.inner = inner
        self.bos_token_id, self.eos_token_id, self.pad_token_id = inner.bos_token_id, inner.eos_token_id, inner.pad_token_id
        self.model_max_length = inner.model_max_length

    def __call__(self, text, return_offsets_mapping=False, **kw):
        if return_offsets_mapping:
            raise NotImplementedError("return_offset_mapping is not available when using Python tokenizers")
        return self.inner(text, **kw)

    def decode(self, ids):
        return self.inner.decode(ids)


def test_roles_without_offset_mapping_match(gpt2):
    task = get_task("opposites", n=40, seed=9)
    fast, _ = tokenize_task(gpt2, task)
    slow, _ = tokenize_task(TokenizerModel(_NoOffsets(gpt2.tokenizer)), task)
    assert fast.roles == slow.roles


def test_tokenizer_model_matches_the_real_model(gpt2, tiny_model):
    task = get_task("opposites", n=30, seed=2, corruption="other")
    a, _ = tokenize_task(gpt2, task, need_corrupted=True)
    b, _ = tokenize_task(tiny_model, task, need_corrupted=True)
    assert a.str_tokens == b.str_tokens and a.roles == b.roles
    assert (a.clean == b.clean.cpu()).all() and (a.answers == b.answers.cpu()).all()


def test_load_tokenizer_bad_source_is_a_clean_error(tmp_path):
    with pytest.raises(TaskError, match="Could not load the tokenizer"):
        load_tokenizer(str(tmp_path / "nothing-here"))
