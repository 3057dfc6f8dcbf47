"""``mib-arithmetic-addition`` and ``mib-arithmetic-subtraction``: MIB's arithmetic, generated offline.

MIB names the two operations as two tasks (``arithmetic-addition``, ``arithmetic-subtraction``:
its submission folders, ``mib-bench/arithmetic_addition`` and ``…_subtraction`` on the Hub), so
they are two built-ins here, each answering MIB's task of the same name.

Definitions and their sources (``aaronmueller/MIB`` @ ``cc2a160ef6da``, see ``_mib``):

- Prompt: ``Q: How much is {op1} plus {op2}? A: `` (with the trailing space), as
  ``MIB-causal-variable-track/tasks/two_digit_addition_task/arithmetic.py`` writes it and its test
  checks it against the Hub rows ("Q: How much is 27 plus 64? A: "). Subtraction says ``minus``
  (guess: the same template with the other operator word; no subtraction prompt is in MIB's code).
- Answers: ``str(label)`` and the counterfactual's ``str(label)``, with no leading space, as
  ``MIB_circuit_track/dataset.py`` tokenizes them. On tokenizers that split the space off the
  number (Llama 3, whose ``A: 91`` is ``A``, ``:``, `` ``, ``91``) the answer is one token after
  the prompt; on GPT-2's BPE the space merges into the number (`` 91``), so the answer is not one
  token in context and circuitwise drops the example with that reason. MIB evaluates arithmetic
  on Llama-3.1-8B only.
- Operands: one-digit pairs (0-9 and 0-9) and two-digit pairs (10-99 and 10-99), 8,200 pairs.
  Inferred from MIB's split sizes: the Hub data set's 34,440 / 4,920 / 4,920 rows before its test
  set was cut to 1,000 are 70% / 10% / 10% of 49,200 = 8,200 pairs x 6 templates (the last 10% is
  the private test set). Only the one template above is in MIB's code, so these splits are 70% /
  10% / 10% of the 8,200 pairs: 5,740 / 820 / 820. Subtraction (guess) takes the pairs whose first
  operand is not the smaller, so no answer is negative: 4,150 pairs, 2,905 / 415 / 415.
- Counterfactual ``random_counterfactual`` (MIB's circuit track's default; its only one): the same
  prompt with another operand pair of the same digit count and a different result (guess: MIB's
  code does not say how it drew it; keeping the digit count keeps the token length on tokenizers
  that split digits, and a different result is what makes it a counterfactual of the answer).
"""

from __future__ import annotations

import random
from functools import cache
from typing import Any, Literal, get_args

from circuitwise.tasks.builtin import TaskSpec, register
from circuitwise.tasks.builtin._common import example_rng
from circuitwise.tasks.builtin._mib import (
    CARDS,
    Accuracy,
    Card,
    Split,
    check_options,
    source,
    split_bounds,
    split_task,
)
from circuitwise.tasks.task import Example, Task
from circuitwise.tasks.templating import fill

Operation = Literal["addition", "subtraction"]
Counterfactual = Literal["random_counterfactual"]
COUNTERFACTUALS: tuple[str, ...] = get_args(Counterfactual)
TEMPLATE = "Q: How much is {op1} {word} {op2}? A: "
WORDS = {"addition": "plus", "subtraction": "minus"}
SYMBOLS = {"addition": "+", "subtraction": "-"}  # MIB's rows' ``operator``
#: Shares of the pairs per split, MIB's 70 / 10 / 10 (its private test set's 10% is not generated).
SHARES: dict[str, float] = {"train": 0.7, "validation": 0.1, "test": 0.1}


def result(operation: str, a: int, b: int) -> int:
    return a + b if operation == "addition" else a - b


def pairs(operation: str) -> list[tuple[int, int]]:
    """Every operand pair of ``operation``, in a fixed order: the one-digit pairs, then the two-digit."""
    out = []
    for lo, hi in ((0, 9), (10, 99)):
        for a in range(lo, hi + 1):
            for b in range(lo, hi + 1):
                if operation == "subtraction" and a < b:
                    continue  # no negative answers (a guess; see the module docstring)
                out.append((a, b))
    return out


def split_sizes(operation: str) -> dict[str, int]:
    total = len(pairs(operation))
    return {s: int(round(share * total)) for s, share in SHARES.items()}


