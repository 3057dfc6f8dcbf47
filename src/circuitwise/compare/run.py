"""compare(config): two studies side by side, each difference with its uncertainty and its test.

The stages are `run`'s (baseline, direct logit attribution, the `heads` patching sweep, circuit
discovery), on each side; what is new is the comparison of their per-example values
(:mod:`circuitwise.compare.stats`) and of their circuits (:mod:`circuitwise.compare.circuits`).
Everything is written into a staging folder and swapped in whole (:mod:`circuitwise.runfolder`):
config.yaml first, compare.json as stages finish, compare.html, and ``complete: true`` last.
"""

from __future__ import annotations

import dataclasses

import shlex
import warnings
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Callable

import torch

from circuitwise.attribution import attention_patterns, direct_logit_attribution
from circuitwise.attribution.dla import DLA, head_label
from circuitwise.circuits import Discovery
from circuitwise.circuits.methods import check_metric
from circuitwise.compare import circuits as cc
from circuitwise.compare.config import CompareConfig
from circuitwise.compare.match import match_edges, match_labels
from circuitwise.compare.plan import ComparePlan, plan_compare, plan_side
from circuitwise.compare.schema import Attention, Circuits, CompareResults, Comparison, Example, Pairing, Side, floats
from circuitwise.compare.sides import Loaded, load_sides
from circuitwise.compare.stats import Side as Values
from circuitwise.compare.stats import compare_sides
from circuitwise.config import default_batch_size
from circuitwise.errors import ConfigError
from circuitwise.patching.activation import CheckFailedWarning
from circuitwise.patching.result import DegenerateNormalizationWarning, PatchResult
from circuitwise.patching.resume import CheckpointWarning
from circuitwise.models import dtype_of
from circuitwise.models.fingerprint import fingerprint
from circuitwise.models.memory import batch_for
from circuitwise.pipeline import discover, measure_baseline, processing_json, refuse_other_weights, study_sweep
from circuitwise.plan import CircuitRequest, SweepRequest, metric_held
from circuitwise.reports.compare import summarize_compare, write_compare_page
from circuitwise.runfolder import RunFolder
from circuitwise.tasks.task import Task
from circuitwise.metrics import prepared_for

Progress = Callable[[str], None]
Steps = Callable[[str, int, int], None]

COMPARE_FILES = ("compare.html", "compare.json", "config.yaml", "circuit_a.json", "circuit_b.json")


@dataclass(frozen=True)
class CompareOutputs:
    """Where the comparison was written, and its results (the typed compare.json)."""

    out: Path
    results: CompareResults

    @property
    def page(self) -> Path:
        return self.out / "compare.html"

    def __repr__(self) -> str:
        return f"CompareOutputs({self.out}: {self.results!r})"

    def _repr_html_(self) -> str:
        return self.results._repr_html_()

    def show(self) -> None:
        """Display the comparison (compare.html's sections and figures) in the notebook."""
        from circuitwise.reports.display import show

        show(self._repr_html_(), "compare")


@dataclass
class _Study:
    """What one side computed."""

    side: Loaded
    bs: int
    ld: torch.Tensor
    corrupted_ld: torch.Tensor | None
    # The chosen metric per prompt (the logit difference unless --metric says otherwise).
    values: torch.Tensor | None = None
    corrupted_values: torch.Tensor | None = None
    dla: DLA | None = None
    patch: PatchResult | None = None
    found: Discovery | None = None


def rerun_command(cfg: CompareConfig) -> str:
    return f"circuitwise compare --config {shlex.quote(str(Path(cfg.out).absolute() / 'config.yaml'))}"


