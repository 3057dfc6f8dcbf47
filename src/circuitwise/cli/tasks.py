"""`circuitwise tasks`: list the built-in tasks, show examples with their tokens, export JSONL."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer
from rich.table import Table
from rich.text import Text

from circuitwise.cli import app, console
from circuitwise.cli import options as opts
from circuitwise.config import RunConfig
from circuitwise.errors import CircuitwiseError

tasks_app = typer.Typer(
    help="Built-in tasks: list them, show examples with their tokens and roles, export them as JSONL.",
    no_args_is_help=False,
    invoke_without_command=True,
)
app.add_typer(tasks_app, name="tasks")

F = RunConfig.model_fields


def _options(n: Optional[int], seed: Optional[int], corruption: Optional[str], split: Optional[str]) -> dict[str, Any]:
    given = dict(n=n, seed=seed, corruption=corruption, split=split)
    return {k: v for k, v in given.items() if v is not None}




@tasks_app.callback()
def list_tasks(ctx: typer.Context) -> None:
    """List the built-in tasks with their sizes, corruptions and splits."""
    if ctx.invoked_subcommand is not None:
        return
    from circuitwise.tasks.builtin import specs

    table = Table(title="Built-in tasks", show_lines=True)
    table.add_column("name", no_wrap=True, style="bold")
    table.add_column("examples", justify="right", no_wrap=True)
    table.add_column("description", ratio=1)
    for spec in specs():
        about = Text(spec.description)
        options = [f"{label}: {', '.join(values)}" for label, values in
                   (("corruptions", spec.corruptions), ("splits", tuple(v for v in spec.splits if v != "all")))
                   if values]
        if options:
            about.append("\n" + "; ".join(options), style="dim")
        table.add_row(spec.name, f"{len(spec.build()):,}", about)
    console.print(table)
    console.print("Show examples: [bold]circuitwise tasks show NAME --n 5[/]; a task file (.jsonl, .csv, "
                  ".yaml) can be named wherever a task is.", highlight=False)
    console.print("MIB's arc-easy and arc-challenge come from a file: [bold]circuitwise tasks show arc-easy[/] "
                  "says how to get it.", highlight=False)


@tasks_app.command("show")
def show(
    name: str = typer.Argument(..., help="Built-in task name or task file."),
    n: int = typer.Option(5, "--n", help="How many examples to show."),
    seed: Optional[int] = opts.SEED,
    corruption: Optional[str] = opts.CORRUPTION,
    split: Optional[str] = opts.SPLIT,
    model: Optional[str] = typer.Option(
        None, "--model", "-m",
        help=f"Whose tokenizer to show tokens with (only the tokenizer is loaded) [default: {F['model'].default}]."),
) -> None:
    """Print examples with their tokens, answers, corrupted prompt and role positions."""
    from circuitwise.tasks import get_task, tokenize_task
    from circuitwise.tasks.tokenize import describe_dropped
    from circuitwise.tasks.tokenizer import load_tokenizer

    task = get_task(name, **_options(n, seed, corruption, split))
    model_name = model or F["model"].default
    try:
        tok_model = load_tokenizer(model_name)
    except CircuitwiseError as e:
        if model is not None:
            raise
        console.print(Text(f"(no tokens shown: {e})", style="yellow"))
        tok_model = None
    console.print(Text.assemble(("task ", "dim"), (task.name, "bold"), f": {task.description}"))
    _print_card(name)
    if tok_model is None:
        for i, ex in enumerate(task):
            _print_text_example(i, ex)
        return
    try:
        tok, dropped = tokenize_task(tok_model, task, on_invalid="drop")
    except CircuitwiseError as e:  # no example usable with this tokenizer: say why, show the text
        console.print(Text(f"(no tokens shown: {e})", style="yellow"))
        for i, ex in enumerate(task):
            _print_text_example(i, ex)
        return
    if dropped:
        console.print(Text(describe_dropped(dropped, len(task), task.name), style="yellow"))
        for d in dropped[:3]:
            console.print(Text(f"  example {d.index}: {d.reason}", style="dim"))
    for j, ex in enumerate(tok.task):
        roles = tok.roles[j] if tok.roles else {}
        at = {p: r for r, p in roles.items()}
        tokens = Text()
        for p, s in enumerate(tok.str_tokens[j]):
            style = "bold cyan" if p in at else ""
            tokens.append(f"[{p}]", style="dim")
            tokens.append(repr(s), style=style)
            if p in at:
                tokens.append(f"={at[p]}", style="cyan")
            tokens.append(" ")
        console.print(Text.assemble((f"#{j} ", "bold"), ex.clean, ("  ->  ", "dim"),
                                    (repr(ex.correct), "green"), " vs ", (repr(ex.incorrect), "red")))
        console.print(Text.assemble(("  tokens:    ", "dim"), tokens))
        if ex.corrupted is not None:
            console.print(Text.assemble(("  corrupted: ", "dim"), ex.corrupted))
        if roles:
            console.print(Text.assemble(("  roles:     ", "dim"),
                                        ", ".join(f"{r}@{p}" for r, p in sorted(roles.items(), key=lambda kv: kv[1]))))


def _print_card(name: str) -> None:
    """An MIB task's card: its sizes, counterfactuals, source and measured accuracy."""
    from circuitwise.tasks.builtin._mib import CARDS

    card = CARDS.get(name)
    if card is not None:
        for line in card.lines():
            console.print(Text(line, style="dim"), highlight=False)


