"""run(config): the stages in order — model, task, plan, baseline, attribution, patching, circuit, report.

Everything is written into a staging folder (:mod:`circuitwise.runfolder`) and swapped in as
``config.out`` only when whole: results.json last, with ``complete: true``. A failed or
interrupted run leaves the previous complete run in place; its patching checkpoints stay in the
staging folder, so running the same command again resumes.
"""

from __future__ import annotations

import json
import logging
import shlex
import warnings
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Callable, Literal

import torch

from circuitwise.attribution import attention_patterns, baseline, direct_logit_attribution, top_heads
from circuitwise.attribution.dla import head_label
from circuitwise.attribution.mechanism import mechanism_readouts
from circuitwise.config import (
    BOOTSTRAP_LEVEL,
    BOOTSTRAP_RESAMPLES,
    BOOTSTRAP_SEED,
    MECHANISM_PROMPTS,
    MECHANISM_TOP_TOKENS,
    STABILITY_GROUPS,
    RunConfig,
    default_batch_size,
)
from circuitwise.circuits import find_circuit, get_method
from circuitwise.circuits.methods import check_prompts
from circuitwise.evaluation import evaluate_circuit
from circuitwise.evaluation.bootstrap import Resampling, cell_intervals, mean_interval, mean_intervals, top_cell_order
from circuitwise.evaluation.outputs import summary_lines
from circuitwise.evaluation.stability import recording as stability_recording
from circuitwise.evaluation.stability import with_stability
from circuitwise.models import dtype_of, load_model
from circuitwise.models.loading import check_stages_fit
from circuitwise.models.fingerprint import fingerprint
from circuitwise.models.memory import Stage, refuse_unless_fits
from circuitwise.models.processing import notes_of as processing_notes
from circuitwise.models.processing import of as processing_of
from circuitwise.patching.activation import activation_sweeps
from circuitwise.patching.activation import CheckFailedWarning
from circuitwise.patching.attribution import attribution_sweeps
from circuitwise.patching.result import DegenerateNormalizationWarning
from circuitwise.patching.resume import CheckpointWarning
from circuitwise.patching.sweeps import get_sweep
from circuitwise.metrics import prepared_for
from circuitwise.plan import (RUN_SKIPS, BenchmarkRequest, CircuitRequest, Study, SweepRequest, choose_exact_cells,
                              corrupted_view, plan_resources, plan_run, plan_study, reference_batch,
                              run_stages_before_load)
from circuitwise.reports import write_report
from circuitwise.reports.study import circuit_file
from circuitwise.runfolder import RunFolder
from circuitwise.schema import RunResults, RunSweep
from circuitwise.schema.results import MechanismSection
from circuitwise.tasks import Task, get_task, tokenize_task
from circuitwise.tasks.builtin import specs
from circuitwise.tasks.tokenize import Dropped, TokenizedTask, describe_dropped
from circuitwise.types import nan_to_none

log = logging.getLogger(__name__)

Progress = Callable[[str], None]
Steps = Callable[[str, int, int], None]


@dataclass(frozen=True)
class RunOutputs:
    """What ``run`` returns: the folder and its typed results (``results.json``, validated)."""

    out: Path
    results: RunResults

    @property
    def report(self) -> Path:
        return self.out / "report.html"

    def __repr__(self) -> str:
        return f"RunOutputs({self.out}: {self.results.headline()})"

    def _repr_html_(self) -> str:
        return self.results._repr_html_()

    def show(self) -> None:
        """Display the whole study in a notebook (the report's sections and figures)."""
        self.results.show()


# The files `run` writes, and those that describe its circuit.json (from a `circuit` command into
# the same folder): a previous version of them is never carried into a new run's folder.
RUN_FILES = ("report.html", "results.json", "config.yaml", "circuit.json", "scores.json", "evaluation.json",
             "circuit.html")


def rerun_command(cfg: RunConfig) -> str:
    return f"circuitwise run --config {shlex.quote(str(cfg.out / 'config.yaml'))}"


