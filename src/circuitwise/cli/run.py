"""`circuitwise run`: the whole study on one task, into one output folder."""

from __future__ import annotations

from pathlib import Path
from typing import Any, List, Optional

import typer

from circuitwise.cli import app, console, show_note
from circuitwise.cli.progress import Bars
from circuitwise.cli import options as opts
from circuitwise.config import RunConfig

F = RunConfig.model_fields


def _opt(name: str, *flags: str, **kw: Any) -> Any:
    """A typer option whose default and help come from RunConfig (None = not given)."""
    return opts.config_option(F, name, *flags, **kw)


@app.command()
def run(
    task: Optional[str] = typer.Argument(None, help=F["task"].description),
    model: Optional[str] = _opt("model", "--model", "-m"),
    out: Optional[Path] = _opt("out", "--out", "-o"),
    device: Optional[str] = _opt("device", "--device"),
    dtype: Optional[str] = _opt("dtype", "--dtype"),
    max_memory: Optional[str] = opts.MAX_MEMORY,
    device_map: Optional[str] = opts.DEVICE_MAP,
    n_devices: Optional[int] = opts.N_DEVICES,
    batch_size: Optional[int] = _opt("batch_size", "--batch-size"),
    top_k: Optional[int] = _opt("top_k", "--top-k"),
    n: Optional[int] = _opt("n", "--n"),
    seed: Optional[int] = _opt("seed", "--seed"),
    corruption: Optional[str] = _opt("corruption", "--corruption"),
    split: Optional[str] = _opt("split", "--split"),
    processing: Optional[bool] = opts.PROCESSING,
    drop_invalid: Optional[bool] = opts.DROP_INVALID,
    metric: Optional[str] = opts.METRIC,
    patch: Optional[List[str]] = _opt("patching", "--patch", extra="Repeat for several; 'none' skips.", metavar="SWEEP"),
    align: Optional[str] = _opt("align", "--align"),
    attribution: Optional[bool] = _opt("attribution", "--attribution/--no-attribution"),
    exhaustive: Optional[bool] = _opt("exhaustive", "--exhaustive"),
    circuit: Optional[str] = _opt("circuit", "--circuit"),
    circuit_target: Optional[float] = _opt("circuit_target", "--circuit-target"),
    circuit_level: Optional[str] = _opt("circuit_level", "--circuit-level", "--level"),
    ig_steps: Optional[int] = _opt("ig_steps", "--ig-steps"),
    circuit_option: Optional[List[str]] = _opt("circuit_options", "--circuit-option", "-O",
                                               extra="As KEY=VALUE; repeat for several.", metavar="KEY=VALUE"),
    config: Optional[Path] = typer.Option(None, "--config", help="Re-run from a config.yaml written by an earlier run; other options override it. [default: none]"),
    force: bool = opts.FORCE,
) -> None:
    """Baseline, direct logit attribution, logit lens, top heads and their attention: report.html + results.json."""
    from circuitwise.cli.circuit import parse_options
    from circuitwise.errors import ConfigError
    from circuitwise.pipeline import run as run_pipeline
    from circuitwise.plan import check_options

    given = {k: v for k, v in dict(task=task, model=model, out=out, device=device, dtype=dtype, max_memory=max_memory, device_map=device_map,
                                   n_devices=n_devices, batch_size=batch_size,
                                   top_k=top_k, n=n, seed=seed, corruption=corruption, split=split,
                                   processing=processing, drop_invalid=drop_invalid, attribution=attribution, exhaustive=exhaustive,
                                   align=align, metric=metric,
                                   patching=None if patch is None else tuple(w for w in patch if w != "none"),
                                   circuit=None if circuit is None else ("" if circuit == "none" else circuit),
                                   circuit_target=circuit_target, circuit_level=circuit_level, ig_steps=ig_steps,
                                   circuit_options=None if circuit_option is None else parse_options(circuit_option),
                                   ).items() if v is not None}
    base = RunConfig.from_yaml(config).model_dump() if config else {}
    if "task" not in given and "task" not in base:
        raise ConfigError("Name a task: `circuitwise run opposites` (see `circuitwise tasks`), or a task file, or --config FILE.")
    cfg = RunConfig.build(**{**base, **given})
    check_options(cfg)  # before the model is loaded
    with Bars(console) as bars:
        result = run_pipeline(cfg, progress=bars.message, notes=show_note, steps=bars.step, force=force)
    r = result.results
    if r.baseline is not None:  # every complete run has one
        m = r.baseline.metric  # the run's --metric first, where it is not the logit difference
        said = "" if m is None else f"mean {m.name} {m.mean:+.4g}, "
        console.print(
            f"[bold]{r.task.name}[/] on [bold]{r.model.name}[/]: {said}mean logit diff "
            f"{r.baseline.logit_diff.mean:+.3f}, accuracy {r.baseline.accuracy:.1%} "
            f"over {r.task.n_prompts} prompts", highlight=False,
        )
    console.print(f"Report: {result.report.resolve()}", highlight=False, markup=False)
