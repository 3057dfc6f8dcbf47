"""`circuitwise circuit` (discover a circuit) and `circuitwise evaluate` (re-check a circuit.json)."""

from __future__ import annotations

import dataclasses
import json
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any, Iterator, List, Optional

import typer

from circuitwise.cli import app, console, err_console, show_note, warn
from circuitwise.cli.progress import Bars
from circuitwise.circuits.eap import EAPOptions
from circuitwise.circuits.edge_pruning import EdgePruningOptions
from circuitwise.cli import options as opts
from circuitwise.config import DEFAULT_RANDOM_SAMPLES, DEFAULT_SHORTLIST, RunConfig

F = RunConfig.model_fields
METHOD_HELP = ("Edge scoring: eap-ig (integrated gradients on the input), eap (one gradient), eap-ig-activations "
               "(integrated gradients on each layer's activations), exact (one forward per edge; small models), "
               "edge-pruning (learned edge masks at a target sparsity: -O kept=N or -O sparsity=0.95), acdc "
               "(edges removed one by one while the KL to the clean run rises less than -O threshold=0.01 of its gap), relp "
               "(relevance patching: eap with LRP's rules for norms, activations and gates; -O attention_rule=true), bootstrap "
               "(edges by how often -O base=eap-ig ranks them top over prompt resamples).")
SELECTION_HELP = ("target: fewest top edges (nodes at --level node) reaching --circuit-target faithfulness; top-n: the "
                  "--edges best (the --nodes best at --level node); threshold: |score| ≥ --threshold (node score at "
                  "--level node).")
LEVEL_HELP = ("edge: choose edges; node: choose heads and MLPs by their node score (the sum of their outgoing edges' "
              "scores) and keep their edge circuit (every edge out of the input or a kept node, pruned), the same "
              "patching as MIB's node level. Neuron level: `circuitwise mib --level neuron`.")


