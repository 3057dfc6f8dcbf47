"""CLI tests: run the app as `main()` does, and a guard that fails the test if any model is loaded."""

from __future__ import annotations

import sys
from dataclasses import dataclass

import pytest
from typer.testing import CliRunner


@dataclass
class Outcome:
    exit_code: int
    output: str  # stdout + the CircuitwiseError's message, whitespace collapsed (rich wraps at the width)


def invoke(*args: object, env: dict[str, str] | None = None) -> Outcome:
    """Run ``circuitwise ARGS``: a CircuitwiseError is its exit status and message, anything else a bug."""
    from circuitwise.cli import _register, app
    from circuitwise.errors import CircuitwiseError

    _register()
    result = CliRunner().invoke(app, [str(a) for a in args], env=env)
    e = result.exception
    if isinstance(e, CircuitwiseError):
        return Outcome(e.exit_code, " ".join((result.output + f" error: {e}").split()))
    if e is not None and not isinstance(e, SystemExit):
        raise e
    return Outcome(result.exit_code, " ".join(result.output.split()))


@pytest.fixture
def no_model_loads(monkeypatch):
    """Every `load_model` the package imported raises: a command that gets that far failed too late."""
    import circuitwise.compare.sides  # noqa: F401  (the commands' loaders, imported so the guard reaches them)
    import circuitwise.pipeline  # noqa: F401
    import circuitwise.tasks.tokenizer  # noqa: F401

    def refuse(*_a, **_k):
        raise AssertionError("a model was loaded before the bad option was refused")

    for name, module in list(sys.modules.items()):
        if name.startswith("circuitwise") and callable(getattr(module, "load_model", None)):
            monkeypatch.setattr(module, "load_model", refuse)
    return refuse
