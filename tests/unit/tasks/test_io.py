"""Task files: export/import round trips, and errors that name file, line and field."""

from __future__ import annotations

import json

import pytest

from circuitwise.errors import TaskError, TaskFileError
from circuitwise.tasks import Task, get_task
from circuitwise.tasks.io import parse_task_text

BUILTINS = ("opposites", "opposites-seed", "timezones", "counting", "numbers-digits", "numbers-words", "ioi")


@pytest.mark.parametrize("name", BUILTINS)
def test_export_then_import_gives_the_same_task(tmp_path, name):
    task = get_task(name, n=40, seed=3)
    task.to_jsonl(tmp_path / "t.jsonl")
    back = Task.from_file(tmp_path / "t.jsonl")
    assert back == task
    assert back.name == task.name and back.description == task.description and back.meta == task.meta


def test_plain_jsonl_without_header(tmp_path):
    p = tmp_path / "mine.jsonl"
    p.write_text('{"clean": "A is", "correct": " b", "incorrect": " c"}\n\n', encoding="utf-8")
    t = Task.from_file(p)
    assert t.name == "mine" and len(t) == 1 and t[0].corrupted is None


def _err(suffix: str, text: str) -> TaskFileError:
    with pytest.raises(TaskFileError) as e:
        parse_task_text(__import__("pathlib").Path(f"f{suffix}"), text)
    return e.value


@pytest.mark.parametrize("text,line,field", [
    ('{"clean": "a", "correct": " b", "incorrect": " c"}\n{"clean": "a"}', 2, "correct"),
    ('{"clean": "a", "correct": " b", "incorrect": 3}', 1, "incorrect"),
    ('{"clean": "a", "correct": " b", "incorrect": " c", "answer": 1}', 1, "answer"),
    ('{"clean": "a", "correct": " b", "incorrect": " c", "roles": {"X": 9}}', 1, "roles"),
    ('\n\n{"clean": "a", "correct": " b",', 3, None),
    ('{"clean": "a\\ud800", "correct": " b", "incorrect": " c"}', 1, "clean"),
    ('{"clean": "a", "correct": " b", "incorrect": " c"}\n{"circuitwise_task": {"name": "x"}}', 2, "circuitwise_task"),
    ('{"circuitwise_task": {"name": 3}}', 1, "circuitwise_task.name"),
    ("[" * 100000 + "]" * 100000, 1, None),
])
def test_jsonl_errors(text, line, field):
    e = _err(".jsonl", text)
    assert (e.line, e.field) == (line, field)
    assert str(e).startswith("f.jsonl, line")


@pytest.mark.parametrize("text,line,field", [
    ("clean,correct\nA is, b\n", 1, "incorrect"),
    ("clean,correct,incorrect,correct\n", 1, "correct"),
    ("clean,correct,incorrect,extra\n", 1, "extra"),
    ("clean,correct,incorrect\n\n\n\"A, is\",\" b\"\n", 4, None),
    ("clean,correct,incorrect\n\"A is\",\" b\",\"  \"\n", 2, "incorrect"),
])
def test_csv_errors(text, line, field):
    e = _err(".csv", text)
    assert (e.line, e.field) == (line, field)


def test_csv_reads_with_bom_and_optional_corrupted(tmp_path):
    p = tmp_path / "t.csv"
    p.write_text("\ufeffclean,correct,incorrect,corrupted\n\"A is old, but B is\", young, old,\n", encoding="utf-8")
    t = Task.from_file(p)
    assert t[0].clean == "A is old, but B is" and t[0].corrupted is None


YAML_OK = """
name: opp
description: a small template task
templates:
  - "A {n1} is {a1}, but a {n2} is"
  - "The {n1} was {a1}, but the {n2} was"
correct: " {a2}"
incorrect: " {a1}"
corrupt: {a1: "{a2}"}
roles: {N1: n1, ADJ: a1, N2: n2}
values:
  - {n1: mouse, a1: small, n2: whale, a2: big}
  - {n1: desert, a1: dry, n2: swamp, a2: wet}
"""


def test_yaml_templates_with_roles_and_corruption(gpt2):
    t = parse_task_text(__import__("pathlib").Path("t.yaml"), YAML_OK)
    assert t.name == "opp" and t.description.startswith("a small") and len(t) == 4
    ex = t[0]
    assert ex.clean == "A mouse is small, but a whale is" and ex.corrupted == "A mouse is big, but a whale is"
    assert ex.roles == {"END": 30, "N1": 2, "ADJ": 11, "N2": 24}
    from circuitwise.tasks import tokenize_task

    tok, _ = tokenize_task(gpt2, t, need_corrupted=True)
    assert tok.str_tokens[0][tok.roles[0]["ADJ"]] == " small"


