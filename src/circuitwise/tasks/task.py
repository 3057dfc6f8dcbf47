"""Task: the prompts a study runs on, with the answers the metric compares.

A task is model-independent text. :func:`circuitwise.tasks.tokenize_task` turns it into tensors
for one model's tokenizer and checks it there (single-token answers, equal clean/corrupted
lengths, context length).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

from circuitwise.errors import TaskError


@dataclass(frozen=True)
class Example:
    """One prompt and the two answers the logit difference compares.

    ``correct`` and ``incorrect`` are written as they follow the prompt, usually with a leading
    space (``" young"``). ``corrupted`` is the same prompt with the evidence changed (same token
    length), used by patching. ``roles`` maps a role name (``N1``, ``ADJ``, ``END`` …) to the
    character offset in ``clean`` where that role's word starts; tokenization turns it into a
    token position, so prompts of different lengths can be aligned by role. ``meta`` carries
    free-form provenance (pair, template, split) and is not used by any computation.
    """

    clean: str
    correct: str
    incorrect: str
    corrupted: str | None = None
    roles: Mapping[str, int] | None = None
    meta: Mapping[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "clean": self.clean,
            "correct": self.correct,
            "incorrect": self.incorrect,
        }
        if self.corrupted is not None:
            out["corrupted"] = self.corrupted
        if self.roles:
            out["roles"] = dict(self.roles)
        if self.meta:
            out["meta"] = dict(self.meta)
        return out


@dataclass(frozen=True)
class Task:
    """A named, ordered collection of :class:`Example`."""

    name: str
    examples: tuple[Example, ...]
    description: str = ""
    meta: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.examples, tuple):
            object.__setattr__(self, "examples", tuple(self.examples))

    def __len__(self) -> int:
        return len(self.examples)

    def __iter__(self) -> Iterator[Example]:
        return iter(self.examples)

    def __getitem__(self, i: int) -> Example:
        return self.examples[i]

    @property
    def has_corrupted(self) -> bool:
        return len(self.examples) > 0 and all(e.corrupted is not None for e in self.examples)

    def require_nonempty(self) -> None:
        if not self.examples:
            raise TaskError(
                f"Task {self.name!r} has no examples. Add at least one prompt with its correct "
                "and incorrect answer (see `circuitwise tasks show opposites-seed`)."
            )

    def require_corrupted(self, why: str) -> None:
        missing = [i for i, e in enumerate(self.examples) if e.corrupted is None]
        if missing:
            raise TaskError(
                f"{why} needs a corrupted prompt for every example, but task {self.name!r} has "
                f"none for example(s) {missing[:5]}{'…' if len(missing) > 5 else ''}. Add a "
                "'corrupted' field, or build the task with a corruption scheme "
                "(e.g. --corruption flip)."
            )

    def subset(self, indices: Iterable[int], name: str | None = None) -> "Task":
        return Task(
            name or self.name,
            tuple(self.examples[i] for i in indices),
            self.description,
            self.meta,
        )

    @classmethod
    def from_file(cls, path: str | Path, name: str | None = None) -> "Task":
        """Read a task from ``.jsonl``, ``.csv`` or ``.yaml``/``.yml`` (see README, "Task files")."""
        from circuitwise.tasks.io import read_task_file

        return read_task_file(Path(path), name=name)

    def to_jsonl(self, path: str | Path) -> None:
        from circuitwise.tasks.io import write_jsonl

        write_jsonl(self, Path(path))


__all__ = ["Example", "Task"]
