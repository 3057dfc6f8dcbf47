"""MIB's task files (Mueller et al. 2025, the circuit localization track) read as circuitwise tasks.

MIB's data sets live on the Hugging Face Hub (``mib-bench/…``) and are not shipped here; a user
who has them (``datasets``' ``to_json``, a JSON list, or HF's ``{"rows": [{"row": …}]}`` viewer
export) imports them with ``circuitwise tasks import FILE --mib TASK``. Each row becomes the
prompt pair and answers MIB's circuit track evaluates (MIB_circuit_track/dataset.py,
``HFEAPDataset.__getitem__``), with the answers written exactly as MIB tokenizes them:

- ``ioi``: ``prompt``; the counterfactual's ``prompt`` (default ``s2_io_flip_counterfactual``);
  answers ``" " + metadata.indirect_object`` and ``" " + metadata.subject``.
- ``mcqa``, ``arc-easy``, ``arc-challenge``: ``prompt``; the counterfactual's ``prompt`` (default
  ``symbol_counterfactual``); the correct answer ``choices.label[answerKey]``, the incorrect one
  the counterfactual's ``choices.label[answerKey]`` (both without a leading space, as MIB).
- ``arithmetic-addition`` / ``arithmetic-subtraction``: the rows whose ``operator`` is ``+`` / ``-``;
  ``prompt`` and ``random_counterfactual.prompt``; answers ``str(label)`` and the counterfactual's.

MIB keeps only rows whose answers are single tokens for the model; circuitwise's tokenizer check
does the same per model when the task is used (``--drop-invalid`` counts them). It checks the answer
in context (prompt + answer), so MIB's arithmetic rows ("… A: " then "91") are dropped on GPT-2's BPE,
where the prompt's last space merges into the number; Llama 3's tokenizer splits it off.

Without the Hub, ``ioi``, ``mcqa`` and the two arithmetic tasks are generated offline to MIB's
definitions (:data:`MIB_BUILTINS`: ``circuitwise tasks show mib-ioi``); ``arc-easy`` and
``arc-challenge`` come only from a file (:func:`from_file_help` says how to get it).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from circuitwise.errors import TaskError
from circuitwise.tasks.task import Example, Task

#: MIB's task names, each with its default counterfactual (the column MIB's loader reads).
MIB_TASKS: dict[str, str] = {
    "ioi": "s2_io_flip_counterfactual",
    "mcqa": "symbol_counterfactual",
    "arc-easy": "symbol_counterfactual",
    "arc-challenge": "symbol_counterfactual",
    "arithmetic-addition": "random_counterfactual",
    "arithmetic-subtraction": "random_counterfactual",
}


#: MIB's tasks circuitwise generates offline: MIB's name -> the built-in task (``circuitwise tasks show NAME``).
MIB_BUILTINS: dict[str, str] = {
    "ioi": "mib-ioi",
    "mcqa": "mib-mcqa",
    "arithmetic-addition": "mib-arithmetic-addition",
    "arithmetic-subtraction": "mib-arithmetic-subtraction",
}
#: MIB's tasks that come only from a file (their questions are ARC's, not generated): name -> Hub data set.
FROM_FILE: dict[str, str] = {"arc-easy": "mib-bench/arc_easy", "arc-challenge": "mib-bench/arc_challenge"}


def from_file_help(task: str) -> str:
    """How to get MIB's ``task`` rows onto this machine and use them (for ``arc-easy``/``arc-challenge``)."""
    hub = FROM_FILE.get(task, f"mib-bench/{task.replace('-', '_')}")
    file = f"{hub.split('/')[-1]}_test.jsonl"
    return (
        f"MIB's {task} is a task from a file: its questions are ARC's (AI2), not generated, and the data set is "
        f"not shipped with circuitwise. On a machine that reaches the Hugging Face Hub, save it as JSONL:\n"
        f"  python -c \"from datasets import load_dataset; load_dataset('{hub}', split='test').to_json('{file}')\"\n"
        f"(or split='train' / 'validation'; the Hub's dataset viewer's rows export works too). Then, here:\n"
        f"  circuitwise tasks import {file} {task}.jsonl --mib {task}    (a task file for any command)\n"
        f"  circuitwise mib --task {task}={file} ...                      (MIB's rows, read directly)\n"
        f"Each row needs prompt, choices.label, answerKey and symbol_counterfactual (prompt, choices.label, "
        f"answerKey); `tasks import` names any field a file lacks."
    )


class _Missing(Exception):
    """A row lacks a field MIB's loader reads (named, with the path into the row)."""


@dataclass(frozen=True)
class Imported:
    """A converted file: the task, and how many rows were skipped for what."""

    task: Task
    rows: int
    skipped: dict[str, int]
    counterfactual: str

    def lines(self) -> list[str]:
        out = [f"{len(self.task):,} of {self.rows:,} rows of {self.task.name} (counterfactual "
               f"{self.counterfactual})"]
        out += [f"skipped {n:,}: {why}" for why, n in sorted(self.skipped.items(), key=lambda kv: -kv[1])]
        return out


def _get(row: Any, *path: Any) -> Any:
    at = row
    for key in path:
        try:
            at = at[key]
        except (KeyError, IndexError, TypeError):
            raise _Missing(".".join(map(str, path))) from None
    if at is None:
        raise _Missing(".".join(map(str, path)))
    return at


