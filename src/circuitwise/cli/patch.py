"""`circuitwise patch`: activation (and attribution) patching sweeps into an output folder.

Writes ``OUT/patching.json`` (one entry per sweep, rewritten after each so an interrupted run
keeps what it finished) and checkpoints under ``OUT/.patching/``: re-running the same command
resumes an interrupted sweep where it stopped.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any, List, Optional

import typer

from circuitwise.cli import app, console, show_note
from circuitwise.cli.progress import Bars
from circuitwise.cli import options as opts
from circuitwise.config import PATCH_SWEEPS, RunConfig

F = RunConfig.model_fields


@app.command()
def patch(
    task: str = typer.Argument(..., help=F["task"].description),
    what: Optional[List[str]] = typer.Option(
        None, "--patch", metavar="SWEEP", show_default=False,
        help="Sweep(s), repeatable: resid_pre, attn_out, mlp_out, heads, heads_by_pos, head_q, head_k, "
             f"head_v, head_pattern. [default: {', '.join(PATCH_SWEEPS)}]"),
    out: Path = typer.Option(Path("runs/patch"), "--out", "-o",
                             help="Output folder for patching.json and resumable checkpoints."),
    model: Optional[str] = opts.config_option(F, "model", "--model", "-m"),
    device: Optional[str] = opts.DEVICE,
    dtype: Optional[str] = opts.DTYPE,
    max_memory: Optional[str] = opts.MAX_MEMORY,
    device_map: Optional[str] = opts.DEVICE_MAP,
    n_devices: Optional[int] = opts.N_DEVICES,
    method: str = typer.Option("exact", "--method",
                               help="exact (activation patching), attribution (gradient estimate), or both."),
    direction: str = typer.Option("denoise", "--direction",
                                  help="denoise: clean activations into the corrupted run; noise: the reverse."),
    metric: Optional[str] = opts.METRIC,
    normalize: bool = typer.Option(True, "--normalize/--no-normalize",
                                   help="(patched − corrupted) / (clean − corrupted), or the raw metric."),
    batch_size: Optional[int] = opts.config_option(F, "batch_size", "--batch-size"),
    align: str = typer.Option("auto", "--align", help="Position axis of sweeps by position: token, role, end (counted from each prompt's last token), or auto."),
    processing: Optional[bool] = opts.PROCESSING,
    n: Optional[int] = opts.N,
    seed: Optional[int] = opts.SEED,
    corruption: Optional[str] = opts.CORRUPTION,
    split: Optional[str] = opts.SPLIT,
    drop_invalid: Optional[bool] = opts.DROP_INVALID,
    force: bool = opts.FORCE,
    old_what: Optional[List[str]] = opts.alias("--what", "-w"),
) -> None:
    """Activation patching sweeps (exact, fast) and attribution patching, resumable: OUT/patching.json."""
    from circuitwise import __version__
    from circuitwise.cli.circuit import load
    from circuitwise.models import dtype_of
    from circuitwise.models.fingerprint import fingerprint
    from circuitwise.plan import Study, study_config, sweep_request
    from circuitwise.runfolder import RunFolder
    from circuitwise.schema import PatchEntry, PatchingFile
    from circuitwise.types import nan_to_none

    what = opts.merge(what, old_what, old="--what", new="--patch")
    metric = opts.metric_name(metric)  # an unknown metric is refused before the model loads
    # Every option checked against what the sweeps will do (plan.sweep_request), before anything loads.
    study = Study(study_config("patch", task=task, model=model, device=device, dtype=dtype, max_memory=max_memory,
                               device_map=device_map, n_devices=n_devices, processing=processing, n=n, seed=seed,
                               corruption=corruption, split=split, drop_invalid=drop_invalid, metric=metric),
                  "patch", sweeps=sweep_request(what, metric=metric, method=method, direction=direction,
                                                normalize=normalize, align=align, batch_size=batch_size))
    request = study.sweeps
    assert request is not None
    # Sweeps accumulate in one folder, so the sweep names are not part of its settings; the rest decides
    # every sweep's numbers, and a complete folder of other settings is replaced only with --force.
    folder = RunFolder(out, command="patch", settings=study.settings(), force=force)
    folder.check()  # a file, another command's folder or other settings' sweeps fail before the model loads
    with folder:
        if folder.resume_note():
            show_note(folder.resume_note())
        the_model, tok = load(study)
        results = PatchingFile(circuitwise_version=__version__, task=tok.task.name,
                               model=str(getattr(the_model, "circuitwise_name", study.config.model)),
                               dtype=dtype_of(the_model), fingerprint=fingerprint(the_model), n_examples=len(tok))
        # Before the staging folder is made: a refusal here leaves nothing behind but the previous result.
        _refuse_another_checkpoint(out / "patching.json", results, out=out, force=force)
        results.sweeps = _earlier_sweeps(folder.path / "patching.json", results)
        for w in request.sweeps:
            # Validated as it is assigned, and the whole file again as it is written.
            results.sweeps = {**results.sweeps, w: PatchEntry.model_validate(
                nan_to_none(_one_sweep(w, request, metric, the_model, tok, folder.path)))}
            folder.write_text("patching.json", results.dump_text())
        folder.commit()
    console.print(f"Results: {(out / 'patching.json').resolve()}", highlight=False, markup=False)


def _one_sweep(w: str, request: Any, metric: str, the_model: Any, tok: Any, out: Path) -> dict[str, Any]:
    """One sweep through the pipeline's patching stage (pipeline.study_sweep), told as it ends."""
    from circuitwise.pipeline import study_sweep

    with Bars(console) as bars:
        done = study_sweep(the_model, tok, w, request, metric=metric, out=out,
                           progress=partial(bars.step, f"{w} (exact)"))
    for kind, res in (("exact", done.exact), ("attribution", done.attribution)):
        if res is not None:
            _say(w, kind, res, done.seconds[kind])
    entry = done.to_json()
    if "correlation" in entry:
        console.print(f"  attribution vs exact: Pearson r = {entry['correlation']:.3f}", highlight=False)
    for warning in done.warnings:
        console.print(f"warning: {warning}", style="yellow", highlight=False, markup=False)
    return entry


