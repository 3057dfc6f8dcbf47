"""`circuitwise tasks`, `tasks show` and `tasks export`."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from circuitwise.cli import _register, app
from circuitwise.errors import CircuitwiseError
from circuitwise.tasks import Task, get_task

_register()
runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, list(args), catch_exceptions=False, env={"COLUMNS": "200"})


def test_list_shows_every_builtin_with_its_size():
    r = invoke("tasks")
    assert r.exit_code == 0, r.output
    for name in ("opposites", "opposites-seed", "timezones", "counting", "numbers-digits", "numbers-words", "ioi"):
        assert name in r.output
    assert f"{len(get_task('opposites')):,}" in r.output


def test_show_prints_tokens_and_roles(gpt2_dir):
    r = invoke("tasks", "show", "opposites", "--n", "3", "--seed", "2", "--model", str(gpt2_dir))
    assert r.exit_code == 0, r.output
    first = get_task("opposites", n=3, seed=2)[0]
    assert first.clean in r.output and f"' {first.meta['n1']}'=N1" in r.output
    assert "END@" in r.output and r.output.count("corrupted:") == 3


def test_show_counts_what_the_tokenizer_drops(tmp_path, gpt2_dir):
    p = tmp_path / "t.jsonl"
    p.write_text('{"clean": "A is", "correct": " b", "incorrect": " c"}\n'
                 '{"clean": "A is", "correct": " gigantically", "incorrect": " c"}\n')
    r = invoke("tasks", "show", str(p), "--model", str(gpt2_dir))
    assert r.exit_code == 0, r.output
    assert "dropped 1 of 2" in r.output and "not a single token" in r.output


def test_export_reads_back_unchanged(tmp_path):
    out = tmp_path / "o.jsonl"
    r = invoke("tasks", "export", "opposites", str(out), "--n", "25", "--corruption", "connective", "--split", "heldout-pair")
    assert r.exit_code == 0, r.output
    assert Task.from_file(out) == get_task("opposites", n=25, corruption="connective", split="heldout-pair")


def test_export_errors_are_clean(tmp_path):
    with pytest.raises(CircuitwiseError, match=".jsonl"):
        invoke("tasks", "export", "opposites", str(tmp_path / "o.csv"))
    with pytest.raises(CircuitwiseError, match="Unknown task"):
        invoke("tasks", "export", "nope", str(tmp_path / "o.jsonl"))
    assert not (tmp_path / "o.jsonl").exists()
