"""One exception hierarchy. Every message says what went wrong *and* how to fix it.

The CLI catches :class:`CircuitwiseError` and prints its message without a traceback; anything
else reaching the user is a bug in circuitwise.
"""

from __future__ import annotations


class CircuitwiseError(Exception):
    """Base class for every error circuitwise raises on purpose."""


class ModelLoadError(CircuitwiseError):
    """The model could not be loaded (unknown name, Hub unreachable, bad checkpoint folder)."""


class TaskError(CircuitwiseError):
    """A task is invalid for the model it is used with (tokenization, lengths, empty)."""


class TaskFileError(TaskError):
    """A task file is malformed; the message names the file, line and field."""

    def __init__(self, path: object, line: int | None, field: str | None, problem: str, fix: str):
        where = f"{path}"
        if line is not None:
            where += f", line {line}"
        if field is not None:
            where += f", field {field!r}"
        super().__init__(f"{where}: {problem}. {fix}")
        self.path, self.line, self.field = path, line, field


class ConfigError(CircuitwiseError):
    """An option or argument is out of range or inconsistent with others."""


class DegenerateMetricError(CircuitwiseError):
    """A normalised score was asked for where the clean–corrupted gap is (near) zero."""
