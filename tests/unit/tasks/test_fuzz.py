"""Property-based tests: no input makes a task-file parser fail with anything but TaskError,
and every task that can be written reads back unchanged."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from circuitwise.errors import TaskError
from circuitwise.tasks import Example, Task
from circuitwise.tasks.io import HEADER_KEY, YAML_KEYS, parse_task_text, write_jsonl

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SUFFIXES = (".jsonl", ".csv", ".yaml")
FIELDS = ("clean", "correct", "incorrect", "corrupted", "roles", "meta", HEADER_KEY, "name", "x")


def _parse(suffix: str, text: str) -> None:
    try:
        task = parse_task_text(Path("fuzz" + suffix), text)
    except TaskError as e:
        assert str(e)  # every error has a message
        return
    assert isinstance(task, Task) and len(task) > 0
    assert all(isinstance(e.clean, str) and e.clean.strip() for e in task)


# Text that looks a little like the formats: braces, quotes, colons, commas, newlines.
alphabet = st.sampled_from(list('{}[]",:-\n\r \t\\#&*!|>%@`\'abcx0123456789') + ["\u2028", "\x00", "\ufeff", "é"])
near_text = st.text(alphabet, max_size=200)
scalars = st.none() | st.booleans() | st.integers(-10**6, 10**30) | st.floats(allow_nan=True) | st.text(max_size=20)
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                      | st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=8), inner, max_size=5), max_leaves=20)
objects = st.dictionaries(st.sampled_from(FIELDS), values, max_size=6)


@FUZZ
@given(suffix=st.sampled_from(SUFFIXES), text=st.text(max_size=300) | near_text)
def test_any_text_gives_a_task_or_a_clean_error(suffix, text):
    _parse(suffix, text)


@FUZZ
@given(rows=st.lists(objects | values, min_size=1, max_size=5))
def test_jsonl_of_any_json_values(rows):
    _parse(".jsonl", "\n".join(json.dumps(r) for r in rows))


@FUZZ
@given(rows=st.lists(st.lists(st.text(max_size=15), max_size=5), max_size=6),
       header=st.lists(st.sampled_from(FIELDS[:4] + ("",)), max_size=5))
def test_csv_of_any_rows(rows, header):
    buf = io.StringIO()
    csv.writer(buf).writerows([header, *rows])
    _parse(".csv", buf.getvalue())


yaml_templates = st.text(st.sampled_from(list("{}ab .:!0[]")), max_size=15)
yaml_docs = st.dictionaries(
    st.sampled_from(YAML_KEYS),
    values | yaml_templates | st.lists(yaml_templates, max_size=3)
    | st.lists(st.dictionaries(st.sampled_from(("a", "b", "clean")), scalars | yaml_templates, max_size=3), max_size=3)
    | st.dictionaries(st.sampled_from(("a", "b")), st.lists(scalars, max_size=3) | yaml_templates, max_size=2),
    max_size=7,
)


@FUZZ
@given(doc=yaml_docs)
def test_yaml_of_any_structure(doc):
    _parse(".yaml", yaml.safe_dump(doc, allow_unicode=True))


words = st.text(min_size=1, max_size=30).filter(lambda s: s.strip() != "")


@st.composite
def examples(draw):
    clean = draw(words)
    roles = draw(st.dictionaries(st.text(min_size=1, max_size=5), st.integers(0, len(clean) - 1), max_size=3))
    meta = draw(st.dictionaries(st.text(max_size=5), st.integers() | st.text(max_size=10) | st.booleans(), max_size=3))
    return Example(clean, draw(words), draw(words), draw(st.none() | words), roles or None, meta or None)


@settings(max_examples=100, deadline=None)
@given(exs=st.lists(examples(), min_size=1, max_size=5), name=words, description=st.text(max_size=30))
def test_write_then_read_is_the_identity(tmp_path_factory, exs, name, description):
    task = Task(name, tuple(exs), description, {"seed": 1})
    path = tmp_path_factory.mktemp("rt") / "t.jsonl"
    write_jsonl(task, path)
    assert Task.from_file(path) == task
