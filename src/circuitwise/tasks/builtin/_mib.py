"""What the MIB built-in tasks share: where their definitions come from, their splits, their cards.

MIB (Mueller et al. 2025) publishes its data sets on the Hugging Face Hub (``mib-bench/…``), which
these machines cannot reach. The ``mib-*`` tasks regenerate them offline from the definitions in
MIB's own code, read at these commits (the data sets' cards and generation scripts were not
available; where a module had to guess, its docstring says so):

- ``aaronmueller/MIB`` @ :data:`MIB_COMMIT`: ``MIB-causal-variable-track/tasks/`` (IOI templates and
  word lists, the MCQA object/colour list and prompt layout, the arithmetic prompt) and the
  outputs of its example notebooks (one published row per task, quoted in the tests).
- ``hannamw/MIB-circuit-track`` @ :data:`CIRCUIT_COMMIT`: ``MIB_circuit_track/dataset.py``
  (``HFEAPDataset``: which column is the counterfactual, how the answers are written and filtered).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from circuitwise.errors import TaskError
from circuitwise.tasks.builtin._common import check_choice, check_n
from circuitwise.tasks.task import Example, Task

MIB_REPO = "aaronmueller/MIB"
MIB_COMMIT = "cc2a160ef6da5508bd670e8c0ba696168a57fca3"
CIRCUIT_REPO = "hannamw/MIB-circuit-track"
CIRCUIT_COMMIT = "b759df34433c9e31043ba9e02908ce0bf20e894f"

#: MIB's split names (its Hub data sets' splits; the private test sets are not public).
Split = Literal["train", "validation", "test"]
SPLITS: tuple[str, ...] = ("train", "validation", "test")
DEFAULT_SPLIT = "train"  # what MIB's circuit track discovers circuits on (HFEAPDataset's default)


def check_options(task: str, n: Any, seed: Any, corruption: str | None, split: str | None,
                  counterfactuals: Sequence[str]) -> tuple[int | None, str, str]:
    """``(n, counterfactual, split)`` of a ``mib-*`` builder's options, or a TaskError naming the fix."""
    cf = check_choice(task, "corruption", corruption, counterfactuals, counterfactuals[0]) or ""
    chosen = check_choice(task, "split", split, SPLITS, DEFAULT_SPLIT) or ""
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise TaskError(f"--seed must be a whole number, got {seed!r}.")
    return check_n(n), cf, chosen


def split_bounds(sizes: Mapping[str, int], split: str) -> tuple[int, int]:
    """Where ``split`` starts and stops in one stream cut train | validation | test (``sizes`` in that order)."""
    names = list(sizes)
    start = sum(sizes[s] for s in names[:names.index(split)])
    return start, start + sizes[split]


def split_task(task: str, mib_task: str, examples: Sequence[Example], about: str, counterfactual: str, split: str,
               seed: int) -> Task:
    """A ``mib-*`` builder's examples as its Task: ``task``, or ``task[split]`` off the default split; the
    metadata ``circuitwise mib`` reads (MIB's task name, counterfactual, split, seed)."""
    name = task if split == DEFAULT_SPLIT else f"{task}[{split}]"
    return Task(name, tuple(examples), f"{about} ({split}; counterfactual {counterfactual}; seed {seed}).",
                {"mib_task": mib_task, "counterfactual": counterfactual, "split": split, "seed": seed})


@dataclass(frozen=True)
class Accuracy:
    """The model's own answers on one split, as measured for the card (tests re-measure them).

    ``usable`` is how many of the ``n`` examples the model's tokenizer can take (single-token answers,
    corrupted prompt of the same length); ``pairwise`` the share of those where the correct answer's
    logit beats the incorrect one's, ``top1`` where the correct answer is the top next token.
    """

    model: str
    split: str
    n: int
    usable: int
    pairwise: float | None
    top1: float | None

    def line(self) -> str:
        if not self.usable or self.pairwise is None or self.top1 is None:
            return (f"{self.model}: none of {self.n} {self.split} examples usable with its tokenizer "
                    "(answers not single tokens in context there); not applicable")
        return (f"{self.model}: {self.pairwise:.1%} correct > incorrect, {self.top1:.1%} top-1, on "
                f"{self.usable} of {self.n} {self.split} examples usable with its tokenizer")


@dataclass(frozen=True)
class Card:
    """What ``circuitwise tasks show`` prints about an MIB task before its examples."""

    task: str
    mib_task: str  # MIB's name (its submission folders and ``tasks import --mib``)
    counts: dict[str, int]  # examples per split, as generated here
    counterfactuals: tuple[str, ...]  # MIB's column names; the first is the default
    source: str
    mib_counts: str = ""  # MIB's own data set's sizes, where known
    notes: tuple[str, ...] = ()
    accuracy: tuple[Accuracy, ...] = field(default_factory=tuple)
    chance: str = ""

    def lines(self) -> list[str]:
        out = [f"MIB task {self.mib_task} (generated offline; circuitwise mib --task "
               f"{self.mib_task}={self.task})",
               "examples: " + ", ".join(f"{s} {n:,}" for s, n in self.counts.items())
               + (f" (MIB's data set: {self.mib_counts})" if self.mib_counts else ""),
               f"counterfactuals (--corruption): {self.counterfactuals[0]} (default)"
               + "".join(f", {c}" for c in self.counterfactuals[1:]),
               f"source: {self.source}"]
        out += [f"note: {n}" for n in self.notes]
        if self.accuracy:
            out.append("accuracy on the bundled models" + (f" (chance: {self.chance})" if self.chance else "")
                       + ":")
            out += [f"  {a.line()}" for a in self.accuracy]
        return out


#: Cards by built-in task name (each ``mib-*`` module adds its own).
CARDS: dict[str, Card] = {}


def source(path: str) -> str:
    return f"{MIB_REPO}@{MIB_COMMIT[:12]}:{path}; answers and counterfactual as {CIRCUIT_REPO}@" \
           f"{CIRCUIT_COMMIT[:12]}:MIB_circuit_track/dataset.py"


__all__ = ["CARDS", "CIRCUIT_COMMIT", "CIRCUIT_REPO", "DEFAULT_SPLIT", "MIB_COMMIT", "MIB_REPO", "SPLITS",
           "Accuracy", "Card", "Split", "source"]
