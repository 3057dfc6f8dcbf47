"""The ``circuitwise`` command: a thin typer layer over the pipeline.

Each command lives in its own module and registers itself on ``app``. Errors that circuitwise
raises on purpose (:class:`CircuitwiseError`) are printed as one clear message, without a
traceback, and exit with the error's status: 2 bad input, 3 an output that cannot be written,
4 the output folder is in use, 130 interrupted (see the README).
"""

from __future__ import annotations

import errno
import logging
import sys
from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.text import Text
from typer.core import TyperGroup

from circuitwise.errors import CircuitwiseError, ConfigError, Interrupted

if TYPE_CHECKING:
    from typer._click.core import Context


class _Group(TyperGroup):
    """Typo hints name only flags that --help shows: the parser's own hint draws on every flag of the
    command, so `circuit --circut-target` suggested the hidden old spelling `--target` beside
    `--circuit-target`. An old spelling close to the typo is offered under its new name
    (`benchmark --method` → `--circuit`, for the old `--methods`)."""

    def invoke(self, ctx: Context) -> object:
        from typer._click.exceptions import NoSuchOption

        try:
            return super().invoke(ctx)
        except NoSuchOption as e:
            if e.ctx is not None and e.possibilities:
                e.possibilities = _shown_hints(e.option_name, e.ctx) or None
            raise


def _shown_hints(typo: str, ctx: Context) -> list[str]:
    from difflib import get_close_matches

    from circuitwise.cli.options import DEPRECATED

    renamed = DEPRECATED.get(str(ctx.info_name), {})
    flags = {flag: bool(getattr(p, "hidden", False)) for p in ctx.command.params
             for flag in (*p.opts, *p.secondary_opts) if flag.startswith("--")}
    out = [renamed.get(flag, "") if hidden else flag for flag in get_close_matches(typo, list(flags))
           for hidden in (flags[flag],)]
    return list(dict.fromkeys(f for f in out if f.startswith("--")))


app = typer.Typer(
    cls=_Group,
    name="circuitwise",
    help="Find, test and explain the circuits behind a language model's answer.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # Sub-commands' contexts inherit these, so `-h` works on every command and sub-command.
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
    # Plain (click) help: rich's option tables spend half of 80 columns on flag columns and cut the help
    # texts into one-word lines; click's wraps each help text under its flag and reads at any width.
    rich_markup_mode=None,
)
console = Console()
# Progress lines carry the time, not the source line that logged them (circuit.py:69 means nothing to a user).
err_console = Console(stderr=True, log_path=False)


def _version(value: bool) -> None:
    if value:
        from circuitwise import __version__

        typer.echo(f"circuitwise {__version__}")
        raise typer.Exit()


@app.callback()
def _app(version: bool = typer.Option(False, "--version", is_eager=True, callback=_version,
                                      help="Print circuitwise's version and exit.")) -> None:
    """Find, test and explain the circuits behind a language model's answer."""


def show_note(note: str) -> None:
    """A one-line note (e.g. a processing step the model cannot take), on stderr: --json stdout stays clean."""
    err_console.print(Text.assemble(("note: ", "yellow"), note), highlight=False, soft_wrap=True)


def warn(message: str) -> None:
    """A warning the user should act on (e.g. a deprecated option), on stderr."""
    err_console.print(Text.assemble(("warning: ", "yellow"), message), highlight=False, soft_wrap=True)


def _register() -> None:
    # Each module adds its commands to `app`; the order here is the order of `--help`.
    from circuitwise.cli import prompt, run  # noqa: F401

    for optional in ("tasks", "patch", "circuit", "compare", "benchmark", "mib", "transcoders", "graph",
                     "figures"):
        try:
            __import__(f"circuitwise.cli.{optional}")
        except ModuleNotFoundError as e:
            if e.name != f"circuitwise.cli.{optional}":
                raise


def _stop_on_sigterm() -> None:
    """SIGTERM (``kill``, ``timeout``, a job scheduler) stops a command as Ctrl-C does: the output folder
    unwinds, releases its lock and says what was kept. Python's default would end the process at once,
    leaving ``.NAME.lock`` and its pid file beside --out."""
    import signal

    def stop(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    try:
        signal.signal(signal.SIGTERM, stop)
    except ValueError:  # not the main thread (main() called by an embedding program): keep its handler
        pass


def _only_help(args: list[str]) -> bool:
    """Whether the command line asks for help or the version only (nothing runs)."""
    flags = args[: args.index("--")] if "--" in args else args
    return not args or any(a in ("-h", "--help", "--version") for a in flags)


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    _stop_on_sigterm()
    try:
        _register()
        if not _only_help(sys.argv[1:]):  # help and the version need no threads, nor the 0.2 s of sampling them
            from circuitwise.cli.threads import choose_threads

            choose_threads()
        app()
    except KeyboardInterrupt:
        # Before typer runs the command (importing the commands takes seconds on a busy machine).
        fail(Interrupted("stopped before any result was written; nothing to resume."))
    except SystemExit as e:
        if e.code == 130:
            # typer turns a Ctrl-C outside any staged output folder (e.g. while loading the model)
            # into a silent exit 130; inside one, the folder raises Interrupted (below) instead.
            fail(Interrupted("stopped before any result was written; nothing to resume."))
        raise
    except CircuitwiseError as e:
        fail(e)
    except OSError as e:
        # A write outside the staged folders (e.g. `tasks export`) on a full or read-only disk.
        from circuitwise.runfolder import WRITE_ERRNOS, output_error

        if e.errno == errno.ENAMETOOLONG:
            # Asking whether a given name is a file (a task, a corpus, a transcoder folder …) fails when the name
            # is longer than the file system allows: it is not a file, and was answered with a traceback.
            name = str(e.filename or "a name")
            shown = name if len(name) <= 60 else name[:57] + "…"
            err = ConfigError(f"{shown!r} ({len(name)} characters) is too long for a file or folder name. Give the "
                              "path of an existing file or folder, or a built-in name (`circuitwise tasks` lists "
                              "the tasks).")
            for note in getattr(e, "__notes__", ()):  # what an output folder kept
                err.add_note(note)
            fail(err)
        if e.errno not in WRITE_ERRNOS:
            raise
        fail(output_error(e, e.filename or "a file"))


def fail(e: CircuitwiseError) -> None:
    """Print ``e`` (and its notes: what was kept, how to resume) and exit with its status."""
    label = "interrupted: " if isinstance(e, Interrupted) else "error: "
    # Text, not markup: messages quote token lists like ['A', ' tort'] that rich would eat.
    err_console.print(Text.assemble((label, "bold yellow" if isinstance(e, Interrupted) else "bold red"), str(e)),
                      highlight=False)
    for note in getattr(e, "__notes__", ()):
        err_console.print(Text(note), highlight=False)
    sys.exit(e.exit_code)