def compare(a: CompareConfig | str | Path | Task | None = None, b: str | Path | Task | None = None, /, *,
            tasks: tuple[Task, Task] | None = None, models: tuple[Any, Any] | None = None,
            progress: Progress | None = None, notes: Progress | None = None, steps: Steps | None = None,
            force: bool = False, **options: Any) -> CompareOutputs:
    """Compare two tasks (or one task on two models, or on two splits) and write compare.html + compare.json.

    ``compare("numbers-digits", "numbers-words", model="bundled", out="runs/cmp")``: A and B are
    task names or files (B defaults to A), the keywords :class:`CompareConfig`'s fields; or give
    a whole ``CompareConfig``. In-memory :class:`Task` objects may stand for A and B, and loaded
    models for ``model``/``model_b`` (or ``models=(model_a, model_b)``); the saved config then
    names them but cannot rebuild them. Returns the output folder and the typed results:
    ``result.results.heads.flagged()`` lists the heads whose direct effect differs (BH-controlled).
    ``force``: replace a complete compare of other settings in ``out`` (refused otherwise, before any work).
    """
    if isinstance(a, Task) or isinstance(b, Task):
        ta = a if isinstance(a, Task) else None
        tb = b if isinstance(b, Task) else ta
        if ta is None or tb is None:
            raise ConfigError("Give both sides as Task objects, or both as task names or files.")
        tasks, a, b = (ta, tb), ta.name, tb.name
    loaded = [options.pop(k) if k in options and not isinstance(options[k], (str, Path, type(None))) else None
              for k in ("model", "model_b")]
    if loaded[0] is not None or loaded[1] is not None:
        if models is not None or loaded[0] is None:
            raise ConfigError("Give loaded models as model= (and model_b=), or as models=(A, B), not both; "
                              "model_b= alone needs model= too.")
        models = (loaded[0], loaded[1] or loaded[0])
        options["model"] = str(getattr(loaded[0], "circuitwise_name", "model"))
        if loaded[1] is not None:
            options["model_b"] = str(getattr(loaded[1], "circuitwise_name", "model_b"))
    if isinstance(a, CompareConfig):
        config = CompareConfig.build(**{**a.model_dump(), **options}) if options else a
    else:
        names = {k: str(v) for k, v in (("a", a), ("b", b)) if v is not None}
        config = CompareConfig.build(**{**options, **names})
    if config.circuit:
        check_metric(config.circuit, config.method_options(), config.metric)  # before any model loads
    say = progress or (lambda _m: None)
    step = steps or (lambda _l, _d, _t: None)
    tell = notes or (lambda n: say(f"note: {n}"))
    from circuitwise.pipeline import folder_settings

    folder = RunFolder(config.out, replaces=COMPARE_FILES, command="compare", settings=folder_settings(config),
                       force=force)
    folder.check()  # another command's folder, or another compare's complete result without force: before any work
    with folder:
        if folder.resume_note():
            tell(folder.resume_note())
        results = _stages(config, folder, tasks, models, say, tell, step)
        folder.commit()
    return CompareOutputs(Path(config.out), results)