@dataclass(frozen=True)
class Prepared:
    model: Any
    tok: TokenizedTask
    dropped: list[Dropped]
    builtin: bool


def prepare(config: RunConfig, *, need_corrupted: bool | Literal["if-present"] = "if-present",
            progress: Progress | None = None, model: Any = None, purpose: str = "This analysis",
            notes: Progress | None = None, stages: tuple[Stage, ...] = (),
            load_stages: Callable[[Task], tuple[Stage, ...]] | None = None,
            skips: dict[Stage, str] | None = None) -> Prepared:
    """Stages 1–2 for every command: the task, the model, and the task tokenized for the model.

    ``need_corrupted=True`` requires corrupted prompts (patching, circuits); ``"if-present"``
    keeps them when every example has one. Unusable examples of built-in tasks are dropped and
    counted (never silently); task files are strict unless ``drop_invalid`` says otherwise.
    The processing steps the model could not take are told once, through ``notes`` (default:
    ``progress``).
    ``stages`` are those the command will run: one prompt of the longest length must fit each in
    the memory budget, or the command is refused here, before any work; ``load_stages(task)`` (default
    ``stages``) are checked at a one-token prompt before the model loads, from the checkpoint's shapes.
    ``skips``: how the command leaves a stage out, named first in a refusal.
    """
    say = progress or (lambda _msg: None)
    builtin = config.task in {spec.name for spec in specs()}
    task = get_task(config.task, **config.task_options(builtin))
    if need_corrupted is True:
        task.require_corrupted(purpose)
    if model is None:
        check_stages_fit(config.model, stages if load_stages is None else load_stages(task), device=config.device,
                         dtype=config.dtype, max_memory=config.max_memory_bytes, processing=config.processing,
                         split=config.device_map is not None or config.n_devices is not None,
                         what=f"{purpose} on {len(task)} prompts", skips=skips)
        say(f"loading model {config.model}")
        model = load_model(config.model, device=config.device, processing=config.processing, dtype=config.dtype,
                           max_memory=config.max_memory_bytes, device_map=config.device_map,
                           n_devices=config.n_devices)
        for note in processing_notes(model):
            (notes or (lambda n: say(f"note: {n}")))(note)
    drop = config.drop_invalid if config.drop_invalid is not None else builtin
    tok, dropped = tokenize_task(model, task, on_invalid="drop" if drop else "raise",
                                 need_corrupted=bool(need_corrupted) and task.has_corrupted)
    if dropped:
        # Never silent: the count and reasons go to the log, the progress line and the report.
        message = describe_dropped(dropped, len(task), task.name)
        # A warning where nothing else shows it (library use); beside a progress line (the CLI, which also
        # prints warnings) the log gets it quietly, so the user reads it once.
        log.log(logging.WARNING if progress is None else logging.INFO, message)
        say(message)
    if stages and len(tok):
        refuse_unless_fits(stages, model, int(tok.clean.shape[1]), what=f"{purpose} on {len(tok)} prompts",
                           skips=skips)
    if config.metric != "logit_diff" and len(tok):
        # Every stage of every command reads the metric from these tokens: a vocabulary metric's flag,
        # and kl's reference (the clean run's next-token distribution), computed once here, not per stage.
        say(f"metric: {config.metric}")
        # Memory first: a reference that cannot fit is refused before its forwards (plan.metric_held).
        tok = prepared_for(model, tok, config.metric, batch_size=reference_batch(config.metric, tok, model))
    return Prepared(model, tok, dropped, builtin)


@dataclass(frozen=True)
class CircuitStudy:
    """A discovered circuit and its checks: what `run`'s circuit stage and `circuit` produce alike."""

    found: Any  # circuits.Discovery: the scores and the selected circuit
    evaluation: Any  # evaluation.Evaluation, with stability where the method allows it
    note: str | None  # why edge stability was not measured, if it was not


