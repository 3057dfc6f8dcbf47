"""`circuitwise benchmark`: every discovery method on one task, MIB's CPR/CMD side by side."""

from __future__ import annotations

from pathlib import Path
from typing import Any, List, Optional

import typer
from rich.table import Table

from circuitwise.cli import app, console, show_note
from circuitwise.cli.circuit import load, progress_bar
from circuitwise.cli import options as opts
from circuitwise.config import RunConfig

F = RunConfig.model_fields
FILES = ("benchmark.json", "benchmark.html")


def split_names(given: Optional[List[str]]) -> Optional[list[str]]:
    """``--circuit eap,exact`` and ``--circuit eap --circuit exact`` alike; None: every method."""
    if not given:
        return None
    return [name.strip() for item in given for name in item.split(",") if name.strip()]


def results_table(result: Any) -> Table:
    headers, cells = result.table()
    table = Table(title=f"{result.task}: {result.n_examples} prompts, {result.total_edges} edges, "
                        f"{result.ablation} ablation", title_justify="left")
    for i, h in enumerate(headers):
        table.add_column(h, justify="left" if i == 0 else "right")
    for row in cells:
        table.add_row(*row)
    return table


def benchmark_folder(out: Path, settings: dict[str, Any] | None = None, force: bool = False) -> Any:
    """The staged, locked folder a benchmark is written to (checked and entered before the work starts)."""
    from circuitwise.runfolder import RunFolder

    return RunFolder(out, replaces=FILES, command="benchmark", settings=settings, force=force)


def write_benchmark(folder: Any, result: Any) -> dict[str, Path]:
    """benchmark.json and the self-contained benchmark.html (plotly inlined), then commit the folder."""
    from circuitwise.reports.html import Page, esc, figure_html, render, table
    from circuitwise.schema.benchmark import BenchmarkFile

    data = result.to_json()
    BenchmarkFile.model_validate(data)  # a file that does not fit its schema is circuitwise's bug: traceback
    folder.write_json("benchmark.json", data)
    page = Page(f"Benchmark: {result.task}", f"model {result.model.get('name') or '?'}; "
                f"{result.n_examples} prompts, {result.total_edges} edges, {result.ablation} ablation")
    headers, cells = result.table()
    notes = "".join(render("note.html", text=f"{s.method} skipped: {s.reason}.") for s in result.skipped)
    page.add("table", "Methods", table(headers, [[esc(c) for c in row] for row in cells],
                                         numeric=range(1, len(headers))) + notes)
    page.add("curves", "Faithfulness at MIB's edge budgets", figure_html(result.figure(), "benchmark-curves"))
    folder.write_text("benchmark.html", page.render())
    folder.commit()
    return {"json": folder.out / "benchmark.json", "html": folder.out / "benchmark.html"}


@app.command()
def benchmark(
    task: str = typer.Argument(..., help=F["task"].description),
    model: str = typer.Option(F["model"].default, "--model", "-m", help=F["model"].description),
    methods: Optional[List[str]] = typer.Option(
        None, "--circuit", metavar="METHOD",
        help="Discovery methods to compare, comma-separated or repeated (default: every registered method)."),
    target: Optional[float] = opts.config_option(F, "circuit_target", "--circuit-target",
                                                 extra="The 'edges at' column: the fewest edges that reach it."),
    ablation: str = typer.Option("corrupted", "--ablation", help="Edges outside a circuit read the corrupted run, or the mean over the task."),
    out: Path = typer.Option(Path("runs/benchmark"), "--out", "-o", help="Folder for benchmark.json and benchmark.html."),
    device: Optional[str] = opts.DEVICE,
    dtype: Optional[str] = opts.DTYPE,
    max_memory: Optional[str] = opts.MAX_MEMORY,
    device_map: Optional[str] = opts.DEVICE_MAP,
    n_devices: Optional[int] = opts.N_DEVICES,
    batch_size: Optional[int] = typer.Option(None, "--batch-size", min=1, help="Prompts per forward; default from the model size."),
    n: Optional[int] = opts.N,
    seed: Optional[int] = opts.SEED,
    corruption: Optional[str] = opts.CORRUPTION,
    split: Optional[str] = opts.SPLIT,
    drop_invalid: Optional[bool] = opts.DROP_INVALID,
    processing: Optional[bool] = opts.PROCESSING,
    metric: Optional[str] = opts.METRIC,
    force: bool = opts.FORCE,
    old_methods: Optional[List[str]] = opts.alias("--methods"),
    old_target: Optional[float] = opts.alias("--target"),
) -> None:
    """Run every discovery method on the same prompts: CPR, CMD, edges at --circuit-target, seconds; benchmark.html + .json."""
    from circuitwise.pipeline import refuse_other_weights, study_benchmark
    from circuitwise.plan import Study, benchmark_request, study_config

    methods = opts.merge(methods, old_methods, old="--methods", new="--circuit")
    target = opts.merge(target, old_target, old="--target", new="--circuit-target")
    target = F["circuit_target"].default if target is None else target
    metric = opts.metric_name(metric)  # before the model loads
    # Every option checked (an unknown method, ablation or target) before anything loads.
    study = Study(study_config("benchmark", task=task, model=model, device=device, dtype=dtype, max_memory=max_memory,
                               device_map=device_map, n_devices=n_devices, n=n, seed=seed, processing=processing,
                               corruption=corruption, split=split, drop_invalid=drop_invalid, metric=metric),
                  "benchmark", benchmark=benchmark_request(split_names(methods), target=target, ablation=ablation,
                                                           batch_size=batch_size, metric=metric))
    folder = benchmark_folder(out, study.settings(), force)
    folder.check()  # a file, another command's folder or another benchmark's result fails before any work
    with folder:  # locked from the start: a second command here is refused
        m, tok = load(study)
        refuse_other_weights(folder, "benchmark.json", m, model)  # another checkpoint of this name made it
        with progress_bar() as update:
            result = study_benchmark(m, tok, study.benchmark, metric=metric, progress=update,  # type: ignore[arg-type]
                                     notes=show_note)
        paths = write_benchmark(folder, result)
    console.print(results_table(result))
    console.print(f"Results: {paths['json'].resolve()}", highlight=False, markup=False)
    console.print(f"Figure: {paths['html'].resolve()}", highlight=False, markup=False)