def _stages(config: CompareConfig, folder: RunFolder, tasks: Any, models: Any, say: Progress, tell: Progress,
            step: Steps) -> CompareResults:
    need_corrupted = bool(config.patching or config.circuit)
    a, b, decision = load_sides(config, tasks=tasks, models=models, say=say, notes=tell, need_corrupted=need_corrupted)
    for side in (a, b):  # a folder that another checkpoint of the same name filled is refused, naming both
        refuse_other_weights(folder, "compare.json", side.model, side.run.model, at=(side.which, "model_info"))
        # What the metric holds for the whole study (kl's clean reference) must fit beside each side's model,
        # before either side's first forward (as pipeline.prepare checks it for every other command).
        metric_held(config.metric, len(side.tok), side.model)
    studies = [_baselines(s, config, step, say) for s in (a, b)]
    plans = tuple(plan_side(config, st.side, *_gap(st)) for st in studies)
    plan = plan_compare(config, a, b, plans)  # type: ignore[arg-type]
    notes = [f"Pairing: {'paired' if decision.paired else 'unpaired'} — {decision.reason}."] + list(plan.notes)
    for n in plan.notes:
        say(f"note: {n}")
    folder.write_text("config.yaml", config.to_yaml())
    res = CompareResults(
        circuitwise_version=_version(), rerun=rerun_command(config), config=config.model_dump(mode="json"),
        pairing=Pairing(paired=decision.paired, kind=decision.kind, reason=decision.reason), notes=notes,
        a=_side_json(studies[0]), b=_side_json(studies[1]),
    )
    save = lambda: folder.write_json("compare.json", res.model_dump(mode="json"))  # noqa: E731
    save()
    stat = partial(_compare, config=config, paired=decision.paired)

    ld = [st.ld[:, None] for st in studies]
    res.logit_diff = stat("logit_diff", ["metric"], [1], ["logit_diff"], ld[0], ld[1], correct=False)
    acc = [(st.ld > 0).double()[:, None] for st in studies]
    res.accuracy = stat("accuracy", ["metric"], [1], ["accuracy"], acc[0], acc[1], correct=False)
    if config.metric != "logit_diff":
        vals = [st.values[:, None] for st in studies if st.values is not None]
        res.metric = stat("metric", ["metric"], [1], [config.metric], vals[0], vals[1], correct=False)
    save()

    for st in studies:
        say(f"direct logit attribution: side {st.side.which.upper()}")
        st.dla = direct_logit_attribution(st.side.model, st.side.tok, batch_size=st.bs)
    da, db = studies[0].dla, studies[1].dla
    assert da is not None and db is not None
    # Only the cells both models have are compared (a rotary model has no pos_embed term, a deeper model more
    # layers); the rest are named in the notes, shown side by side on the page.
    La, Lb = int(a.model.cfg.n_layers), int(b.model.cfg.n_layers)
    for key, axis, what, ra, rb in (("lens", "point", "Logit lens", da.logit_lens, db.logit_lens),
                                    ("layers", "component", "Per-layer decomposition", da.layers, db.layers)):
        m = match_labels(list(ra.labels[axis]), list(rb.labels[axis]), La, Lb)
        note = m.note(what)
        if note:
            res.notes.append(note)
            say(f"note: {note}")
        setattr(res, key, stat("logit_lens" if key == "lens" else "layers", [axis], [len(m.cells)], m.cells,
                               ra.per_example[:, m.index_a], rb.per_example[:, m.index_b]) if m.cells else None)
    for side_json, d in ((res.a, da), (res.b, db)):
        side_json.heads_dla = [floats(r) for r in d.heads.values]
        side_json.lens, side_json.lens_labels = floats(d.logit_lens.values), list(d.logit_lens.labels["point"])
        side_json.layers, side_json.layer_labels = floats(d.layers.values), list(d.layers.labels["component"])
        side_json.closure_error = d.closure_error
    L, H = res.a.n_layers, res.a.n_heads
    cells = [head_label(l, h) for l in range(L) for h in range(H)]
    if plan.same_heads:
        res.heads = stat("heads", ["layer", "head"], [L, H], cells, da.heads.per_example.reshape(len(a.tok), -1),
                         db.heads.per_example.reshape(len(b.tok), -1))
    save()

    for st, p in zip(studies, plans):
        if "heads" in p.sweeps:
            say(f"activation patching: heads, side {st.side.which.upper()}")
            # The runner's patching stage (as `patch` runs it); checkpoints go to the staging folder, so an
            # interrupted compare resumes its sweeps.
            done = study_sweep(st.side.model, st.side.tok, "heads", SweepRequest(("heads",), batch_size=st.bs),
                               metric=config.metric, out=folder.path,
                               progress=partial(step, f"patching heads ({st.side.which.upper()})"))
            st.patch = done.exact
            for w in done.caught:
                if issubclass(w.category, (CheckpointWarning, CheckFailedWarning)):
                    res.warnings.append(f"Side {st.side.which.upper()}: {w.message}")
                    say(f"warning: {w.message}")
                elif not issubclass(w.category, DegenerateNormalizationWarning):  # the plan said it once
                    warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
            side_json = res.a if st.side.which == "a" else res.b
            side_json.patching = [floats(r) for r in st.patch.values]
            side_json.patching_degenerate = st.patch.degenerate
    pa, pb = studies[0].patch, studies[1].patch
    if plan.patching and pa is not None and pb is not None and plan.same_heads:
        n_a, n_b = pa.raw.shape[0], pb.raw.shape[0]  # type: ignore[union-attr]
        res.patching = stat("patching_heads", ["layer", "head"], [L, H], cells, pa.raw.reshape(n_a, -1),
                            pb.raw.reshape(n_b, -1), statistic="ratio",
                            clean=(pa.clean, pb.clean), corrupted=(pa.corrupted, pb.corrupted))
    save()

    if plan.same_heads:
        res.attention = _attention(studies, res.heads, config.top_k)
    save()

    if any(plan.circuit):
        _circuit_stage(config, plan, studies, res, folder, say, step)
    elif config.circuit:
        res.circuits_skipped = "no side can discover a circuit (see the notes above)"
    save()

    say("writing compare.html")
    data = res.model_dump(mode="json")
    res.summary = summarize_compare(data)
    data["summary"] = res.summary
    write_compare_page(data, folder.path / "compare.html")
    res.complete = True
    save()  # last: complete: true is only ever on disk beside a page that exists
    return res