def load_study(study: Study, *, progress: Progress | None = None, notes: Progress | None = None,
               model: Any = None) -> Prepared:
    """The runner's first step for every command but ``run``: the task and the model, the task tokenized
    for the model and set up for the metric, and the memory the command's stages need checked — once."""
    prepared = prepare(study.config, need_corrupted=True, purpose=study.purpose, stages=study.memory_stages,
                       progress=progress, notes=notes, model=model)
    if study.circuit is not None:
        # What the method refuses for these prompts (e.g. positions they cannot line up), before any work.
        check_prompts(study.circuit.method, prepared.model, prepared.tok, study.circuit.options)
    resources = plan_study(study, prepared.tok, prepared.model)
    if resources is not None and progress is not None:
        for line in resources.lines():  # the plan, as `run` prints its own
            progress(line)
    return prepared


@dataclass(frozen=True)
class Baselines:
    """The clean run's baseline and, where patching or a circuit will follow, the corrupted run's metric."""

    clean: Any  # attribution.Baseline
    corrupted: Any  # attribution.Baseline of the corrupted prompts, or None

    @property
    def gap(self) -> tuple[float | None, float]:
        """The metric's clean − corrupted gap (what patching and faithfulness restore), and its scale."""
        if self.corrupted is None:
            return None, 1.0
        clean, corr = float(self.clean.values.mean()), float(self.corrupted.values.mean())
        return clean - corr, max(abs(clean), abs(corr))


def measure_baseline(model: Any, tok: TokenizedTask, *, batch_size: int, metric: str, corrupted: bool,
                     top_k: int = 10, step: Steps | None = None, label: str = "") -> Baselines:
    """The baseline stage of every study (run, each side of compare): the clean prompts' metric, logit
    difference, accuracy and top predictions; the corrupted prompts' metric when ``corrupted`` asks for it
    (one forward tells the plan whether patching has a gap to restore)."""
    tell = step or (lambda _l, _d, _t: None)
    bl = baseline(model, tok, batch_size=batch_size, top_k=top_k, metric=metric,
                  progress=partial(tell, f"baseline{label}"))
    bad = None
    if corrupted and tok.corrupted is not None:
        bad = baseline(model, corrupted_view(tok), batch_size=batch_size, top_k=1, metric=metric,
                       progress=partial(tell, f"corrupted baseline{label}"))
    return Baselines(bl, bad)


def discover(model: Any, tok: TokenizedTask, request: CircuitRequest, *, metric: str = "logit_diff",
             progress: Callable[[int, int, str], None] | None = None) -> Any:
    """Score the edges with the request's method and select its circuit (circuits.Discovery)."""
    r = request
    return find_circuit(model, tok, method=r.method, options=r.options, selection=r.selection, level=r.level,
                        n=r.nodes if r.level == "node" else r.edges, threshold=r.threshold, target=r.target,
                        by=r.by, prune=r.prune, ablation=r.ablation, batch_size=r.batch_size, progress=progress,
                        metric=metric)


def study_circuit(model: Any, tok: TokenizedTask, request: CircuitRequest, *, metric: str = "logit_diff",
                  eval_batch_size: int | None = None,
                  progress: Callable[[int, int, str], None] | None = None) -> CircuitStudy:
    """The one circuit stage every command runs: score the edges, select the circuit, check it against
    random circuits and exact patching of a shortlist, and measure its edges' stability."""
    r = request
    tell = progress or (lambda _d, _t, _w: None)
    # The discovery pass also keeps what edge stability needs, where it can (one scoring pass, not two).
    with stability_recording(model, tok, r.method, r.options) as recorded:
        found = discover(model, tok, r, metric=metric, progress=tell)
    eval_bs = r.batch_size if eval_batch_size is None else eval_batch_size
    ev = evaluate_circuit(model, tok, found.circuit, scores=found.scores, ablation=r.ablation,
                          random_samples=r.random_samples, shortlist=r.shortlist, batch_size=eval_bs, progress=tell,
                          bootstrap=resampling())
    ev, why_not = with_stability(ev, model, tok, found.circuit, method=r.method, options=r.options, rs=resampling(),
                                 groups=STABILITY_GROUPS, batch_size=r.batch_size, progress=tell, recorded=recorded)
    return CircuitStudy(found, ev, why_not)


