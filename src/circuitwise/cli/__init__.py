"""The ``circuitwise`` command: a thin typer layer over the pipeline.

Each command lives in its own module and registers itself on ``app``. Errors that circuitwise
raises on purpose (:class:`CircuitwiseError`) are printed as one clear message, without a
traceback, and exit with status 2.
"""

from __future__ import annotations

import logging
import sys

import typer
from rich.console import Console
from rich.text import Text

from circuitwise.errors import CircuitwiseError

app = typer.Typer(
    name="circuitwise",
    help="Find, test and explain the circuits behind a language model's answer.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
err_console = Console(stderr=True)


def show_note(note: str) -> None:
    """A one-line note (e.g. a processing step the model cannot take), on stderr: --json stdout stays clean."""
    err_console.print(Text.assemble(("note: ", "yellow"), note), highlight=False, soft_wrap=True)


def _register() -> None:
    # Each module adds its commands to `app`; the order here is the order of `--help`.
    from circuitwise.cli import prompt, run  # noqa: F401

    for optional in ("tasks", "patch", "circuit"):
        try:
            __import__(f"circuitwise.cli.{optional}")
        except ModuleNotFoundError as e:
            if e.name != f"circuitwise.cli.{optional}":
                raise


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    _register()
    try:
        app()
    except CircuitwiseError as e:
        # Text, not markup: messages quote token lists like ['A', ' tort'] that rich would eat.
        err_console.print(Text.assemble(("error: ", "bold red"), str(e)), highlight=False)
        sys.exit(2)
    except KeyboardInterrupt:
        err_console.print("[yellow]interrupted[/]: what was finished is kept; re-run to resume.")
        sys.exit(130)