def _baselines(side: Loaded, config: CompareConfig, step: Steps, say: Progress) -> _Study:
    # One batch size serves every stage of a side: the largest that each of them fits.
    T = int(side.tok.clean.shape[1])
    bs = config.batch_size or min(batch_for(st, side.model, T, default_batch_size(side.model))
                                  for st in ("dla", "patching", "edges", "evaluation"))
    if config.metric != "logit_diff":
        # Every stage of this side reads the metric from these tokens (kl: the clean reference, computed once).
        side = dataclasses.replace(side, tok=prepared_for(side.model, side.tok, config.metric, batch_size=bs))
    say(f"baseline: side {side.which.upper()} ({side.label}), {len(side.tok)} prompts")
    # The runner's baseline stage, as `run` takes it.
    m = measure_baseline(side.model, side.tok, batch_size=bs, metric=config.metric, top_k=1, step=step,
                         corrupted=bool(config.patching or config.circuit), label=f" ({side.which.upper()})")
    bl, corrupted = m.clean, m.corrupted
    return _Study(side, bs, bl.logit_diff.double(), None if corrupted is None else corrupted.logit_diff.double(),
                  bl.values.double(), None if corrupted is None else corrupted.values.double())


def _gap(st: _Study) -> tuple[float | None, float]:
    """The chosen metric's clean − corrupted gap (what patching and faithfulness restore), and its scale."""
    if st.corrupted_values is None or st.values is None:
        return None, 1.0
    clean, corr = float(st.values.mean()), float(st.corrupted_values.mean())
    return clean - corr, max(abs(clean), abs(corr))


def _compare(name: str, axes: list[str], shape: list[int], cells: list[str], va: torch.Tensor, vb: torch.Tensor, *,
             config: CompareConfig, paired: bool, correct: bool = True, statistic: str = "mean",
             clean: tuple[torch.Tensor, torch.Tensor] | None = None,
             corrupted: tuple[torch.Tensor, torch.Tensor] | None = None) -> Comparison:
    sa = Values(va.double(), None if clean is None else clean[0], None if corrupted is None else corrupted[0])
    sb = Values(vb.double(), None if clean is None else clean[1], None if corrupted is None else corrupted[1])
    d = compare_sides(sa, sb, paired=paired, statistic=statistic, confidence=config.confidence,  # type: ignore[arg-type]
                      bootstrap=config.bootstrap, permutations=config.permutations, alpha=config.alpha,
                      correct=correct, min_difference=config.min_difference, seed=config.seed)
    return Comparison.build(name, axes, shape, cells, d, values_a=va, values_b=vb, alpha=config.alpha,
                            confidence=config.confidence, min_difference=config.min_difference,
                            clean=clean, corrupted=corrupted)


def _side_json(st: _Study) -> Side:
    s, tok = st.side, st.side.tok
    cfg = s.model.cfg
    return Side(
        label=s.label, task=tok.task.name, model=s.run.model, split=s.run.split, n_prompts=len(tok),
        n_dropped=len(s.dropped), dropped_reasons=[d.reason for d in s.dropped[:20]],
        model_info={"name": s.run.model, "n_layers": cfg.n_layers, "n_heads": cfg.n_heads, "d_model": cfg.d_model,
                    "device": str(cfg.device), "dtype": dtype_of(s.model), "processing": processing_json(s.model, s.run.processing),
                    "fingerprint": fingerprint(s.model)},
        examples=[Example(clean=e.clean, correct=e.correct, incorrect=e.incorrect, corrupted=e.corrupted,
                          tokens=list(tok.str_tokens[i])) for i, e in enumerate(tok.task.examples)],
        logit_diff=st.ld.tolist(), corrupted_logit_diff=None if st.corrupted_ld is None else st.corrupted_ld.tolist(),
        accuracy=float((st.ld > 0).double().mean()), n_layers=int(cfg.n_layers), n_heads=int(cfg.n_heads),
    )


