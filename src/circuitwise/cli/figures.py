"""`circuitwise figures RUN_DIR`: every figure of a run's (or a comparison's) report as SVG and PNG files."""

from __future__ import annotations

from pathlib import Path
from typing import Literal, cast

import typer
from rich.text import Text

from circuitwise.cli import app, console
from circuitwise.cli import options as opts
from circuitwise.cli.options import with_default
from circuitwise.reports.export import FORMATS, ExportOptions, Format
from circuitwise.reports.style import WIDTH

Choice = Literal["svg", "png", "both"]
CHOICES: tuple[Choice, ...] = ("svg", "png", "both")
D = ExportOptions()
DEFAULT_CHOICE: Choice = "both" if set(D.formats) == set(FORMATS) else cast("Choice", D.formats[0])


def _formats(choice: str) -> tuple[Format, ...]:
    if choice not in CHOICES:
        raise typer.BadParameter(f"{choice!r} is not one of {', '.join(CHOICES)}.", param_hint="--format")
    return FORMATS if choice == "both" else (choice,)  # type: ignore[return-value]  # checked above


@app.command()
def figures(
    run_dir: Path = typer.Argument(..., help="The folder a `circuitwise run`, `compare`, `circuit`, `evaluate "
                                             "--out` or `patch` wrote (results.json, compare.json, evaluation.json or "
                                             "patching.json is read; nothing is recomputed)."),
    format: str = typer.Option(DEFAULT_CHOICE, "--format", "-f", metavar="svg|png|both", show_default=False,
                               help=with_default("Which files to write for each figure.", DEFAULT_CHOICE)),
    out: Path | None = typer.Option(None, "--out", "-o", help=with_default(
        "Folder for <name>.svg / <name>.png, replaced whole at the end.", "RUN_DIR-figures, beside RUN_DIR")),
    width: int | None = typer.Option(D.width, "--width", help=with_default(
        "Width in pixels (CSS pixels for SVG).", f"the figure's own, else {WIDTH}")),
    height: int | None = typer.Option(D.height, "--height", help=with_default(
        "Height in pixels.", "the figure's own (heatmaps grow with their rows)")),
    scale: float = typer.Option(D.scale, "--scale", show_default=False, help=with_default(
        "PNG pixels per pixel of width and height (2: sharp on high-density screens).", D.scale)),
    only: list[str] | None = typer.Option(None, "--only", metavar="NAME", help=with_default(
        "Export only this figure (repeat for several); a wrong name lists the folder's figures.", "all")),
    force: bool = opts.FORCE,
) -> None:
    """Save every figure of a run's report as SVG and/or PNG, drawn by plotly.js in headless Chromium.

    Names follow the report: logit-lens, dla-layers, dla-heads, patching-<sweep>, circuit,
    faithfulness_curve, … (a compare folder: compare.html's figures). Needs Chromium or Chrome
    ($CIRCUITWISE_CHROMIUM to choose one); the report's own download buttons need nothing.
    """
    from circuitwise.reports.export import default_out, save_figures

    target = out if out is not None else default_out(run_dir)
    paths = save_figures(run_dir, target, formats=_formats(format), width=width, height=height, scale=scale,
                         only=only, force=force)
    names = sorted({p.stem for p in paths.values()})
    console.print(Text(f"Wrote {len(paths)} files ({len(names)} figures: {', '.join(names)}) to {target}"),
                  highlight=False)