def _refuse_another_checkpoint(path: Path, results: Any, *, out: Path, force: bool) -> None:
    """Refuse, naming both models, sweeps of another checkpoint under the same name (the folder's settings
    name the model, so they agree) unless ``force`` lets this run replace them."""
    from circuitwise.errors import OutputError, SchemaError
    from circuitwise.models.fingerprint import mismatch
    from circuitwise.schema import PatchingFile

    try:
        before = PatchingFile.load(path) if path.exists() else None
    except SchemaError:
        return  # an older or damaged file: _earlier_sweeps says it is replaced
    if force or before is None or before.fingerprint is None or not before.sweeps:
        return
    said = mismatch(before.fingerprint.model_dump(), results.fingerprint.model_dump(),
                    what=f"{path.name} in --out {out}", have_name=before.model, want_name=results.model)
    if said is not None:
        raise OutputError(f"{said} Its sweeps ({', '.join(before.sweeps)}) would be replaced: give another --out to "
                          "keep them, or add --force to replace them.")


def _earlier_sweeps(path: Path, results: Any) -> dict[str, Any]:
    """Sweeps an earlier `patch` into this folder computed on the same task and model, kept."""
    from circuitwise.errors import SchemaError
    from circuitwise.schema import PatchingFile

    if not path.exists():
        return {}
    try:
        before = PatchingFile.load(path)
    except SchemaError as e:
        # An older or damaged file is not an error of this run: its sweeps are recomputed.
        console.print(f"note: {path.name} cannot be reused ({e}); its sweeps are replaced.",
                      style="yellow", highlight=False, markup=False)
        return {}
    # Same name is not the same model: a file with no fingerprint (older) is judged by name alone.
    fp_differs = before.fingerprint is not None and before.fingerprint != results.fingerprint
    if (before.task, before.model, before.n_examples) != (results.task, results.model, results.n_examples) or fp_differs:
        console.print(f"note: {path.name} held sweeps of another task or model; they are replaced.",
                      style="yellow", highlight=False, markup=False)
        return {}
    return dict(before.sweeps)


def _say(what: str, method: str, res: Any, seconds: float) -> None:
    engine = f", {res.config['engine']} engine" if "engine" in res.config else ""
    top = ", ".join(f"{name} {value:+.2f}" for name, value in res.top(5))
    unit = "recovered fraction" if res.normalized else res.metric
    # Not markup: cell names quote tokens, which may hold brackets.
    console.print(
        f"{what} ({method}{engine}, {seconds:.1f}s): clean {float(res.clean.mean()):+.3f}, corrupted "
        f"{float(res.corrupted.mean()):+.3f}; top cells ({unit}): {top}", highlight=False, markup=False)


__all__ = ["patch"]