def _attention(studies: list[_Study], heads: Comparison | None, k: int) -> Attention | None:
    """Patterns of the heads that differ most (flagged first, then by |difference|) on pair 0."""
    if heads is None:
        return None
    order = sorted(range(len(heads.cells)), key=lambda i: (not heads.significant[i], -abs(heads.diff[i] or 0.0)))
    H = heads.shape[1]
    chosen = [divmod(i, H) for i in order[:k]]
    pats = [attention_patterns(st.side.model, st.side.tok, chosen, example=0) for st in studies]
    return Attention(heads=pats[0].labels["head"], example=0, tokens_a=pats[0].labels["src"],
                     tokens_b=pats[1].labels["src"], patterns_a=pats[0].values.tolist(),
                     patterns_b=pats[1].values.tolist())


def _circuit_stage(config: CompareConfig, plan: ComparePlan, studies: list[_Study], res: CompareResults,
                   folder: RunFolder, say: Progress, step: Steps) -> None:
    def progress(done: int, total: int, what: str) -> None:
        step(what, done, total)

    for st, method in zip(studies, plan.circuit):
        if method:
            say(f"circuit discovery ({method}): side {st.side.which.upper()}")
            # The runner's discovery step (the circuit stage of `run` and `circuit`, less its own checks:
            # compare checks each circuit on both sides below).
            request = CircuitRequest(method, config.method_options(), target=config.circuit_target, batch_size=st.bs,
                                     level=config.circuit_level)
            st.found = discover(st.side.model, st.side.tok, request, metric=config.metric, progress=progress)
            folder.write_json(f"circuit_{st.side.which}.json", st.found.circuit.to_json())
    fa, fb = studies[0].found, studies[1].found
    if fa is None or fb is None:
        missing = "A" if fa is None else "B"
        res.circuits_skipped = (f"side {missing} cannot discover a circuit (see the notes above), so there is nothing "
                                f"to compare side {'B' if missing == 'A' else 'A'}'s circuit with; it is in "
                                f"circuit_{'b' if missing == 'A' else 'a'}.json")
        return
    found = {"a": fa, "b": fb}
    if not cc.same_graph(fa, fb):
        m = match_edges(fa.circuit.graph.edge_names, fb.circuit.graph.edge_names)
        note = (f"Circuits: the two edge graphs differ ({len(m.index_a) + len(m.only_a)} and "
                f"{len(m.index_b) + len(m.only_b)} edges, {len(m.cells)} shared by name); the overlap is over edge "
                f"names ({len(m.only_a)} edge(s) exist only in A's graph, {len(m.only_b)} only in B's), and neither "
                "circuit is evaluated on the other side.")
        res.notes.append(note)
        say(f"note: {note}")
    cross = []
    for st in studies:
        say(f"cross-faithfulness on side {st.side.which.upper()}")
        use = found if plan.cross and cc.same_graph(fa, fb) else {st.side.which: found[st.side.which]}
        cross += cc.evaluate_on(st.side.model, st.side.tok, st.side.which, use, samples=config.random_samples,
                                seed=config.seed, batch_size=st.bs, progress=progress)
    own = {c.circuit: c for c in cross if c.circuit == c.on}
    res.circuits = Circuits(
        a=cc.circuit_side(fa, own["a"], "circuit_a.json", studies[0].side.label),
        b=cc.circuit_side(fb, own["b"], "circuit_b.json", studies[1].side.label),
        overlap=cc.overlap(fa, fb), cross=cross,
    )


def _version() -> str:
    from circuitwise import __version__

    return __version__


__all__ = ["COMPARE_FILES", "CompareOutputs", "compare", "rerun_command"]