def _ioi(row: Any, cf: str) -> Example:
    return Example(clean=str(_get(row, "prompt")), correct=" " + str(_get(row, "metadata", "indirect_object")),
                   incorrect=" " + str(_get(row, "metadata", "subject")), corrupted=str(_get(row, cf, "prompt")))


def _answer(obj: Any) -> str:
    """``choices.label[answerKey]``: MIB's answerKey is an index; ARC's original one a label ("B")."""
    labels, key = _get(obj, "choices", "label"), _get(obj, "answerKey")
    if isinstance(key, str) and key in labels:
        return key
    if isinstance(key, str) and key.isdigit():
        key = int(key)
    if not isinstance(key, int) or isinstance(key, bool) or not 0 <= key < len(labels):
        raise _Missing("answerKey (an index into choices.label)")
    return str(labels[key])


def _choice(row: Any, cf: str) -> Example:
    other = _get(row, cf)
    return Example(clean=str(_get(row, "prompt")), correct=_answer(row), incorrect=_answer(other),
                   corrupted=str(_get(other, "prompt")))


def _arithmetic(operator: str) -> Callable[[Any, str], Example | None]:
    def convert(row: Any, cf: str) -> Example | None:
        if _get(row, "operator") != operator:
            return None  # the other operation's row: MIB's loader filters it out the same way
        return Example(clean=str(_get(row, "prompt")), correct=str(_get(row, "label")),
                       incorrect=str(_get(row, cf, "label")), corrupted=str(_get(row, cf, "prompt")))
    return convert


_CONVERT: dict[str, Callable[[Any, str], Example | None]] = {
    "ioi": _ioi, "mcqa": _choice, "arc-easy": _choice, "arc-challenge": _choice,
    "arithmetic-addition": _arithmetic("+"), "arithmetic-subtraction": _arithmetic("-"),
}


def read_rows(path: Path) -> list[Any]:
    """The rows of a MIB/HF data file: JSONL, a JSON list, ``{"rows": [{"row": …}]}`` or ``{"data": […]}``."""
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise TaskError(f"{path} does not exist. Give the path of MIB's data file (JSON or JSONL).") from None
    except (OSError, UnicodeDecodeError) as e:
        raise TaskError(f"Cannot read {path}: {e}. Give MIB's data file as UTF-8 JSON or JSONL.") from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError:
        rows = []
        for i, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as e:
                    raise TaskError(f"{path}:{i} is neither JSON nor a JSONL line ({e.msg}). Export MIB's data "
                                    "with datasets' to_json (JSONL) or as one JSON list.") from None
        return rows
    if isinstance(doc, dict):
        for key in ("rows", "data", "train", "test", "validation"):
            if isinstance(doc.get(key), list):
                doc = doc[key]
                break
        else:
            return [doc]
    if not isinstance(doc, list):
        raise TaskError(f"{path} holds a JSON {type(doc).__name__}, not rows. Give MIB's rows as JSONL or a JSON list.")
    # The Hub's dataset viewer wraps each row: {"row_idx": 0, "row": {...}}.
    return [r["row"] if isinstance(r, dict) and isinstance(r.get("row"), dict) else r for r in doc]


def import_mib(path: Path | str, task: str, *, counterfactual: str | None = None, name: str | None = None
               ) -> Imported:
    """MIB's ``task`` rows in ``path`` as a circuitwise task (see the module docstring)."""
    if task not in MIB_TASKS:
        raise TaskError(f"Unknown MIB task {task!r}. Choose one of: {', '.join(MIB_TASKS)}.")
    cf = counterfactual or MIB_TASKS[task]
    rows = read_rows(Path(path))
    convert = _CONVERT[task]
    examples: list[Example] = []
    skipped: Counter[str] = Counter()
    missing: Counter[str] = Counter()
    for i, row in enumerate(rows):
        try:
            ex = convert(row, cf)
        except _Missing as m:
            missing[str(m)] += 1
            continue
        if ex is None:
            skipped["another operation (operator)"] += 1
            continue
        examples.append(Example(ex.clean, ex.correct, ex.incorrect, ex.corrupted, meta={"mib_row": i}))
    for field, n in missing.items():
        skipped[f"no {field}"] += n
    if not examples:
        fields = sorted(rows[0].keys()) if rows and isinstance(rows[0], dict) else []
        what = "; ".join(f"{n} without {f}" for f, n in missing.most_common(3)) or "none of this task's operation"
        raise TaskError(
            f"No row of {path} is a MIB {task} example ({len(rows)} rows: {what}). Its rows have the fields "
            f"{', '.join(fields) or 'none'}; MIB's {task} rows have the fields its loader reads "
            f"(circuitwise.tasks.mib). Is it another task's file, or is the counterfactual called other than "
            f"{cf!r} (--counterfactual NAME)?")
    described = f"MIB {task} (counterfactual {cf}), imported from {Path(path).name}"
    return Imported(Task(name or f"mib-{task}", tuple(examples), described, {"mib_task": task, "counterfactual": cf}),
                    len(rows), dict(skipped), cf)


__all__ = ["FROM_FILE", "MIB_BUILTINS", "MIB_TASKS", "Imported", "from_file_help", "import_mib", "read_rows"]
