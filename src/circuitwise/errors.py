"""One exception hierarchy. Every message says what went wrong *and* how to fix it.

The CLI catches :class:`CircuitwiseError` and prints its message without a traceback, then exits
with the error's ``exit_code`` (documented in the README); anything else reaching the user is a
bug in circuitwise.
"""

from __future__ import annotations


class CircuitwiseError(Exception):
    """Base class for every error circuitwise raises on purpose."""

    # 2: the input (task, model, options, a file read) cannot be used as given.
    exit_code = 2


class OutputError(CircuitwiseError):
    """A result could not be written: permission, full disk, a file where a folder should be."""

    exit_code = 3


class WriteFailed(OutputError):
    """Writing failed part-way (a full disk, permissions): what was finished is kept, and the same command
    resumes from it once the cause is fixed (unlike a refusal, which the same command meets again)."""


class FolderBusyError(OutputError):
    """Another circuitwise process is writing to the same output folder."""

    exit_code = 4


class Interrupted(CircuitwiseError):
    """Stopped by the user (Ctrl-C); the message says what was kept and how to resume."""

    exit_code = 130


class ModelLoadError(CircuitwiseError):
    """The model could not be loaded (unknown name, Hub unreachable, bad checkpoint folder)."""


class TaskError(CircuitwiseError):
    """A task is invalid for the model it is used with (tokenization, lengths, empty)."""


class NoUsableExamples(TaskError):
    """Every example of a task was dropped for a model (answers not single tokens, too long, …): that
    task cannot be studied on that model, though it may be on another (``circuitwise mib`` skips the pair)."""


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


class MemoryBudgetError(CircuitwiseError):
    """The model, or one prompt of a stage, does not fit the memory budget: refused before any work."""


class ConfigError(CircuitwiseError):
    """An option or argument is out of range or inconsistent with others."""


class DegenerateMetricError(CircuitwiseError):
    """A normalised score was asked for where the clean–corrupted gap is (near) zero."""


class TranscoderError(ConfigError):
    """Transcoders that cannot be read or do not fit the model (shapes, layers, layout)."""


class SchemaError(ConfigError):
    """A results, patching, circuit or compare file is of another version, another tool, or malformed."""