def study_benchmark(model: Any, tok: TokenizedTask, request: BenchmarkRequest, *, metric: str = "logit_diff",
                    progress: Callable[[int, int, str], None] | None = None,
                    notes: Progress | None = None) -> Any:
    """The benchmark stage: every requested method on the same prompts, MIB's CPR/CMD side by side."""
    from circuitwise.evaluation.benchmark import benchmark

    r = request
    return benchmark(model, tok, list(r.methods), target=r.target, ablation=r.ablation,
                     batch_size=r.batch_size, progress=progress, notes=notes, metric=metric)


@dataclass(frozen=True)
class SweepStudy:
    """One patching sweep, exact and/or attribution, as `patch` runs it (the stage `run` runs in bulk)."""

    exact: Any  # patching.PatchResult or None
    attribution: Any
    seconds: dict[str, float]
    warnings: list[str]
    # The warnings themselves (category, message), for callers that sort them (compare keeps checkpoint ones).
    caught: tuple[Any, ...] = ()

    def to_json(self) -> dict[str, Any]:
        entry: dict[str, Any] = {}
        if self.exact is not None:
            entry["exact"] = self.exact.to_json()
        if self.attribution is not None:
            entry["attribution"] = self.attribution.to_json()
            if self.exact is not None:
                entry["correlation"] = self.attribution.correlation(self.exact)
        return entry


def study_sweep(model: Any, tok: TokenizedTask, what: str, request: SweepRequest, *, metric: str = "logit_diff",
                out: Path | None = None, progress: Callable[[int, int], None] | None = None) -> SweepStudy:
    """Activation patching (``request.method`` exact or both: checkpointed under ``out``, resumable) and
    attribution patching (attribution or both) of one sweep."""
    import time

    from circuitwise.patching import activation_patching, attribution_patching

    r = request
    options = dict(direction=r.direction, metric=metric, normalize=r.normalize, batch_size=r.batch_size, align=r.align)
    exact = attr = None
    seconds: dict[str, float] = {}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if r.method in ("exact", "both"):
            t0 = time.monotonic()
            exact = activation_patching(model, tok, what, out=out, progress=progress, **options)
            seconds["exact"] = time.monotonic() - t0
        if r.method in ("attribution", "both"):
            t0 = time.monotonic()
            attr = attribution_patching(model, tok, what, **options)
            seconds["attribution"] = time.monotonic() - t0
    return SweepStudy(exact, attr, seconds, list(dict.fromkeys(str(c.message) for c in caught)), tuple(caught))


def run(config: RunConfig, *, progress: Progress | None = None, model: Any = None,
        notes: Progress | None = None, steps: Steps | None = None, force: bool = False) -> RunOutputs:
    """Run the whole study described by ``config`` and write report.html, results.json, config.yaml.

    ``progress(message)`` hears each stage start; ``steps(label, done, total)`` each finished unit
    of a long stage (default: a ``progress`` line every tenth of the way). ``force``: replace a
    complete run of other settings in ``config.out`` (refused otherwise, before any work).
    """
    say = progress or (lambda _msg: None)
    step = steps or _line_steps(say)
    folder = RunFolder(config.out, replaces=RUN_FILES, command="run", settings=folder_settings(config), force=force)
    # An --out that is a file, another command's folder or another run's complete result fails before any work.
    folder.check()
    for what in config.patching:
        get_sweep(what)  # an unknown sweep name fails here, before any work
    if config.circuit:
        get_method(config.circuit)
    with folder:
        if folder.resume_note():
            (notes or (lambda n: say(f"note: {n}")))(folder.resume_note())
        results = _run_stages(config, folder, say, model, notes, step)
        folder.commit()
    return RunOutputs(config.out, results)