def parse_options(pairs: list[str]) -> dict[str, Any]:
    """``KEY=VALUE`` pairs, each value read as YAML (``10`` an int, ``0.5`` a float, ``true`` a bool)."""
    import yaml

    from circuitwise.errors import ConfigError

    out: dict[str, Any] = {}
    for pair in pairs:
        key, eq, value = pair.partition("=")
        if not eq or not key.strip():
            raise ConfigError(f"--circuit-option {pair!r} is not KEY=VALUE; write e.g. -O steps=10.")
        try:
            out[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError:
            out[key.strip()] = value
    return out


@contextmanager
def progress_bar() -> Iterator[Any]:
    """Bars (on stderr, so `--json` stays clean) fed by the library's ``progress(done, total, what)``."""
    with Bars(err_console) as bars:
        yield lambda done, total, what: bars.step(what, done, total)


def load(study: Any) -> tuple[Any, Any]:
    """The runner's loading step (pipeline.load_study) with a status line on stderr."""
    from circuitwise.pipeline import load_study

    cfg = study.config
    # Status goes to stderr, so `--json` output on stdout stays one clean JSON object.
    with err_console.status(f"loading {cfg.task} and {cfg.model}…") as status:
        prepared = load_study(study, notes=show_note, progress=lambda msg: (err_console.log(msg), status.update(msg)))
    return prepared.model, prepared.tok


def _print_summary(ev: Any) -> None:
    from circuitwise.evaluation.outputs import summary_lines

    for line in summary_lines(ev):
        console.print("  " + line, highlight=False, markup=False)


@app.command()
def circuit(
    task: str = typer.Argument(..., help=F["task"].description),
    model: str = typer.Option(F["model"].default, "--model", "-m", help=F["model"].description),
    method: Optional[str] = typer.Option(None, "--circuit", show_default=False,
                                         help=opts.with_default(METHOD_HELP, F["circuit"].default)),
    ig_steps: Optional[int] = opts.config_option(F, "ig_steps", "--ig-steps", min=1),
    quadrature: Optional[str] = typer.Option(None, "--quadrature", help=f"eap-ig / eap-ig-activations: integration points between corrupted (0) and clean (1): left (k/n, k=0..n-1; eap-ig's default, as MIB's reference, EAP-IG's edge-level EAP-IG-inputs), right (k=1..n; eap-ig-activations' default, circuitkit, EAP-IG's node methods), midpoint (circuitwise 0.1), trapezoid. [default: per method]"),
    gradient: Optional[str] = typer.Option(None, "--gradient", help=f"eap: the run the gradient is taken at: clean (noising; EAP-IG/MIB, default {EAPOptions.gradient!r}) or corrupted (denoising; TransformerLens, circuitwise 0.1)."),
    # `--direction` is patch's (activation patching, default denoise); the exact method's own direction
    # (default noise) is `-O direction=…`, so one flag never means two things with two defaults.
    direction: Optional[str] = opts.alias("--direction"),
    option: Optional[List[str]] = opts.config_option(
        F, "circuit_options", "--circuit-option", "-O", metavar="KEY=VALUE",
        extra=f"As KEY=VALUE, repeat for several: e.g. -O steps=10 (edge-pruning's training steps, default "
              f"{EdgePruningOptions.steps})."),
    selection: str = typer.Option("target", "--selection", help=SELECTION_HELP),
    target: Optional[float] = opts.config_option(F, "circuit_target", "--circuit-target",
                                                 extra="(--selection target)"),
    level: str = typer.Option("edge", "--level", "--circuit-level", help=LEVEL_HELP),
    edges: Optional[int] = typer.Option(None, "--edges", min=1, help="Number of edges for --selection top-n. [default: none]"),
    nodes: Optional[int] = typer.Option(None, "--nodes", min=1, help="Number of nodes (heads and MLPs) for --selection top-n at --level node. [default: none]"),
    threshold: Optional[float] = typer.Option(None, "--threshold", help="Score cut-off for --selection threshold. [default: none]"),
    by: str = typer.Option("abs", "--by", help="Rank edges by abs (magnitude) or signed score."),
    prune: bool = typer.Option(True, "--prune/--no-prune", help="Drop edges off every input→logits path."),
    ablation: str = typer.Option("corrupted", "--ablation", help="Edges outside the circuit read the corrupted run, or the mean over the task."),
    out: Path = typer.Option(Path("runs/circuit"), "--out", "-o", help="Folder for circuit.json, scores.json, evaluation.json, circuit.html."),
    random_samples: int = typer.Option(DEFAULT_RANDOM_SAMPLES, "--random-samples", min=0, help="Random circuits of the same size to compare with."),
    shortlist: int = typer.Option(DEFAULT_SHORTLIST, "--shortlist", min=0, help="Top edges to confirm by exact patching (0: skip)."),
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
    export_eap_ig: Optional[Path] = typer.Option(None, "--export-eap-ig", help="Also write the scores and circuit as an EAP-IG graph (MIB's submission format): FILE.json or FILE.pt. [default: none]"),
    old_method: Optional[str] = opts.alias("--method"),
    old_target: Optional[float] = opts.alias("--target"),
    old_steps: Optional[int] = opts.alias("--steps"),  # checked as --ig-steps is, after its warning
    old_option: Optional[List[str]] = opts.alias("--option"),
) -> None:
    """Find the circuit behind the task's answer (EAP / EAP-IG / exact), check it, and write it out."""
    from circuitwise.errors import ConfigError
    from circuitwise.pipeline import refuse_other_weights, study_circuit
    from circuitwise.plan import Study, circuit_request, study_config
    from circuitwise.reports.study import study_folder, write_outputs

    method = opts.merge(method, old_method, old="--method", new="--circuit") or F["circuit"].default
    target = opts.merge(target, old_target, old="--target", new="--circuit-target")
    target_given = target is not None
    target = F["circuit_target"].default if target is None else target
    option = opts.merge(option, old_option, old="--option", new="--circuit-option")
    metric = opts.metric_name(metric)
    if direction is not None:
        warn("--direction is deprecated; use -O direction=" + direction + " in circuit (the exact method's option; "
             "--direction is activation patching's, in `patch`).")
    given = {k: v for k, v in dict(quadrature=quadrature, gradient=gradient, direction=direction).items()
             if v is not None}
    if old_steps is not None:  # --steps was every method's `steps`: edge pruning's training steps as well
        opts.merge(None, old_steps, old="--steps", new="--ig-steps (or -O steps=N for edge-pruning)")
        given["steps"] = old_steps
    given.update(parse_options(option or []))
    # Every option checked against what the stage will do (plan.circuit_request), before anything loads.
    study = Study(study_config("circuit", task=task, model=model, device=device, dtype=dtype, max_memory=max_memory,
                               device_map=device_map, n_devices=n_devices, n=n, seed=seed, processing=processing,
                               corruption=corruption, split=split, drop_invalid=drop_invalid, metric=metric),
                  "circuit",
                  circuit=circuit_request(method, given, metric=metric, ig_steps=ig_steps, selection=selection,
                                          target=target, edges=edges, threshold=threshold, by=by, prune=prune,
                                          ablation=ablation, random_samples=random_samples, shortlist=shortlist,
                                          batch_size=batch_size, level=level, nodes=nodes))
    if target_given and selection != "target":  # as --edges without top-n (plan.circuit_request): not dropped
        raise ConfigError(f"--circuit-target applies to --selection target only, and --selection is {selection}. "
                          "Add --selection target, or leave out --circuit-target.")
    if export_eap_ig is not None:
        from circuitwise.circuits.interop import format_for

        format_for(export_eap_ig)  # a wrong suffix fails before any work
    # Everything that decides the result: a complete folder of other settings is replaced only with --force.
    folder = study_folder(out).for_command("circuit", study.settings(), force=force)
    folder.check()  # a file, another command's folder or another circuit's result fails before any work
    with folder:  # locked from the start: a second command here is refused
        m, tok = load(study)
        refuse_other_weights(folder, "circuit.json", m, model)  # another checkpoint of this name found it
        if export_eap_ig is not None:
            from circuitwise.circuits import graph_of
            from circuitwise.circuits.interop import check_exportable

            check_exportable(graph_of(m))  # an attention-only model has no EAP-IG graph: say so before the work
        with progress_bar() as update:
            # The circuit stage `run` runs too (pipeline.study_circuit), with this command's selection.
            done = study_circuit(m, tok, study.circuit, metric=metric, progress=update)  # type: ignore[arg-type]
        found, ev, why_not = done.found, done.evaluation, done.note
        if why_not is not None:
            show_note(why_not)
        paths = write_outputs(out, found.circuit, ev, found.scores, folder=folder,
                              extra={"scoring_seconds": found.scores.seconds, "n_examples": len(tok)})
    if export_eap_ig is not None:
        from circuitwise.circuits.interop import export_eap_ig as write_eap_ig
        from circuitwise.runfolder import output_error

        try:
            write_eap_ig(found.circuit, export_eap_ig)
        except OSError as e:
            raise output_error(e, export_eap_ig) from None
        console.print(f"EAP-IG graph: {export_eap_ig.resolve()}", highlight=False, markup=False)
    sel = found.circuit.selection
    unit = "node" if level == "node" else "edge"
    if sel.get("kind") == "top-n" and isinstance(sel.get("available"), int) and sel["n"] > sel["available"]:
        show_note(f"--{unit}s {sel['n']:,} is more than the {sel['available']:,} {unit}s there are to choose from: "
                  f"every {unit} was kept" + (" (then pruned to those on an input-to-logits path)."
                                              if sel.get("pruned") else "."))
    if sel.get("kind") == "target" and not sel.get("reached", True):
        console.print(f"[yellow]target {target} not reached[/]; every {'node' if level == 'node' else 'edge'} "
                      "was kept.", highlight=False)
    console.print(f"[bold]{tok.task.name}[/] on [bold]{model}[/], {method} over {len(tok)} prompts "
                  f"({found.scores.seconds:.1f} s scoring):", highlight=False)
    _print_summary(ev)
    console.print(f"Circuit: {paths['circuit'].resolve()}", highlight=False, markup=False)
    console.print(f"Figures: {paths['html'].resolve()}", highlight=False, markup=False)


@app.command()
def evaluate(
    circuit_file: Path = typer.Argument(..., help="A circuit.json written by `circuitwise circuit`, or an EAP-IG graph (.json or .pt, MIB's submission format)."),
    task: str = typer.Argument(..., help=F["task"].description),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="The model the circuit belongs to; default: the one named in circuit.json."),
    ablation: Optional[str] = typer.Option(None, "--ablation", show_default=False, help="Edges outside the circuit read the corrupted run, or the mean over the task. [default: the circuit's own; corrupted for an EAP-IG file]"),
    random_samples: int = typer.Option(DEFAULT_RANDOM_SAMPLES, "--random-samples", min=0, help="Random circuits of the same size to compare with."),
    shortlist: int = typer.Option(DEFAULT_SHORTLIST, "--shortlist", min=0, help="Circuit edges to confirm by exact patching (0: skip)."),
    as_json: bool = typer.Option(False, "--json", help="Print the evaluation as one JSON object. [default: off]"),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Also write evaluation.json and circuit.html here. [default: none]"),
    device: Optional[str] = opts.DEVICE,
    dtype: Optional[str] = opts.DTYPE,
    max_memory: Optional[str] = opts.MAX_MEMORY,
    device_map: Optional[str] = opts.DEVICE_MAP,
    n_devices: Optional[int] = opts.N_DEVICES,
    batch_size: Optional[int] = typer.Option(None, "--batch-size", min=1, help="Prompts per forward; default: chosen from the model size."),
    n: Optional[int] = opts.N,
    seed: Optional[int] = opts.SEED,
    corruption: Optional[str] = opts.CORRUPTION,
    split: Optional[str] = opts.SPLIT,
    drop_invalid: Optional[bool] = opts.DROP_INVALID,
    processing: Optional[bool] = opts.PROCESSING,
    metric: Optional[str] = typer.Option(None, "--metric", show_default=False, help=(
        "Measure faithfulness with this metric (logit_diff, prob, logprob, kl) instead of the one the circuit "
        "was found with. [default: the circuit's own]")),
    force: bool = opts.FORCE,
    ignore_fingerprint: bool = typer.Option(False, "--ignore-fingerprint", help="Evaluate even where circuit.json's model fingerprint (architecture, shapes, processing, weights hash) differs from the loaded model's, e.g. the same checkpoint processed on another device. [default: off]"),
) -> None:
    """Re-check a circuit (circuit.json or an EAP-IG graph file) on a task: faithfulness, completeness,
    random circuits of the same size, and MIB's CPR/CMD where the file scores every edge."""
    from circuitwise.circuits import Circuit
    from circuitwise.circuits.circuit import model_info
    from circuitwise.circuits.interop import circuit_from_eap_ig, read_graph_file
    from circuitwise.cli import warn
    from circuitwise.errors import ConfigError
    from circuitwise.evaluation import evaluate_circuit
    from circuitwise.models.fingerprint import check_same_model, fingerprint
    from circuitwise.models.loading import dtype_of
    from circuitwise.circuits.patch import check_ablation
    from circuitwise.pipeline import resampling
    from circuitwise.plan import Study, study_config
    from circuitwise.reports.study import prepare_dir, study_folder, write_outputs

    if ablation is not None:
        check_ablation(ablation)  # before any work

    if out is not None:
        prepare_dir(out)  # a file, or a folder of other files, fails before any work
    if metric is not None:
        metric = opts.metric_name(metric)
    # circuit.json or an EAP-IG graph (.json/.pt), told apart by content; malformed fails here, before the model loads
    kind, raw = read_graph_file(circuit_file)
    # As the metric: by default the ablation the circuit was found and measured with, so evaluating a circuit
    # just found gives the faithfulness `circuit` printed (a mean-ablation circuit was re-measured corrupted).
    if ablation is None:
        own = (raw.get("selection") or {}).get("ablation") if kind == "circuitwise" else None
        ablation = own if isinstance(own, str) else "corrupted"
        check_ablation(ablation)
    named = (raw.get("model") or {}).get("name") if kind == "circuitwise" else None  # EAP-IG files name none
    name = model or named or F["model"].default
    # An EAP-IG file is converted: `out` gets a circuitwise circuit.json of it (never the file itself).
    source = circuit_file if kind == "circuitwise" else None
    if source is None and out is not None and (out / "circuit.json").resolve() == circuit_file.resolve():
        raise ConfigError(f"{circuit_file} is an EAP-IG graph named circuit.json inside --out, where the converted "
                          "circuit.json would replace it. Choose another --out, or rename the file.")
    folder = None
    if out is not None:
        # Re-checking a circuit folder's own circuit.json adds to that folder (it stays the circuit's);
        # any other evaluation owns its folder, and replaces a complete one of other settings only with --force.
        own = source is not None and (out / "circuit.json").resolve() == source.resolve()
        settings = dict(circuit=str(circuit_file.resolve()), task=task, model=name, ablation=ablation,
                        random_samples=random_samples, shortlist=shortlist, n=n, seed=seed, corruption=corruption,
                        split=split, drop_invalid=drop_invalid, processing=processing, dtype=dtype, metric=metric)
        folder = study_folder(out, source).for_command("evaluate", settings, force=force,
                                                       joins={"circuit"} if own else ())
        folder.check()  # before the model loads
    with folder if folder is not None else nullcontext() as folder:
        # The metric the circuit will be measured in, so its tokens are set up for it once (kl's reference).
        measured = metric or (raw.get("metric") if kind == "circuitwise" else None) or F["metric"].default
        m, tok = load(Study(study_config("evaluate", task=task, model=name, device=device, dtype=dtype, max_memory=max_memory,
                                         device_map=device_map, n_devices=n_devices, n=n, seed=seed,
                                         processing=processing, corruption=corruption, split=split,
                                         drop_invalid=drop_invalid, metric=measured), "evaluate"))
        if kind == "circuitwise":
            # Same shapes are not the same model: a circuit found on another checkpoint is refused here.
            recorded = (raw.get("model") or {}).get("fingerprint") or {}
            found_in = recorded.get("dtype")
            # Found in another --dtype (bfloat16, evaluated in auto's float32), or with the other --processing:
            # that flag is the fix, not the model the user already gave.
            hints = [f"It was found in {found_in}: add --dtype {found_in}."] if (
                isinstance(found_in, str) and found_in != dtype_of(m)) else []
            steps, now = recorded.get("processing"), fingerprint(m).get("processing")
            if isinstance(steps, list) and isinstance(now, list) and bool(steps) != bool(now):
                hints.append("It was found with the weight processing: drop --no-processing." if steps else
                             "It was found without weight processing: add --no-processing.")
            in_dtype = " ".join(hints) + " Otherwise e" if hints else "E"
            said = check_same_model(
                raw.get("model") or {}, m, what=str(circuit_file), loaded_name=name, allow_other=ignore_fingerprint,
                fix=(f"{in_dtype}valuate it with the model it was found on (--model {named or '…'}), or find a circuit on "
                     f"this model with `circuitwise circuit {task} --model {name}`; if you know both are one "
                     "checkpoint, pass --ignore-fingerprint."))
            if said is not None:
                warn(said)
            circ = Circuit.from_json(raw, m, source=str(circuit_file))
        else:
            circ = circuit_from_eap_ig(raw, m, source=str(circuit_file))
            # Never silent: the file cannot say which model it was made on (EAP-IG's format names none).
            warn(f"{circuit_file} is an EAP-IG graph file, which records no model: only its shapes were checked "
                 f"against {name!r}. Evaluate it with the model it was made on.")
        if metric is not None:
            circ = dataclasses.replace(circ, metric=metric)
        with progress_bar() as update:
            ev = evaluate_circuit(m, tok, circ, ablation=ablation, random_samples=random_samples,  # type: ignore[arg-type]
                                  shortlist=shortlist, curve=out is not None, batch_size=batch_size, progress=update,
                                  bootstrap=resampling())
        if out is not None:
            # The loaded model, not the one circuit.json names (they differ under --ignore-fingerprint).
            write_outputs(out, circ, ev, source=source, folder=folder, model=model_info(m))
    if as_json:
        typer.echo(json.dumps(ev.to_json()))
        return
    console.print(f"[bold]{circuit_file}[/] on [bold]{tok.task.name}[/] ({len(tok)} prompts), model [bold]{name}[/]:",
                  highlight=False)
    _print_summary(ev)
