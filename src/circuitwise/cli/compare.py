"""`circuitwise compare`: two tasks, one task on two models, or on two splits, side by side."""

from __future__ import annotations

from pathlib import Path
from typing import Any, List, Optional

import typer

from circuitwise.cli import app, console, show_note
from circuitwise.cli import options as opts
from circuitwise.cli.progress import Bars
from circuitwise.compare.config import CompareConfig

F = CompareConfig.model_fields


def _opt(name: str, *flags: str, **kw: Any) -> Any:
    """A typer option whose default and help come from CompareConfig (None = not given)."""
    return opts.config_option(F, name, *flags, **kw)


@app.command()
def compare(
    a: Optional[str] = typer.Argument(None, help=F["a"].description),
    b: Optional[str] = typer.Argument(None, help=F["b"].description),
    model: Optional[str] = _opt("model", "--model", "-m"),
    model_b: Optional[str] = _opt("model_b", "--model-b"),
    split_a: Optional[str] = _opt("split_a", "--split-a"),
    split_b: Optional[str] = _opt("split_b", "--split-b"),
    out: Optional[Path] = _opt("out", "--out", "-o"),
    device: Optional[str] = _opt("device", "--device"),
    dtype: Optional[str] = _opt("dtype", "--dtype"),
    max_memory: Optional[str] = _opt("max_memory", "--max-memory"),
    device_map: Optional[str] = _opt("device_map", "--device-map"),
    n_devices: Optional[int] = _opt("n_devices", "--n-devices"),
    batch_size: Optional[int] = _opt("batch_size", "--batch-size"),
    n: Optional[int] = _opt("n", "--n"),
    seed: Optional[int] = _opt("seed", "--seed"),
    corruption: Optional[str] = _opt("corruption", "--corruption"),
    processing: Optional[bool] = _opt("processing", "--processing/--no-processing"),
    drop_invalid: Optional[bool] = _opt("drop_invalid", "--drop-invalid/--strict"),
    pairing: Optional[str] = _opt("pairing", "--pairing"),
    alpha: Optional[float] = _opt("alpha", "--alpha"),
    confidence: Optional[float] = _opt("confidence", "--confidence"),
    bootstrap: Optional[int] = _opt("bootstrap", "--bootstrap"),
    permutations: Optional[int] = _opt("permutations", "--permutations"),
    top_k: Optional[int] = _opt("top_k", "--top-k"),
    metric: Optional[str] = _opt("metric", "--metric"),
    patching: Optional[bool] = _opt("patching", "--patching/--no-patching"),
    circuit: Optional[str] = _opt("circuit", "--circuit"),
    circuit_target: Optional[float] = _opt("circuit_target", "--circuit-target"),
    circuit_level: Optional[str] = _opt("circuit_level", "--circuit-level", "--level"),
    ig_steps: Optional[int] = _opt("ig_steps", "--ig-steps"),
    circuit_option: Optional[List[str]] = _opt("circuit_options", "--circuit-option", "-O",
                                               extra="As KEY=VALUE; repeat for several.", metavar="KEY=VALUE"),
    random_samples: Optional[int] = _opt("random_samples", "--random-samples"),
    config: Optional[Path] = typer.Option(None, "--config", help="Re-run from a config.yaml written by an earlier compare; other options override it. [default: none]"),
    force: bool = opts.FORCE,
    old_random: Optional[int] = opts.alias("--random-circuits"),
) -> None:
    """Compare two studies side by side, each difference with its confidence interval and test: compare.html + compare.json."""
    from circuitwise.cli.circuit import parse_options
    from circuitwise.compare import compare as run_compare
    from circuitwise.errors import ConfigError

    given = {k: v for k, v in dict(
        a=a, b=b, model=model, model_b=model_b, split_a=split_a, split_b=split_b, out=out, device=device, dtype=dtype, max_memory=max_memory, device_map=device_map, n_devices=n_devices,
        batch_size=batch_size, n=n, seed=seed, corruption=corruption, processing=processing,
        drop_invalid=drop_invalid, pairing=pairing, alpha=alpha, confidence=confidence, bootstrap=bootstrap,
        permutations=permutations, top_k=top_k, patching=patching, metric=metric,
        circuit=None if circuit is None else ("" if circuit == "none" else circuit),
        circuit_target=circuit_target, circuit_level=circuit_level, ig_steps=ig_steps,
        random_samples=opts.merge(random_samples, old_random, old="--random-circuits", new="--random-samples"),
        circuit_options=None if circuit_option is None else parse_options(circuit_option),
    ).items() if v is not None}
    base = CompareConfig.from_yaml(config).model_dump() if config else {}
    if "a" not in given and "a" not in base:
        raise ConfigError("Name what to compare: `circuitwise compare numbers-digits numbers-words`, one task on two "
                          "models (`compare TASK --model M --model-b M2`) or two splits (`--split-a S --split-b S2`), "
                          "or --config FILE.")
    cfg = CompareConfig.build(**{**base, **given})
    if cfg.task_b == cfg.a and (cfg.model_b or cfg.model) == cfg.model and cfg.split_b == cfg.split_a:
        # Both sides are the same study: allowed (a check that nothing is flagged), but most likely a slip.
        show_note(f"side B is side A ({cfg.a} on {cfg.model}{', split ' + cfg.split_a if cfg.split_a else ''}): "
                  "every difference will be zero. To compare something, give a second task (`compare A B`), a "
                  "second model (--model-b) or two splits (--split-a S --split-b S2).")
    with Bars(console) as bars:
        result = run_compare(cfg, progress=bars.message, notes=show_note, steps=bars.step, force=force)
    r = result.results
    console.print(f"[bold]{r.a.label}[/] vs [bold]{r.b.label}[/] ({'paired' if r.pairing.paired else 'unpaired'}):",
                  highlight=False)
    for line in r.summary:
        console.print(f"  {line}", highlight=False, markup=False)
    console.print(f"Page: {result.page.resolve()}", highlight=False, markup=False)