def folder_settings(config: Any) -> dict[str, Any]:
    """What decides a run's (or compare's) results: its config less where and on what hardware it runs."""
    where = {"out", "device", "device_map", "n_devices", "max_memory", "batch_size"}
    # circuit_level only where not the default: folders written before the field keep their settings.
    return {k: v for k, v in config.model_dump(mode="json").items()
            if k not in where and not (k == "circuit_level" and v == "edge")}


def _run_stages(config: RunConfig, folder: RunFolder, say: Progress, model: Any,
                notes: Progress | None, step: Steps) -> RunResults:
    prepared = prepare(config, need_corrupted="if-present" if config.patching or config.circuit else False,
                       progress=say, model=model, notes=notes, purpose="This run",
                       load_stages=partial(run_stages_before_load, config), skips=RUN_SKIPS)
    model, tok, dropped = prepared.model, prepared.tok, prepared.dropped
    refuse_other_weights(folder, "results.json", model, config.model)
    # Memory and time before any work: batch sizes that fit, or a refusal that names the fixes.
    resources = plan_resources(config, tok, model, prefer=config.batch_size or default_batch_size(model))
    for line in resources.lines():
        say(line)
    bs = resources.batch("baseline", 1)
    say(f"baseline on {len(tok)} prompts")
    measured = measure_baseline(model, tok, batch_size=bs, metric=config.metric, step=step,
                                corrupted=bool(config.patching or config.circuit))
    bl = measured.clean
    gap, scale = measured.gap
    plan = plan_run(config, tok, model, gap=gap, scale=scale)
    for note in plan.notes:
        log.info(note)
        say(f"note: {note}")
    out = folder.path
    folder.write_text("config.yaml", config.to_yaml())
    cfg = model.cfg
    # Each section is validated as it is assigned; the whole file again as it is written.
    results = RunResults(
        circuitwise_version=_version(),
        rerun=rerun_command(config),
        plan={**plan.to_json(), "resources": resources.to_json()},
        notes=list(plan.notes),
        model={"name": config.model, "n_layers": cfg.n_layers, "n_heads": cfg.n_heads,
               "d_model": cfg.d_model, "n_ctx": cfg.n_ctx, "device": str(cfg.device),
               "dtype": dtype_of(model), "processing": processing_json(model, config.processing),
               "fingerprint": fingerprint(model)},
        task={"name": tok.task.name, "n_prompts": len(tok), "n_dropped": len(dropped),
              "dropped_reasons": [d.reason for d in dropped[:20]],
              "examples": [{"clean": e.clean, "correct": e.correct, "incorrect": e.incorrect,
                            "corrupted": e.corrupted, "tokens": list(tok.str_tokens[i])}
                           for i, e in enumerate(tok.task.examples)]},
    )
    save = lambda: folder.write_text("results.json", results.dump_text())  # noqa: E731
    save()

    rs = resampling()
    ld = bl.logit_diff.double()
    bl_json = bl.to_json()
    # Intervals over prompts: accuracy is the mean of "the correct answer is ahead" per prompt.
    bl_json["logit_diff"]["interval"] = mean_interval(ld, rs).to_json()
    bl_json["accuracy_interval"] = mean_interval((ld > 0).double(), rs).to_json()
    if bl.metric_values is not None:
        bl_json["metric"]["interval"] = mean_interval(bl.metric_values.double(), rs).to_json()
    results.baseline = bl_json
    save()

    say("direct logit attribution")
    dla = direct_logit_attribution(model, tok, batch_size=resources.batch("dla", bs))
    dla_json = dla.to_json()
    if dla.layers.per_example is not None:
        # Each component's (embed, attn_out, mlp_out …) mean direct effect, resampled over prompts.
        dla_json["layers"]["intervals"] = [iv.to_json() for iv in mean_intervals(dla.layers.per_example, rs)]
    results.dla = dla_json
    pos, neg = top_heads(dla.heads.values, config.top_k)
    per = dla.heads.per_example
    ivs = (mean_intervals(torch.stack([per[:, l, h] for l, h in pos + neg], 1), rs)
           if per is not None and pos + neg else [None] * len(pos + neg))

    def head_entry(l: int, h: int, iv: Any) -> dict[str, Any]:
        return {"label": head_label(l, h), "layer": l, "head": h, "value": float(dla.heads.values[l, h]),
                "interval": None if iv is None else iv.to_json()}

    results.top_heads = {"positive": [head_entry(l, h, iv) for (l, h), iv in zip(pos, ivs[: len(pos)], strict=True)],
                         "negative": [head_entry(l, h, iv) for (l, h), iv in zip(neg, ivs[len(pos):], strict=True)]}
    pats = attention_patterns(model, tok, pos + neg, example=0)
    results.attention = {"example": 0, "tokens": pats.labels["src"], "heads": pats.labels["head"],
                         "patterns": pats.values.tolist()}
    save()

    ranked: list[tuple[int, int]] = []
    if plan.sweeps:
        sweeps: dict[str, RunSweep] = {}
        estimates = {}
        if plan.attribution:
            # One forward and backward per batch serve every sweep's estimate.
            say(f"attribution patching: {', '.join(plan.sweeps)}")
            with warnings.catch_warnings():
                # A degenerate gap: the plan has said so once already, as for the exact sweeps below.
                warnings.simplefilter("ignore", DegenerateNormalizationWarning)
                estimates = attribution_sweeps(model, tok, plan.sweeps, batch_size=resources.batch("attribution", bs),
                                               align=config.align, metric=config.metric,
                                               progress=partial(step, "attribution patching"))
        selection = choose_exact_cells(config, tok, model, plan.sweeps, estimates)
        if (chosen := selection.note()) is not None:
            log.info(chosen)
            say(f"note: {chosen}")
            results.notes = [*results.notes, chosen]
        # Every sweep batch by batch: each batch's clean and corrupted runs are cached once for all.
        say(f"activation patching: {', '.join(plan.sweeps)}")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            exacts = activation_sweeps(model, tok, plan.sweeps, batch_size=resources.batch("patching", bs), out=out,
                                       align=config.align, cells=selection.cells, metric=config.metric,
                                       progress=partial(step, "activation patching"))
        for w in caught:
            # The plan already said it once; per-sweep repeats of the degenerate warning are noise.
            if issubclass(w.category, (CheckpointWarning, CheckFailedWarning)):
                results.warnings = [*results.warnings, str(w.message)]
                say(f"warning: {w.message}")
            elif not issubclass(w.category, DegenerateNormalizationWarning):
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        for what in plan.sweeps:
            exact = exacts[what]
            entry = exact.to_json()
            entry["top"] = top_cells(exact, rs)
            if plan.attribution:
                approx = estimates[what]
                entry["attribution"] = {"values": approx.to_json()["values"],
                                        "correlation": exact.correlation(approx)}
            sweeps[what] = RunSweep.model_validate(nan_to_none(entry))
        results.patching = sweeps
        save()
        ranked = _heads_ranked_by_patching(sweeps, config.top_k)
        if ranked:
            pats = attention_patterns(model, tok, ranked, example=0)
            results.patching_attention = {"example": 0, "tokens": pats.labels["src"],
                                          "heads": pats.labels["head"], "patterns": pats.values.tolist()}
        save()
    elif config.patching and tok.corrupted is None:
        results.patching_skipped = ("the task has no corrupted prompts; build it with a corruption "
                                    "scheme (--corruption) or add 'corrupted' fields to run patching")

    _mechanism_stage(model, tok, results, picked_heads(pos, neg, ranked), resources.batch("dla", bs), say)
    save()

    if plan.circuit:
        results.circuit = nan_to_none(_circuit_stage(model, tok, config, resources.batch("edges", bs),
                                                     resources.batch("evaluation", bs), folder, say, step))
        save()

    say("writing report")
    write_report(results, out / "report.html")
    # Last: `complete: true` is only ever on disk beside a report that exists.
    results.complete = True
    save()
    return results


