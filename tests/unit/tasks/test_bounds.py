"""Task sizes are bounded early and cheaply, with messages that give the real figures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import circuitwise as cw
from circuitwise.errors import TaskError, TaskFileError
from circuitwise.tasks.io import MAX_LINE_CHARS, MAX_YAML_DEPTH, parse_task_text

BOMB = """\
name: bomb
examples:
  - clean: "A tortoise is old, but a kitten is"
    correct: " young"
    incorrect: " old"
    meta:
      a: &a ["x", "x", "x", "x", "x", "x", "x", "x", "x", "x"]
      b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]
      c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]
      d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]
      e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]
      f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]
      g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f, *f]
"""


def test_yaml_alias_bomb_is_refused_before_it_is_built(monkeypatch):
    import yaml

    def no_build(*_a, **_k):
        raise AssertionError("the document was built before its size was checked")

    monkeypatch.setattr(yaml.SafeLoader, "construct_document", no_build)
    with pytest.raises(TaskFileError, match="expands .* to more than 1,000,000 values"):
        parse_task_text(Path("bomb.yaml"), BOMB)


def test_a_few_aliases_are_fine():
    text = BOMB.split("      c:")[0]
    task = parse_task_text(Path("ok.yaml"), text)
    assert len(task.examples[0].meta["b"]) == 10


def test_deep_nesting_is_refused():
    deep = "name: deep\nexamples: []\ndescription: " + "[" * (MAX_YAML_DEPTH + 5) + "]" * (MAX_YAML_DEPTH + 5) + "\n"
    with pytest.raises(TaskFileError, match="nests deeper"):
        parse_task_text(Path("deep.yaml"), deep)


def test_a_very_long_line_is_refused_with_its_length(tmp_path):
    path = tmp_path / "long.jsonl"
    row = {"clean": "x " * (MAX_LINE_CHARS // 2 + 10), "correct": " a", "incorrect": " b"}
    path.write_text(json.dumps({"clean": "ok", "correct": " a", "incorrect": " b"}) + "\n" + json.dumps(row) + "\n")
    with pytest.raises(TaskFileError, match=r"line 2.*1,000,0\d\d characters"):
        cw.Task.from_file(path)


def test_a_long_prompt_is_refused_before_tokenizing_with_the_real_figures(tiny_model, monkeypatch):
    from circuitwise.tasks import tokenize

    def no_encode(*_a, **_k):
        raise AssertionError("the prompt was tokenized before its length was checked")

    monkeypatch.setattr(tokenize, "_encode_untruncated", no_encode)
    n_ctx = tiny_model.cfg.n_ctx
    huge = cw.Task("huge", (cw.Example("word " * 200_000 + "is", " young", " old"),))
    with pytest.raises(TaskError, match=rf"1,000,002 characters, so at least [\d,]+ tokens.*context is {n_ctx:,} tokens"):
        cw.tokenize_task(tiny_model, huge)


def test_a_prompt_just_over_the_context_gives_its_token_count(tiny_model):
    n_ctx = tiny_model.cfg.n_ctx
    long = cw.Task("long", (cw.Example(" word" * (n_ctx + 5) + " is", " young", " old"),))
    with pytest.raises(TaskError, match=rf"is {n_ctx + 7:,} tokens long; the model's context is {n_ctx:,}"):
        cw.tokenize_task(tiny_model, long)
