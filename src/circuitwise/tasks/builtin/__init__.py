"""Built-in tasks: a frozen registry entry per task, looked up by name.

Each builder takes keyword options (``n``, ``seed``, ``corruption`` …; each ignores what it does
not use) and returns a model-independent :class:`Task`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from circuitwise.errors import TaskError
from circuitwise.tasks.task import Task


@dataclass(frozen=True)
class TaskSpec:
    """A built-in task. ``corruptions``/``splits`` list the values its builder accepts (the first
    corruption is the default; a builder given a value it does not list raises TaskError)."""

    name: str
    description: str
    build: Callable[..., Task]
    corruptions: tuple[str, ...] = ()
    splits: tuple[str, ...] = ()


REGISTRY: dict[str, TaskSpec] = {}


def register(spec: TaskSpec) -> TaskSpec:
    if spec.name in REGISTRY:
        raise ValueError(f"task {spec.name!r} registered twice")
    REGISTRY[spec.name] = spec
    return spec


def get_task(name_or_path: str | Path, **options: Any) -> Task:
    """A built-in task by name, or a task file by path."""
    _load_builtins()
    if not isinstance(name_or_path, (str, Path)):
        raise TaskError(f"A task is named by a string or a path, got {type(name_or_path).__name__}.")
    key = str(name_or_path)
    split = options.get("split")
    if key in REGISTRY:
        spec = REGISTRY[key]
        # Some builders take no split and would silently build the whole task: refuse it here, for all.
        if split is not None and split not in spec.splits:
            have = f"Its splits: {', '.join(spec.splits)}" if spec.splits else "It has no splits; leave --split unset"
            raise TaskError(f"Task {key!r} has no split {split!r}. {have} (see `circuitwise tasks`).")
        return spec.build(**options)
    path = Path(key)
    if path.suffix.lower() in (".jsonl", ".csv", ".yaml", ".yml") or path.exists():
        if split is not None:
            raise TaskError(f"--split {split!r} does not apply to the task file {key}: splits belong to built-in "
                            "tasks (see `circuitwise tasks`). Leave --split unset, or write the split as its own file.")
        if options.get("corruption") is not None:
            raise TaskError(f"--corruption {options['corruption']!r} does not apply to the task file {key}: its "
                            "corrupted prompts are its own 'corrupted' fields. Leave --corruption unset, or "
                            "write the corrupted prompts into the file.")
        task = Task.from_file(path)
        n = options.get("n")
        # Files are used in their own order; --n takes the first n (seed and the rest do not apply).
        return task.subset(range(min(n, len(task)))) if isinstance(n, int) and n > 0 else task
    from circuitwise.tasks.mib import FROM_FILE, MIB_BUILTINS, from_file_help

    if key in FROM_FILE:  # MIB's ARC tasks: say how to get the file rather than "unknown"
        raise TaskError(from_file_help(key))
    if key in MIB_BUILTINS:
        raise TaskError(f"{key!r} is MIB's name for a task; its built-in generator is {MIB_BUILTINS[key]!r} "
                        f"(`circuitwise tasks show {MIB_BUILTINS[key]}`).")
    raise TaskError(
        f"Unknown task {key!r}. Built-in tasks: {', '.join(sorted(REGISTRY))}; or give the path "
        "of a .jsonl, .csv or .yaml task file."
    )


def _load_builtins() -> None:
    # Imported here, not at module import, so `import circuitwise` stays cheap.
    from circuitwise.tasks.builtin import (  # noqa: F401
        counting,
        ioi,
        mib_arithmetic,
        mib_ioi,
        mib_mcqa,
        numbers,
        opposites,
        seed,
        timezones,
    )


def specs() -> list[TaskSpec]:
    """Every built-in task, in name order."""
    _load_builtins()
    return [REGISTRY[k] for k in sorted(REGISTRY)]


__all__ = ["REGISTRY", "TaskSpec", "get_task", "register", "specs"]