def refuse_other_weights(folder: RunFolder, name: str, model: Any, model_name: str,
                         at: tuple[str, ...] = ("model",)) -> None:
    """Refuse, naming both models, a folder whose ``name`` (its complete result, or the unfinished one a re-run
    resumes) another checkpoint of the same name computed, unless ``--force``: the folder's settings name the
    model, so a checkpoint rewritten at that path passes them. ``at``: where the file records the model (its
    ``name`` and ``fingerprint``). Called once the model is loaded, before the staging folder is made."""
    from circuitwise.errors import OutputError
    from circuitwise.models.fingerprint import mismatch

    if folder.force:
        return
    for path in (folder.staging / name, folder.out / name):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        recorded = data
        for key in at:
            recorded = recorded.get(key) if isinstance(recorded, dict) else None
        if not isinstance(recorded, dict) or not isinstance(have := recorded.get("fingerprint"), dict):
            continue
        said = mismatch(have, fingerprint(model), what=str(path), have_name=recorded.get("name"), want_name=model_name)
        if said is not None:
            raise OutputError(f"{said} This run would replace it: give another --out to keep it, or add --force to "
                              "replace it.")


def picked_heads(pos: list[tuple[int, int]], neg: list[tuple[int, int]],
                 ranked: list[tuple[int, int]]) -> dict[tuple[int, int], list[str]]:
    """The heads the run read out, each with what picked it (DLA's top ± heads, patching's top heads)."""
    picked: dict[tuple[int, int], list[str]] = {}
    for why, heads in (("dla+", pos), ("dla-", neg), ("patching", ranked)):
        for hd in heads:
            picked.setdefault(hd, []).append(why)
    return picked


