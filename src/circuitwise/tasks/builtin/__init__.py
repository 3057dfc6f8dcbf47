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
    name: str
    description: str
    build: Callable[..., Task]


REGISTRY: dict[str, TaskSpec] = {}


def register(spec: TaskSpec) -> TaskSpec:
    if spec.name in REGISTRY:
        raise ValueError(f"task {spec.name!r} registered twice")
    REGISTRY[spec.name] = spec
    return spec


def get_task(name_or_path: str | Path, **options: Any) -> Task:
    """A built-in task by name, or a task file by path."""
    _load_builtins()
    key = str(name_or_path)
    if key in REGISTRY:
        return REGISTRY[key].build(**options)
    path = Path(key)
    if path.suffix.lower() in (".jsonl", ".csv", ".yaml", ".yml") or path.exists():
        return Task.from_file(path)
    raise TaskError(
        f"Unknown task {key!r}. Built-in tasks: {', '.join(sorted(REGISTRY))}; or give the path "
        "of a .jsonl, .csv or .yaml task file."
    )


def _load_builtins() -> None:
    # Imported here, not at module import, so `import circuitwise` stays cheap.
    from circuitwise.tasks.builtin import opposites, seed  # noqa: F401


__all__ = ["REGISTRY", "TaskSpec", "get_task", "register"]
