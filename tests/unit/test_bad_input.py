"""Each bad input ends in a clear error that says how to fix it — and nothing written is lost."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

import circuitwise as cw
from circuitwise.cli import _register, app
from circuitwise.errors import CircuitwiseError, ModelLoadError, TaskError, TaskFileError

_register()
runner = CliRunner()
GOOD = {"clean": "A tortoise is old, but a kitten is", "correct": " young", "incorrect": " old"}


def jsonl(path, *rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def cli_error(*args: str) -> str:
    """Run the CLI as `main()` does: a CircuitwiseError must surface as a clean message."""
    result = runner.invoke(app, list(args))
    assert result.exit_code != 0
    assert isinstance(result.exception, CircuitwiseError), f"not a clean error: {result.exception!r}"
    return str(result.exception)


def test_answer_that_is_not_one_token_shows_its_tokenization(tmp_path, tiny_ckpt):
    f = jsonl(tmp_path / "t.jsonl", {**GOOD, "correct": " youthfulness"})
    msg = cli_error("run", str(f), "--model", str(tiny_ckpt), "--out", str(tmp_path / "o"))
    assert "not one token" in msg and "' youth'" in msg and "single token" in msg
    assert msg.endswith("Or drop the examples unusable with this tokenizer (--drop-invalid; on_invalid='drop' "
                        "in Python).")  # the flag that drops them, named (task files are strict)


def test_answer_without_its_leading_space_is_rejected_with_the_fix(tiny_model):
    task = cw.Task("t", (cw.Example(GOOD["clean"], "youngish", " old"),))
    with pytest.raises(TaskError, match="leading space"):
        cw.tokenize_task(tiny_model, task)


def test_corrupted_prompt_of_other_length_shows_both(tiny_model):
    task = cw.Task("t", (cw.Example(**GOOD, corrupted="A tortoise is very young, but a kitten is"),))
    with pytest.raises(TaskError) as e:
        cw.tokenize_task(tiny_model, task)
    msg = str(e.value)
    assert "12 tokens" in msg and "11" in msg and "' very'" in msg and "' kitten'" in msg


def test_empty_task_file(tmp_path, tiny_ckpt):
    f = tmp_path / "empty.jsonl"
    f.write_text("\n\n")
    msg = cli_error("run", str(f), "--model", str(tiny_ckpt), "--out", str(tmp_path / "o"))
    assert "no examples" in msg and "'clean'" in msg


def test_empty_task_object(tiny_model):
    with pytest.raises(TaskError, match="no examples"):
        cw.tokenize_task(tiny_model, cw.Task("empty", ()))


def test_prompt_longer_than_the_context(tiny_model):
    long = "word " * 200 + "is"
    with pytest.raises(TaskError, match="context is 128 tokens"):
        cw.tokenize_task(tiny_model, cw.Task("t", (cw.Example(long, " young", " old"),)))


@pytest.mark.parametrize("rows, line, field", [
    ((GOOD, '{"clean": "x", "correct": " y"'), 2, None),           # broken JSON on line 2
    ((GOOD, GOOD, {"clean": "x", "correct": " y"}), 3, "incorrect"),  # missing field
    (({**GOOD, "answer": " y"},), 1, "answer"),                     # unknown field
    (({**GOOD, "correct": 5},), 1, "correct"),                      # wrong type
    (("[1, 2]",), 1, None),                                          # not an object
])
def test_malformed_jsonl_names_file_line_and_field(tmp_path, rows, line, field):
    f = jsonl(tmp_path / "bad.jsonl", *rows)
    with pytest.raises(TaskFileError) as e:
        cw.Task.from_file(f)
    assert e.value.line == line and e.value.field == field
    assert str(f) in str(e.value) and f"line {line}" in str(e.value)


def test_malformed_yaml_names_the_line(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text("name: x\ntemplates: [\"A {n} is\"\nvalues: [}\n")
    with pytest.raises(TaskFileError, match=r"bad.yaml, line \d"):
        cw.Task.from_file(f)


def test_yaml_template_placeholder_without_value(tmp_path):
    f = tmp_path / "t.yaml"
    f.write_text('templates: ["A {n1} is {adj}, but a {n2} is"]\ncorrect: " {opp}"\nincorrect: " {adj}"\n'
                 "values:\n  - {n1: tortoise, adj: old, opp: young}\n")
    with pytest.raises(TaskFileError, match="n2"):
        cw.Task.from_file(f)


def test_yaml_templates_expand_the_seed_prompts(tmp_path):
    f = tmp_path / "seed.yaml"
    f.write_text(
        "name: mini-seed\n"
        'templates: ["A {n1} is {adj}, but a {n2} is"]\n'
        'correct: " {opp}"\nincorrect: " {adj}"\ncorrupt: {adj: "{opp}"}\n'
        "values:\n  - {n1: tortoise, adj: old, n2: kitten, opp: young}\n"
        "  - {n1: desert, adj: dry, n2: rainforest, opp: wet}\n")
    task = cw.Task.from_file(f)
    assert task.name == "mini-seed" and len(task) == 2
    assert task[0] == cw.Example("A tortoise is old, but a kitten is", " young", " old",
                                 corrupted="A tortoise is young, but a kitten is")


def test_unknown_task_name_lists_the_builtins(tmp_path, tiny_ckpt):
    msg = cli_error("run", "no-such-task", "--model", str(tiny_ckpt), "--out", str(tmp_path / "o"))
    assert "opposites-seed" in msg


def test_a_split_the_task_does_not_have_is_refused_before_any_work(tmp_path, tiny_ckpt):
    # counting's builder takes no split: without the check it would quietly run the whole task.
    msg = cli_error("run", "counting", "--split", "train", "--model", str(tiny_ckpt), "--out", str(tmp_path / "o"))
    assert "has no splits" in msg and "leave --split unset" in msg
    msg = cli_error("run", "opposites", "--split", "heldout-nothing", "--model", str(tiny_ckpt), "--out", str(tmp_path / "o"))
    assert "heldout-template" in msg
    f = jsonl(tmp_path / "t.jsonl", GOOD)
    msg = cli_error("run", str(f), "--split", "train", "--model", str(tiny_ckpt), "--out", str(tmp_path / "o"))
    assert "task file" in msg
    assert not (tmp_path / "o").exists()
    assert cw.get_task("opposites", split="heldout-template", n=4).name  # a split the task has still works



def test_a_corruption_for_a_task_file_is_refused_before_any_work(tmp_path, tiny_ckpt):
    # A file's corrupted prompts are its own: --corruption used to be dropped without a word.
    f = tmp_path / "t.jsonl"
    f.write_text('{"clean": "A tortoise is old, but a kitten is", "correct": " young", "incorrect": " old", '
                 '"corrupted": "A tortoise is young, but a kitten is"}\n')
    out = tmp_path / "o"
    msg = cli_error("run", str(f), "--corruption", "flip", "--model", str(tiny_ckpt), "--out", str(out))
    assert "does not apply to the task file" in msg and "Leave --corruption unset" in msg
    assert not out.exists()

def test_missing_model_folder(tmp_path):
    with pytest.raises(ModelLoadError, match="No such model folder"):
        cw.load_model(str(tmp_path / "nope"))


def test_folder_without_safetensors_is_refused(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "pytorch_model.bin").write_bytes(b"pickle")
    with pytest.raises(ModelLoadError, match="never loads pickled"):
        cw.load_model(str(tmp_path))


def test_unreachable_hub_names_the_offline_options(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelLoadError) as e:
        cw.load_model("some-org/not-cached-model")
    msg = str(e.value)
    assert "cannot be reached" in msg and "--model bundled" in msg and "local Hugging Face checkpoint" in msg


def test_bad_option_value_is_a_config_error(tmp_path, tiny_ckpt):
    msg = cli_error("run", "opposites-seed", "--model", str(tiny_ckpt), "--top-k", "0", "--out", str(tmp_path / "o"))
    assert "--top-k: Input should be greater than or equal to 1" in msg


def test_out_that_is_a_file(tmp_path, tiny_ckpt):
    f = tmp_path / "file.txt"
    f.write_text("precious")
    msg = cli_error("run", "opposites-seed", "--model", str(tiny_ckpt), "--out", str(f))
    assert "is a file" in msg and f.read_text() == "precious"


def test_a_failed_run_keeps_what_an_earlier_run_wrote(tmp_path, tiny_ckpt):
    out = tmp_path / "run"
    assert runner.invoke(app, ["run", "opposites-seed", "--model", str(tiny_ckpt), "--out", str(out)]).exit_code == 0
    (out / "notes.txt").write_text("mine")
    snapshot = lambda: {str(p): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}  # noqa: E731
    before = snapshot()
    bad = jsonl(tmp_path / "bad.jsonl", {**GOOD, "correct": " youthfulness"})
    cli_error("run", str(bad), "--model", str(tiny_ckpt), "--out", str(out))
    assert snapshot() == before