def _mechanism_stage(model: Any, tok: TokenizedTask, results: RunResults, picked: dict[tuple[int, int], list[str]],
                     bs: int, say: Progress) -> None:
    """Mechanism read-outs of the picked heads: one cached forward per batch over a bounded set of prompts."""
    if not picked:
        return
    say(f"mechanism read-outs of {len(picked)} heads")
    mech = mechanism_readouts(model, tok, list(picked), max_prompts=MECHANISM_PROMPTS, top_k=MECHANISM_TOP_TOKENS,
                              batch_size=bs)
    if mech.capped:
        note = (f"mechanism read-outs use the first {mech.n_prompts} of {mech.of} prompts "
                f"(config.MECHANISM_PROMPTS): they describe the heads, the estimates above use every prompt")
        log.info(note)
        say(f"note: {note}")
        results.notes = [*results.notes, note]
    data = mech.to_json()
    for h in data["heads"]:
        h["picked_by"] = picked[(h["layer"], h["head"])]
    results.mechanism = MechanismSection.model_validate(nan_to_none(data))


def _circuit_stage(model: Any, tok: TokenizedTask, config: RunConfig, bs: int, eval_bs: int, folder: RunFolder,
                   say: Progress, step: Steps) -> dict[str, Any]:
    """Discover a circuit, check it against random circuits and exact patching, write circuit.json."""

    def progress(done: int, total: int, what: str) -> None:
        step(what, done, total)

    say(f"circuit discovery: {config.circuit}")
    assert config.circuit is not None  # the plan runs this stage only with a method
    request = CircuitRequest(config.circuit, config.method_options(), target=config.circuit_target, batch_size=bs,
                             level=config.circuit_level)
    study = study_circuit(model, tok, request, metric=config.metric, eval_batch_size=eval_bs, progress=progress)
    found, ev, why_not = study.found, study.evaluation, study.note
    if why_not is not None:
        say(f"note: {why_not}")
    folder.write_json("circuit.json", circuit_file(found.circuit, ev))
    sel = found.circuit.selection
    return {
        "method": config.circuit,
        "file": "circuit.json",
        "n_edges": found.circuit.n_edges,
        "total_edges": found.circuit.graph.n_edges,
        "selection": sel,
        "scoring_seconds": found.scores.seconds,
        "evaluation": ev.to_json(),
        "summary": summary_lines(ev),
        "top_edges": top_edges(found.circuit, ev),
        # Plotly JSON, so the report is still rendered from results.json alone.
        "figures": {name: json.loads(fig.to_json()) for name, fig in ev.figures().items()},
        "attention": _circuit_attention(model, tok, found.circuit),
    }


