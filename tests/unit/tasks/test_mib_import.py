"""MIB's task rows (the Hugging Face layout its circuit track loads) read as circuitwise tasks, each
field taken where MIB_circuit_track/dataset.py takes it."""

from __future__ import annotations

import json

import pytest

import circuitwise as cw
from circuitwise.errors import TaskError
from circuitwise.tasks.mib import MIB_TASKS, import_mib
from tests.unit.cli.conftest import invoke

IOI = {"prompt": "When Mary and John went to the store, John gave a drink to",
       "metadata": {"indirect_object": "Mary", "subject": "John", "random_c": "Anna"},
       "s2_io_flip_counterfactual": {"prompt": "When Mary and John went to the store, Mary gave a drink to"},
       "abc_counterfactual": {"prompt": "When Anna and Kate went to the store, John gave a drink to"}}
MCQA = {"prompt": "Q: What color is the sky? A. blue B. red\\nAnswer:",
        "choices": {"label": ["A", "B"], "text": ["blue", "red"]}, "answerKey": 0,
        "symbol_counterfactual": {"prompt": "Q: What color is the sky? X. blue Y. red\\nAnswer:",
                                  "choices": {"label": ["X", "Y"]}, "answerKey": 0}}
ADD = {"prompt": "Q: How much is 12 plus 30? A:", "label": 42, "operator": "+",
       "random_counterfactual": {"prompt": "Q: How much is 11 plus 20? A:", "label": 31}}
SUB = {"prompt": "Q: How much is 50 minus 8? A:", "label": 42, "operator": "-",
       "random_counterfactual": {"prompt": "Q: How much is 50 minus 9? A:", "label": 41}}


def _write(path, rows, layout="jsonl"):
    if layout == "jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    elif layout == "list":
        path.write_text(json.dumps(rows))
    else:  # the Hub's dataset viewer export
        path.write_text(json.dumps({"rows": [{"row_idx": i, "row": r, "truncated_cells": []}
                                             for i, r in enumerate(rows)]}))
    return path


@pytest.mark.parametrize("layout", ["jsonl", "list", "viewer"])
def test_ioi_rows_become_mibs_prompt_pair_and_answers(tmp_path, layout):
    done = import_mib(_write(tmp_path / "ioi.json", [IOI, IOI], layout), "ioi")
    ex = done.task[0]
    assert (ex.clean, ex.corrupted, ex.correct, ex.incorrect) == (
        IOI["prompt"], IOI["s2_io_flip_counterfactual"]["prompt"], " Mary", " John")
    assert len(done.task) == 2 and done.counterfactual == "s2_io_flip_counterfactual"
    other = import_mib(tmp_path / "ioi.json", "ioi", counterfactual="abc_counterfactual")
    assert other.task[0].corrupted == IOI["abc_counterfactual"]["prompt"]


def test_multiple_choice_answers_are_the_labels_as_mib_tokenizes_them(tmp_path):
    arc = dict(MCQA, answerKey="A", symbol_counterfactual=dict(MCQA["symbol_counterfactual"], answerKey="X"))
    for task, row in (("mcqa", MCQA), ("arc-easy", arc), ("arc-challenge", MCQA)):
        ex = import_mib(_write(tmp_path / f"{task}.jsonl", [row]), task).task[0]
        assert (ex.correct, ex.incorrect) == ("A", "X")  # no leading space: MIB tokenizes the label alone
        assert ex.corrupted == MCQA["symbol_counterfactual"]["prompt"]


def test_arithmetic_keeps_its_operation_only(tmp_path):
    f = _write(tmp_path / "arith.jsonl", [ADD, SUB, ADD])
    add, sub = import_mib(f, "arithmetic-addition"), import_mib(f, "arithmetic-subtraction")
    assert len(add.task) == 2 and len(sub.task) == 1
    first = add.task[0]
    assert (first.correct, first.incorrect, first.corrupted) == ("42", "31", ADD["random_counterfactual"]["prompt"])
    assert add.skipped == {"another operation (operator)": 1}


def test_rows_missing_a_field_are_counted_and_a_file_of_another_task_says_what_it_has(tmp_path):
    broken = {k: v for k, v in IOI.items() if k != "s2_io_flip_counterfactual"}
    done = import_mib(_write(tmp_path / "ioi.jsonl", [IOI, broken]), "ioi")
    assert len(done.task) == 1 and done.skipped == {"no s2_io_flip_counterfactual.prompt": 1}
    with pytest.raises(TaskError, match=r"No row .* MIB mcqa.*fields label, operator, prompt, random_counterfactual"):
        import_mib(_write(tmp_path / "arith.jsonl", [ADD]), "mcqa")
    with pytest.raises(TaskError, match="Choose one of: " + ", ".join(MIB_TASKS)):
        import_mib(tmp_path / "arith.jsonl", "greater-than")
    with pytest.raises(TaskError, match="does not exist"):
        import_mib(tmp_path / "nope.jsonl", "ioi")


def test_the_command_writes_a_task_file_every_command_reads(tmp_path):
    src = _write(tmp_path / "ioi.jsonl", [IOI] * 3)
    out = tmp_path / "ioi-task.jsonl"
    r = invoke("tasks", "import", src, out, "--mib", "ioi", "--n", 2)
    assert r.exit_code == 0 and "2 of 3 rows" not in r.output and "Wrote 2 examples" in r.output, r.output
    task = cw.Task.from_file(out)
    assert len(task) == 2 and task[0].correct == " Mary"
    model = cw.load_model("bundled", device="cpu")
    tok, dropped = cw.tokenize_task(model, task, need_corrupted=True)
    assert len(tok) == 2 and not dropped
    bad = invoke("tasks", "import", src, tmp_path / "x.csv", "--mib", "ioi")
    assert bad.exit_code == 2 and ".jsonl" in bad.output