def prompt(operation: str, a: int, b: int) -> tuple[str, dict[str, int]]:
    return fill(TEMPLATE, {"op1": str(a), "word": WORDS[operation], "op2": str(b)})


@cache
def _by_digits(operation: str) -> dict[int, tuple[tuple[int, int], ...]]:
    out: dict[int, list[tuple[int, int]]] = {}
    for p in pairs(operation):
        out.setdefault(len(str(p[0])), []).append(p)
    return {k: tuple(v) for k, v in out.items()}


def _counterfactual(operation: str, a: int, b: int, rng: random.Random) -> tuple[int, int]:
    group = _by_digits(operation)[len(str(a))]
    while True:  # every group has many results, so this ends after a draw or two
        p = rng.choice(group)
        if result(operation, *p) != result(operation, a, b):
            return p


def build(operation: Operation, n: int | None = None, seed: int = 0, corruption: str | None = None,
          split: str | None = None, **_: Any) -> Task:
    task = f"mib-arithmetic-{operation}"
    n, cf, split = check_options(task, n, seed, corruption, split, COUNTERFACTUALS)
    order = pairs(operation)
    random.Random(f"mib-arithmetic:{operation}:{seed}").shuffle(order)
    start, stop = split_bounds(split_sizes(operation), split)
    chosen = order[start:stop][:n]
    examples = []
    for a, b in chosen:
        clean, off = prompt(operation, a, b)
        ca, cb = _counterfactual(operation, a, b, example_rng(seed, f"{task}:{a}:{b}"))
        corrupted, _ = prompt(operation, ca, cb)
        examples.append(Example(
            clean=clean, correct=str(result(operation, a, b)), incorrect=str(result(operation, ca, cb)),
            corrupted=corrupted, roles={"OP1": off["op1"], "OP2": off["op2"]},
            meta={"operator": SYMBOLS[operation], "operand1": a, "operand2": b, "num_digit": len(str(a)),
                  "split": split, "counterfactual": cf, "corrupted_operands": [ca, cb]},
        ))
    return split_task(task, f"arithmetic-{operation}", examples, f"MIB's arithmetic, {operation}", cf, split, seed)


def build_addition(**options: Any) -> Task:
    return build("addition", **options)


def build_subtraction(**options: Any) -> Task:
    return build("subtraction", **options)


_NOTES = (
    "Prompt 'Q: How much is 27 plus 64? A: ' (trailing space), answer '91' with no leading space, as MIB.",
    "On GPT-2's BPE the space merges into the number, so the answer is not one token after the prompt and "
    "the example is dropped; tokenizers that split the space off (Llama 3) take it. MIB runs arithmetic on "
    "Llama-3.1-8B only.",
    "Guess: MIB's data set has 6 templates per pair; only this one is in its code.",
)
for _op in get_args(Operation):
    CARDS[f"mib-arithmetic-{_op}"] = Card(
        task=f"mib-arithmetic-{_op}", mib_task=f"arithmetic-{_op}", counts=split_sizes(_op),
        counterfactuals=COUNTERFACTUALS,
        source=source("MIB-causal-variable-track/tasks/two_digit_addition_task/arithmetic.py"),
        mib_counts="train 34,440, validation 4,920, test 1,000" if _op == "addition" else "",
        notes=_NOTES + ((f"Operands 0-9 with 0-9 and 10-99 with 10-99 ({len(pairs(_op)):,} pairs)"
                         + (", first not smaller (guess: no negative answers)." if _op == "subtraction" else ".")),),
        accuracy=(Accuracy("bundled", "test", split_sizes(_op)["test"], 0, None, None),
                  Accuracy("bundled-llama", "test", split_sizes(_op)["test"], 0, None, None)),
        chance="50% correct > incorrect",
    )

register(TaskSpec("mib-arithmetic-addition", "MIB's addition ('Q: How much is 27 plus 64? A: ' -> '91'), operands "
                  "0-9 and 10-99, random counterfactual.", build_addition, corruptions=COUNTERFACTUALS,
                  splits=get_args(Split)))
register(TaskSpec("mib-arithmetic-subtraction", "MIB's subtraction ('Q: How much is 64 minus 27? A: ' -> '37'), "
                  "no negative answers, random counterfactual.", build_subtraction, corruptions=COUNTERFACTUALS,
                  splits=get_args(Split)))