def _print_text_example(i: int, ex: Any) -> None:
    console.print(Text.assemble((f"#{i} ", "bold"), ex.clean, ("  ->  ", "dim"),
                                (repr(ex.correct), "green"), " vs ", (repr(ex.incorrect), "red")))
    if ex.corrupted is not None:
        console.print(Text.assemble(("  corrupted: ", "dim"), ex.corrupted))
    if ex.roles:
        console.print(Text.assemble(("  roles (characters): ", "dim"),
                                    ", ".join(f"{r}@{c}" for r, c in sorted(ex.roles.items(), key=lambda kv: kv[1]))))


@tasks_app.command("export")
def export(
    name: str = typer.Argument(..., help="Built-in task name or task file."),
    file: Path = typer.Argument(..., help="JSONL file to write (read back with Task.from_file)."),
    n: Optional[int] = opts.N,
    seed: Optional[int] = opts.SEED,
    corruption: Optional[str] = opts.CORRUPTION,
    split: Optional[str] = opts.SPLIT,
) -> None:
    """Write a task as JSONL (a header line, then one example a line)."""
    from circuitwise.errors import ConfigError
    from circuitwise.tasks import get_task

    if file.suffix.lower() != ".jsonl":
        raise ConfigError(f"Export writes JSONL; name the file with a .jsonl suffix (got {file.name!r}).")
    task = get_task(name, **_options(n, seed, corruption, split))
    task.to_jsonl(file)
    console.print(f"Wrote {len(task):,} examples of {task.name} to {file}", highlight=False, markup=False)


@tasks_app.command("import")
def import_task(
    file: Path = typer.Argument(..., help="MIB's data file: JSONL (datasets' to_json), a JSON list, or the Hub "
                                "viewer's rows."),
    out: Path = typer.Argument(..., help="Task file to write (.jsonl), for any command: "
                               "`circuitwise circuit OUT.jsonl`."),
    mib: str = typer.Option(..., "--mib", help="Which MIB task the rows are: ioi, mcqa, arc-easy, arc-challenge, "
                            "arithmetic-addition, arithmetic-subtraction."),
    counterfactual: Optional[str] = typer.Option(None, "--counterfactual", show_default=False, help=(
        "The counterfactual column to patch from. [default: MIB's: s2_io_flip_counterfactual for ioi, "
        "symbol_counterfactual for mcqa and arc, random_counterfactual for arithmetic]")),
    n: Optional[int] = typer.Option(None, "--n", min=1, show_default=False,
                                    help="Keep the first n examples (MIB's num_examples). [default: all]"),
) -> None:
    """Convert MIB's task rows (Hugging Face layout) into a circuitwise task file, as MIB's circuit track reads them.

    Without the rows, ioi, mcqa and arithmetic are built in, generated offline to MIB's definitions: mib-ioi,
    mib-mcqa, mib-arithmetic-addition, mib-arithmetic-subtraction (`circuitwise tasks show mib-ioi`).
    """
    from circuitwise.errors import ConfigError
    from circuitwise.tasks.mib import import_mib

    if out.suffix.lower() != ".jsonl":
        raise ConfigError(f"Import writes JSONL; name the file with a .jsonl suffix (got {out.name!r}).")
    done = import_mib(file, mib, counterfactual=counterfactual)
    task = done.task if n is None else done.task.subset(range(min(n, len(done.task))))
    task.to_jsonl(out)
    for line in done.lines():
        console.print(line, highlight=False, markup=False)
    console.print(f"Wrote {len(task):,} examples to {out}; answers that are not one token for a model are "
                  "dropped when it is used, as MIB's loader does (--drop-invalid).", highlight=False, markup=False)