@pytest.mark.parametrize("text,line,field,needle", [
    ("name: x\nbogus: 1\n", 2, "bogus", "unknown key"),
    ("name: x\nexamples:\n  - {clean: a, correct: ' b', incorrect: ' c'}\n  - {clean: a}\n", 4, "correct", "missing"),
    ("name: x\nexamples: 5\n", 2, "examples", "list"),
    ("templates: ['{a.__class__}']\ncorrect: x\nincorrect: y\n", 1, "templates", "non-name"),
    ("templates: ['{a:>999999999}']\ncorrect: x\nincorrect: y\n", 1, "templates", "format spec"),
    ("templates: ['{a']\ncorrect: x\nincorrect: y\n", 1, "templates", "not a valid template"),
    ("templates: ['{a} {b}']\ncorrect: x\nincorrect: y\nvalues:\n  - {a: 1}\n", 5, "templates", "has no 'b'"),
    ("templates: ['{a}']\ncorrect: x\nincorrect: y\ncorrupt: {z: q}\nvalues: [{a: 1}]\n", 4, "corrupt.z", "not a placeholder"),
    ("templates: ['{a}']\ncorrect: x\nincorrect: y\nroles: {R: z}\n", 4, "roles.R", "not a placeholder"),
    ("templates: ['{a}{b}{c}']\ncorrect: x\nincorrect: y\nproduct: {a: " + str(list(range(200))) + ", b: "
     + str(list(range(200))) + ", c: " + str(list(range(200))) + "}\n", 4, "product", "limit"),
    ("values: [{a: 1}]\n", 1, "templates", "missing"),
    ("name: [1\n", 2, None, "not valid YAML"),
])
def test_yaml_errors(text, line, field, needle):
    e = _err(".yaml", text)
    assert (e.line, e.field) == (line, field), str(e)
    assert needle in str(e)


@pytest.mark.parametrize("suffix,text,needle", [
    (".jsonl", "", "holds no examples"),
    (".yaml", "", "holds no examples"),
    (".txt", "x", "unknown task file type"),
])
def test_whole_file_errors(suffix, text, needle):
    with pytest.raises(TaskError, match=needle):
        parse_task_text(__import__("pathlib").Path(f"f{suffix}"), text)


def test_missing_folder_and_binary_files(tmp_path):
    with pytest.raises(TaskError, match="does not exist"):
        Task.from_file(tmp_path / "none.jsonl")
    (tmp_path / "d.jsonl").mkdir()
    with pytest.raises(TaskError, match="is a folder"):
        Task.from_file(tmp_path / "d.jsonl")
    # A folder without a task suffix (a run folder given to `compare`) was "unknown task file type '(none)'".
    (tmp_path / "runs").mkdir()
    with pytest.raises(TaskError, match="runs is a folder, not a task file"):
        Task.from_file(tmp_path / "runs")
    from circuitwise.runfolder import RunFolder

    with RunFolder(tmp_path / "r1", command="run", settings={}) as rf:
        rf.write_text("results.json", "{}")
        rf.write_text("config.yaml", "task: opposites\n")
        rf.commit()
    with pytest.raises(TaskError, match=r"r1 is the output folder of `circuitwise run`, not a task.*config.yaml"):
        Task.from_file(tmp_path / "r1")
    (tmp_path / "b.csv").write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(TaskFileError, match="not UTF-8"):
        Task.from_file(tmp_path / "b.csv")


def test_get_task_file_takes_first_n(tmp_path):
    p = tmp_path / "t.jsonl"
    p.write_text("".join(json.dumps({"clean": f"x{i}", "correct": " a", "incorrect": " b"}) + "\n" for i in range(5)))
    assert [e.clean for e in get_task(str(p), n=2, seed=9)] == ["x0", "x1"]


def test_unwritable_meta_is_a_clean_error(tmp_path):
    t = Task("t", (get_task("opposites-seed")[0],), meta={"bad": object()})
    with pytest.raises(TaskError, match="cannot be written as JSON"):
        t.to_jsonl(tmp_path / "t.jsonl")
    assert not (tmp_path / "t.jsonl").exists() and not (tmp_path / "t.jsonl.tmp").exists()