def _circuit_attention(model: Any, tok: TokenizedTask, circuit: Any) -> dict[str, Any]:
    """The circuit's heads' attention from the answer position on the first prompts (the explorer's panel)."""
    from circuitwise.attribution.attention import answer_attention
    from circuitwise.config import EXPLORER_PROMPTS

    nodes = set(circuit.nodes())
    heads = [(s.layer, s.head) for s in circuit.graph.senders if s.kind == "head" and s.name in nodes]
    return answer_attention(model, tok, heads, max_prompts=EXPLORER_PROMPTS)


def top_edges(circuit: Any, ev: Any, k: int = 20) -> list[dict[str, Any]]:
    """The circuit's ``k`` strongest edges, with each one's selection frequency where it was measured."""
    freq = dict(ev.stability.circuit_edges()) if ev.stability is not None else {}
    rows = [{"sender": a, "receiver": b, "score": sc, "stability": freq.get(f"{a}->{b}")}
            for a, b, sc in circuit.edge_list()]
    return sorted(rows, key=lambda e: -abs(e["score"]) if e["score"] == e["score"] else 0.0)[:k]


def resampling() -> Resampling:
    """The bootstrap every command's intervals use (config's defaults)."""
    return Resampling(BOOTSTRAP_RESAMPLES, BOOTSTRAP_LEVEL, BOOTSTRAP_SEED)


def top_cells(exact: Any, rs: Resampling, k: int = 10) -> list[dict[str, Any]]:
    """A sweep's ``k`` largest cells with their bootstrap intervals over prompts (NaN cells left out)."""
    top = exact.top(k)
    ivs: list[Any] = [None] * len(top)
    if exact.raw is not None and not exact.degenerate:
        order = top_cell_order(exact.values - exact.unpatched, k)  # PatchResult.top's cells
        ivs = cell_intervals(exact.raw, exact.clean, exact.corrupted, order, exact.normalized, rs)
    return [{"cell": c, "value": v, "interval": None if iv is None else iv.to_json()}
            for (c, v), iv in zip(top, ivs, strict=True) if v == v]


def _line_steps(say: Progress) -> Steps:
    """Steps as progress lines, at most one every tenth of a stage."""
    last: dict[str, int] = {}

    def step(label: str, done: int, total: int) -> None:
        tenth = int(10 * done / max(total, 1))
        if last.get(label) != tenth:
            last[label] = tenth
            say(f"{label} {done}/{total}")

    return step


def _heads_ranked_by_patching(patching: dict[str, RunSweep], k: int) -> list[tuple[int, int]]:
    """The k heads whose patching moves the metric most (by |value| of the 'heads' sweep)."""
    heads = patching.get("heads")
    if heads is None or heads.degenerate:
        return []
    vals = torch.tensor([[float("nan") if v is None else v for v in row] for row in heads.values])
    flat = torch.nan_to_num(vals.abs().flatten(), nan=-1.0)
    H = vals.shape[1]
    return [divmod(int(i), H) for i in flat.topk(min(k, flat.numel())).indices]


def processing_json(model: Any, requested: bool) -> dict[str, Any]:
    """The processing the model really has, step by step; only what was asked when it was loaded elsewhere."""
    rec = processing_of(model)
    return rec.to_json() if rec is not None else {"requested": requested, "steps": None}


def _version() -> str:
    from circuitwise import __version__

    return __version__


__all__ = ["Baselines", "CircuitStudy", "Prepared", "RunOutputs", "SweepStudy", "discover", "load_study",
           "measure_baseline", "prepare", "resampling", "run", "study_benchmark", "study_circuit", "study_sweep"]
