"""Plan before work: decide from the task and the model what each stage of a run will do.

A stage that cannot apply to this input is adapted or skipped here, with a note the user sees
(console, ``results.json`` and the report), so no valid input fails after work has started.
Only an explicit request that cannot be met (``--align token`` on prompts of different
lengths, ``--align role`` without roles) is an error, and it is raised here, before any work.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal, get_args

from circuitwise.config import (
    DEFAULT_RANDOM_SAMPLES,
    DEFAULT_SHORTLIST,
    DEFAULT_TARGET,
    EXACT_PATCHING_SECONDS,
    PATCH_SWEEPS,
    RunConfig,
    check_target,
    circuit_method_options,
)
from circuitwise.errors import ConfigError, MemoryBudgetError, TaskError
from circuitwise.metrics import get_metric, held_bytes
from circuitwise.models.cost import CONE_EFFICIENCY, flop_rate, nominal_flops, seconds
from circuitwise.models.memory import Shapes, Stage, budget_of, estimate, fit_batch, refuse_unless_fits
from circuitwise.models.weights import supports
from circuitwise.patching.cells import Selection, cell_flops, select_cells
from circuitwise.patching.positions import sweep_positions
from circuitwise.patching.result import MIN_GAP
from circuitwise.patching.sweeps import get_sweep
from circuitwise.sizes import duration, human
from circuitwise.tasks.tokenize import TokenizedTask

if TYPE_CHECKING:
    from circuitwise.circuits.select import Rank
    from circuitwise.evaluation.mib_submission import SubmissionForm, SubmissionLevel

POSITION_FREE_FALLBACK = "heads"
CIRCUIT_REL_GAP = 1e-4


@dataclass(frozen=True)
class StagePlan:
    """One stage's batch (examples per forward), its estimated peak memory (bytes, the loaded model
    included) and time (seconds)."""

    stage: str
    batch: int
    memory: int
    seconds: float

    def to_json(self) -> dict[str, Any]:
        return {"stage": self.stage, "batch": self.batch, "memory_bytes": self.memory,
                "seconds": round(self.seconds, 3)}

    def line(self) -> str:
        return f"{self.stage}: batch {self.batch}, ≤ {human(self.memory)}, ≈ {duration(self.seconds)}"


@dataclass(frozen=True)
class ResourcePlan:
    """Every stage's batch, memory and time, fitted to ``budget`` bytes on ``device`` before any work."""

    stages: tuple[StagePlan, ...]
    budget: int
    budget_given: bool
    device: str
    dtype: str

    def batch(self, stage: str, default: int) -> int:
        return next((s.batch for s in self.stages if s.stage == stage), default)

    def lines(self) -> list[str]:
        head = (f"plan on {self.device} in {self.dtype}, memory budget {human(self.budget)} "
                f"({'--max-memory' if self.budget_given else 'free memory'}):")
        return [head, *(f"  {s.line()}" for s in self.stages)]

    def to_json(self) -> dict[str, Any]:
        return {"budget_bytes": self.budget, "budget_given": self.budget_given, "device": self.device,
                "dtype": self.dtype, "stages": [s.to_json() for s in self.stages]}


# How `run` leaves out a stage that does not fit (the memory refusal names it first).
RUN_SKIPS: dict[Stage, str] = {
    "patching": "--patch none (no patching sweeps)",
    "attribution": "--no-attribution (exact patching only)",
    "edges": "--circuit none (no circuit discovery)",
    "evaluation": "--circuit none (no circuit discovery)",
}


def run_stages_before_load(config: Any, task: Any) -> tuple[Stage, ...]:
    """The stages `run` takes whatever the model turns out to be (checked before it loads): the circuit's
    depend on the model's support, patching's on every example keeping its corrupted prompt."""
    sweeps = bool(config.patching) and task.has_corrupted
    return ("baseline", "dla") + (("attribution",) if sweeps and config.attribution else ()) \
        + (("patching",) if sweeps else ())


def plan_resources(config: Any, tok: TokenizedTask, model: Any, prefer: int) -> ResourcePlan:
    """Batch sizes that fit the memory budget, per stage the run will take, and their costs.

    Raises MemoryBudgetError, before any work, when a stage cannot fit even one prompt.
    """
    s = Shapes.from_model(model)
    T = int(tok.clean.shape[1])
    device = model.W_E.device
    budget = budget_of(model)
    corrupted = tok.corrupted is not None
    # The stages checked before loading, here at the prompts' real length; then the circuit's, by the model.
    wanted: list[Stage] = list(run_stages_before_load(config, tok.task))
    if corrupted and config.circuit and supports(model) is None:
        wanted += ["edges", "evaluation"]
    refuse_unless_fits(wanted, model, T, what=f"This run on {len(tok)} prompts", skips=RUN_SKIPS)
    if "edges" in wanted:
        from circuitwise.circuits.methods import check_prompts

        check_prompts(config.circuit, model, tok, config.method_options())  # e.g. positions these prompts lack
    # What the metric holds for the whole run (kl's clean reference) comes off every stage's budget.
    held = metric_held(getattr(config, "metric", "logit_diff"), len(tok), model)
    budget -= held
    steps = getattr(config.method_options(), "steps", 5) if config.circuit else 5
    exact = exact_patching_flops(config, tok, model) if "patching" in wanted else 0.0
    if not config.exhaustive and config.attribution:
        exact = min(exact, EXACT_PATCHING_SECONDS * nominal_flops(device))
    out = []
    for stage in wanted:
        b = max(1, min(fit_batch(stage, s, T, budget, prefer, device), len(tok)))
        secs = seconds(stage, s, T, len(tok), str(device), model.W_E.dtype, steps=int(steps or 5),
                       flops=exact if stage == "patching" else None)
        out.append(StagePlan(stage, b, estimate(stage, s, T, b, device) + held, secs))
    given = getattr(model, "circuitwise_max_memory", None) is not None
    return ResourcePlan(tuple(out), budget + held, given, str(device), str(model.W_E.dtype).removeprefix("torch."))


def metric_held(metric: str, n_prompts: int, model: Any) -> int:
    """Bytes ``metric`` holds beside every stage (metrics.held_bytes), or a refusal, before any work, when
    that alone passes the memory budget."""
    s = Shapes.from_model(model)
    held, budget = held_bytes(metric, n_prompts, s.d_vocab), budget_of(model)
    if held and held >= budget:
        raise MemoryBudgetError(
            f"--metric {metric} holds {human(held)} (the clean run's next-token distribution of "
            f"{n_prompts} prompts over {s.d_vocab:,} tokens), more than the memory budget ({human(budget)}). "
            "Use fewer prompts (--n), --metric logprob or prob, or a larger --max-memory.")
    return held


def reference_batch(metric: str, tok: TokenizedTask, model: Any) -> int:
    """Prompts per forward for kl's reference (full logits of every position, as the baseline's), in
    the budget left beside what the metric holds; the refusal of :func:`metric_held` comes first."""
    held = metric_held(metric, len(tok), model)
    b = fit_batch("baseline", Shapes.from_model(model), int(tok.clean.shape[1]), budget_of(model) - held, 16,
                  model.W_E.device)
    return max(1, min(b, len(tok)))


def exact_patching_flops(config: Any, tok: TokenizedTask, model: Any) -> float:
    """FLOPs of every exact sweep the config asks for, over every cell (sweeps that cannot align: none)."""
    total = 0.0
    for what in dict.fromkeys(config.patching):
        try:
            total += float(cell_flops(what, model, tok, config.align).sum())
        except (TaskError, ConfigError):  # the plan skips or adapts such a sweep (plan_run)
            continue
    return total


def choose_exact_cells(config: Any, tok: TokenizedTask, model: Any, sweeps: tuple[str, ...],
                       estimates: dict[str, Any]) -> Selection:
    """Which cells to patch exactly: all of them under the time budget or with ``--exhaustive``, else
    the cells attribution ranks highest, as many as the budget allows."""
    if config.exhaustive or not estimates:
        return Selection({w: None for w in sweeps}, 0.0, 0.0)
    costs = {w: cell_flops(w, model, tok, config.align) for w in sweeps}
    ranking = {w: estimates[w].values for w in sweeps}
    return select_cells(costs, ranking, EXACT_PATCHING_SECONDS * nominal_flops(model.W_E.device))


@dataclass(frozen=True)
class Plan:
    """What a run will do. ``notes`` say, in sentences, what was adapted or skipped and why."""

    sweeps: tuple[str, ...] = ()
    align: str = "auto"
    position_axis: str | None = None  # token, role or end: how the positional sweeps are labelled
    attribution: bool = False
    circuit: str | None = None
    degenerate: bool = False
    gap: float | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)

    def to_json(self) -> dict[str, Any]:
        return {"patching": list(self.sweeps), "align": self.align, "position_axis": self.position_axis,
                "attribution": self.attribution, "circuit": self.circuit, "degenerate": self.degenerate,
                "gap": self.gap}


def plan_run(config: Any, tok: TokenizedTask, model: Any, *, gap: float | None = None,
             scale: float = 1.0) -> Plan:
    """The plan for ``config`` on ``tok``; ``gap`` is the mean clean − corrupted metric, if known,
    and ``scale`` the larger of the two means' sizes."""
    notes: list[str] = []
    wanted = tuple(dict.fromkeys(config.patching))
    for what in wanted:
        get_sweep(what)  # an unknown name is an explicit request that cannot be met
    metric = getattr(config, "metric", "logit_diff")
    if not get_metric(metric).linear:
        notes.append(f"Metric {metric}: baseline, patching, circuit discovery and faithfulness measure it; direct "
                     "logit attribution and the logit lens decompose the logit difference, since "
                     f"{metric} is not linear in the residual stream.")
    if tok.corrupted is None:
        if wanted or config.circuit:
            notes.append("Patching and circuit discovery were skipped: the task has no corrupted prompts. "
                         "Build it with a corruption scheme (--corruption) or add 'corrupted' fields.")
        return Plan(align=config.align, notes=tuple(notes))
    sweeps, axis = _positional(wanted, tok, config.align, notes)
    degenerate = gap is not None and abs(gap) < MIN_GAP
    # Faithfulness refuses a gap below 1e-4 of the metric's size (circuits.patch.normalise), which
    # can be wider than patching's absolute MIN_GAP when logit differences are large.
    no_circuit = gap is not None and (degenerate or not abs(gap) > CIRCUIT_REL_GAP * max(1.0, scale))
    circuit = config.circuit or None
    if degenerate:
        label = get_metric(metric).label
        notes.append(f"The clean and corrupted prompts give almost the same {label} (gap {gap:+.2g}, "
                     f"below {MIN_GAP:g}): there is nothing for a patch to restore, so patching values are "
                     "reported as degenerate (empty) and the raw metrics kept. Use a corruption that changes "
                     "the answer.")
    if no_circuit and circuit:
        notes.append("Circuit discovery was skipped: faithfulness is undefined when the corruption does "
                     f"not move the metric (gap {gap:+.2g}).")
        circuit = None
    reason = supports(model) if sweeps or circuit else None
    if circuit and reason:
        notes.append(f"Circuit discovery was skipped: its edge-graph forward does not cover this model "
                     f"({reason}). Patching and attribution still run.")
        circuit = None
    if reason and sweeps:
        notes.append(f"Exact patching uses the slower hook engine: the fast engine does not cover this model "
                     f"({reason}).")
    return Plan(sweeps, config.align, axis, bool(config.attribution and sweeps), circuit, degenerate, gap,
                tuple(notes))


def _positional(wanted: tuple[str, ...], tok: TokenizedTask, align: str,
                notes: list[str]) -> tuple[tuple[str, ...], str | None]:
    positional = [w for w in wanted if get_sweep(w).by_pos]
    if not positional:
        return wanted, None
    lengths = sorted({int(n) for n in tok.lengths})
    try:
        positions = sweep_positions(tok, align)
    except TaskError as e:
        if align != "auto":
            raise  # asked for explicitly: an error, and before any work
        kept = tuple(w for w in wanted if w not in positional)
        why = "no roles" if not tok.roles or not any(tok.roles) else f"roles that do not line up ({e})"
        fallback = ""
        if not kept:
            kept = (POSITION_FREE_FALLBACK,)
            fallback = f" The position-free '{POSITION_FREE_FALLBACK}' sweep was run instead."
        notes.append(f"The prompts have different token lengths ({_span(lengths)}) and {why}, so the sweeps "
                     f"by position ({', '.join(positional)}) were skipped.{fallback} Re-run with --align end "
                     "to sweep positions counted from each prompt's end, or give the examples roles.")
        return kept, None
    if positions.mode == "role" and len(lengths) > 1:
        notes.append(f"The prompts have different token lengths ({_span(lengths)}); sweeps by position are "
                     f"aligned by role ({', '.join(positions.labels)}).")
    elif positions.mode == "end":
        notes.append(f"Sweeps by position are aligned from each prompt's end: column -k is the k-th token "
                     f"before the last (END); {len(positions.labels)} columns, the shortest prompt's length. "
                     "Tokens at one offset may differ between prompts.")
    return wanted, positions.mode


def _span(lengths: list[int]) -> str:
    return ", ".join(map(str, lengths)) if len(lengths) <= 4 else f"{lengths[0]} to {lengths[-1]}"


def corrupted_view(tok: TokenizedTask) -> TokenizedTask:
    """The task with its corrupted prompts in place of the clean ones (for the corrupted baseline)."""
    assert tok.corrupted is not None
    return replace(tok, clean=tok.corrupted)


def check_options(config: Any, *, sweeps_flag: str = "--patch") -> None:
    """Refuse, before any model is loaded, what `run`'s options alone decide cannot work: its patching
    and circuit stages are checked as the same requests every other command builds (one set of checks).

    The messages name the flags of the command in hand (``sweeps_flag``: run's ``--patch``), not
    those of the command whose registry raised them first (patch's ``--what``).
    """
    metric = getattr(config, "metric", "logit_diff")
    if getattr(config, "patching", ()):
        sweep_request(config.patching, metric=metric, align=getattr(config, "align", "auto"), sweeps_flag=sweeps_flag,
                      none_skips=True)
    if getattr(config, "circuit", None):
        circuit_request(config.circuit, config.circuit_options, metric=metric, ig_steps=config.ig_steps,
                        target=config.circuit_target, level=getattr(config, "circuit_level", "edge"))


# ---------------------------------------------------------------------------------------------------------------
# What a command asks of the runner. Every front end (run, circuit, evaluate, patch, benchmark, mib) builds
# one Study; each request's constructor below checks every option against what its stage will do, before
# any model is loaded, and names the flag to change. The runner (pipeline) then loads once (load_study)
# and runs the requested stages.

PatchMethod = Literal["exact", "attribution", "both"]


@dataclass(frozen=True)
class CircuitRequest:
    """The circuit stage: a discovery method with its typed options, the selection, and the checks."""

    method: str
    options: Any
    selection: str = "target"
    target: float = DEFAULT_TARGET
    edges: int | None = None
    threshold: float | None = None
    by: str = "abs"
    prune: bool = True
    ablation: str = "corrupted"
    random_samples: int = DEFAULT_RANDOM_SAMPLES
    shortlist: int = DEFAULT_SHORTLIST
    batch_size: int | None = None
    # edge, or node: heads and MLPs chosen by node score, kept as their edge circuit (circuits.node_select);
    # ``nodes`` is top-n's count at node level.
    level: str = "edge"
    nodes: int | None = None

    def settings(self) -> dict[str, Any]:
        """What decides the circuit (a folder of other settings is replaced only with --force)."""
        # The level only where it is not the default, so folders written before it keep their settings.
        level = {} if self.level == "edge" else dict(level=self.level, nodes=self.nodes)
        return dict(method=self.method, options=self.options, selection=self.selection, target=self.target,
                    edges=self.edges, threshold=self.threshold, by=self.by, prune=self.prune, ablation=self.ablation,
                    random_samples=self.random_samples, shortlist=self.shortlist, **level)


def circuit_request(method: str, given: dict[str, Any], *, metric: str, ig_steps: int | None = None,
                    selection: str = "target", target: float = DEFAULT_TARGET, edges: int | None = None,
                    threshold: float | None = None, by: str = "abs", prune: bool = True, ablation: str = "corrupted",
                    random_samples: int = DEFAULT_RANDOM_SAMPLES, shortlist: int = DEFAULT_SHORTLIST,
                    batch_size: int | None = None, level: str = "edge", nodes: int | None = None) -> CircuitRequest:
    """A checked circuit request, or a ConfigError naming the flag, before any model is loaded."""
    from circuitwise.circuits.methods import check_metric
    from circuitwise.circuits.node_select import check_level
    from circuitwise.circuits.patch import check_ablation
    from circuitwise.circuits.select import SELECTIONS, Rank

    try:
        check_target(target)
    except ValueError as e:
        raise ConfigError(f"--circuit-target {e}.") from None
    # Only the options the method declares; a bad method or option fails here.
    options = circuit_method_options(method, given, ig_steps)
    check_metric(method, options, metric)  # eap at the clean run scores nothing under kl
    if selection not in SELECTIONS:
        raise ConfigError(f"Unknown --selection {selection!r}. Choose one of: {', '.join(SELECTIONS)}.")
    check_level(level)  # --level neuron is MIB's: refused with where to find it
    if level == "node" and edges is not None:
        raise ConfigError("--edges counts edges; at --level node give --nodes N (how many heads and MLPs to keep).")
    if level == "edge" and nodes is not None:
        raise ConfigError("--nodes counts heads and MLPs of a node-level circuit; add --level node, or give "
                          "--edges N for an edge circuit.")
    if selection == "top-n" and level == "node" and nodes is None:
        raise ConfigError("--selection top-n at --level node needs --nodes N (how many heads and MLPs to keep).")
    if selection == "top-n" and level == "edge" and edges is None:
        raise ConfigError("--selection top-n needs --edges N (how many edges to keep).")
    if selection == "threshold" and threshold is None:
        raise ConfigError("--selection threshold needs --threshold T (the score cut-off).")
    if threshold is not None and not math.isfinite(threshold):
        raise ConfigError(f"--threshold {threshold}: give a finite number (the score cut-off).")
    # A size or cut-off that the selection does not read would be dropped without a word.
    for flag, value, wants in (("--edges", edges, "top-n"), ("--nodes", nodes, "top-n"),
                               ("--threshold", threshold, "threshold")):
        if value is not None and selection != wants:
            grows = " (target grows the circuit until --circuit-target)" if selection == "target" else ""
            raise ConfigError(f"{flag} applies to --selection {wants} only, and --selection is {selection}{grows}. "
                              f"Add --selection {wants}, or leave out {flag}.")
    if by not in get_args(Rank):
        raise ConfigError(f"Unknown --by {by!r}. Choose one of: {', '.join(get_args(Rank))}.")
    check_ablation(ablation)
    return CircuitRequest(method, options, selection, target, edges, threshold, by, prune, ablation,
                          random_samples, shortlist, batch_size, level, nodes)


@dataclass(frozen=True)
class SweepRequest:
    """The patching stage: sweeps by name, exact and/or attribution, and how they are measured."""

    sweeps: tuple[str, ...] = PATCH_SWEEPS
    method: PatchMethod = "exact"
    direction: str = "denoise"
    normalize: bool = True
    align: str = "auto"
    batch_size: int | None = None

    def settings(self) -> dict[str, Any]:
        # Sweeps accumulate in one folder, so their names are not part of its settings.
        return dict(method=self.method, direction=self.direction, normalize=self.normalize, align=self.align)


def sweep_request(sweeps: list[str] | tuple[str, ...] | None, *, metric: str, method: str = "exact",
                  direction: str = "denoise", normalize: bool = True, align: str = "auto",
                  batch_size: int | None = None, sweeps_flag: str = "--patch",
                  none_skips: bool = False) -> SweepRequest:
    """A checked patching request, or a ConfigError naming the flag, before any model is loaded."""
    from circuitwise.patching.sweeps import SWEEPS, check_direction

    names = tuple(dict.fromkeys(sweeps)) if sweeps else PATCH_SWEEPS
    unknown = [w for w in names if w not in SWEEPS]
    if unknown:
        skip = f"; {sweeps_flag} none skips patching" if none_skips else ""
        raise ConfigError(f"Unknown patching sweep {unknown[0]!r}. Choose one of: {', '.join(SWEEPS)} "
                          f"({sweeps_flag} NAME, repeatable{skip}).")
    if method not in get_args(PatchMethod):
        raise ConfigError(f"Unknown --method {method!r}. Use exact, attribution or both.")
    check_direction(direction)
    if align not in get_args(RunConfig.model_fields["align"].annotation):
        raise ConfigError(f"Unknown --align {align!r}. Use token, role, end or auto.")
    if get_metric(metric).reference and direction == "noise" and method in ("attribution", "both"):
        # Noising takes attribution's gradient at the clean run, where kl is at its minimum: every estimate is 0.
        raise ConfigError(f"--metric {metric} has zero gradient at the clean run, so attribution patching with "
                          "--direction noise (its gradient there) estimates every cell 0. Use --direction denoise, "
                          "or --method exact.")
    return SweepRequest(names, method, direction, normalize, align, batch_size)  # type: ignore[arg-type]


@dataclass(frozen=True)
class BenchmarkRequest:
    """The benchmark stage: every named discovery method on the same prompts."""

    methods: tuple[str, ...]
    target: float = DEFAULT_TARGET
    ablation: str = "corrupted"
    batch_size: int | None = None

    def settings(self) -> dict[str, Any]:
        return dict(methods=self.methods, target=self.target, ablation=self.ablation)


def benchmark_request(methods: list[str] | None, *, target: float = DEFAULT_TARGET, ablation: str = "corrupted",
                      batch_size: int | None = None, metric: str | None = None) -> BenchmarkRequest:
    """A checked benchmark request, or a ConfigError naming the flag, before any model is loaded."""
    from circuitwise.circuits.patch import check_ablation
    from circuitwise.evaluation.benchmark import check_methods

    names = check_methods(methods, metric)  # --metric kl with only eap: refused before the model loads
    check_ablation(ablation)
    try:
        check_target(target)
    except ValueError as e:
        raise ConfigError(f"--circuit-target {e}.") from None
    return BenchmarkRequest(names, target, ablation, batch_size)


@dataclass(frozen=True)
class MIBRequest:
    """The mib command's submission: its methods, MIB's form (importance scores, or circuits at MIB's
    budgets ranked ``by``) and how edges outside a circuit are replaced."""

    methods: tuple[str, ...]
    form: SubmissionForm = "scores"
    by: Rank = "abs"
    ablation: str = "corrupted"
    level: SubmissionLevel = "edge"

    def settings(self) -> dict[str, Any]:
        """What decides every pair's files and numbers; the scores form keeps the keys it always had (its
        folders from before the circuit form and the levels existed resume)."""
        out = dict(ablation=self.ablation) if self.form == "scores" else dict(ablation=self.ablation,
                                                                              form=self.form, by=self.by)
        return out if self.level == "edge" else {**out, "level": self.level}


def mib_request(methods: list[str], *, form: str = "scores", by: str | None = None,
                ablation: str = "corrupted", level: str = "edge", metric: str | None = None) -> MIBRequest:
    """A checked mib request, or a ConfigError naming the flag, before any model is loaded."""
    from circuitwise.circuits.patch import check_ablation
    from circuitwise.circuits.select import Rank
    from circuitwise.evaluation.benchmark import check_methods, metric_refusal
    from circuitwise.evaluation.mib_submission import check_form, check_level

    names = check_methods(methods)
    # mib runs each method with its default options, so one that scores nothing under the metric (eap under
    # kl) would fail on its first pair, after the methods before it had run.
    refused = [f"{n}: {why}" for n in names if metric is not None and (why := metric_refusal(n, metric))]
    if refused:
        raise ConfigError(f"--metric {metric}: {'; '.join(refused)}. Leave it out of --circuit (mib runs each "
                          "method with its default options), or use another --metric.")
    check_ablation(ablation)
    form = check_form(form)
    lvl = check_level(level, form, names)
    if lvl != "edge" and ablation != "corrupted":
        raise ConfigError(f"--level {lvl} patches nodes and neurons from the corrupted run (MIB's patching "
                          "intervention); drop --ablation, or use --level edge.")
    if by is not None and form == "scores":
        raise ConfigError("--by ranks the edges of the circuits written with --form circuits; the scores form "
                          "writes every edge's score and MIB ranks them itself (signed for CPR, absolute for "
                          "CMD). Drop --by, or add --form circuits.")
    rank = by or "abs"
    if rank not in get_args(Rank):
        raise ConfigError(f"Unknown --by {rank!r}. Choose one of: {', '.join(get_args(Rank))}.")
    return MIBRequest(tuple(names), form, rank, ablation, lvl)  # type: ignore[arg-type]


# What the memory plan must fit, and how the loader names the work, per command.
_STAGES: dict[str, tuple[tuple[Stage, ...], str]] = {
    "circuit": (("edges", "evaluation"), "Circuit discovery"),
    "benchmark": (("edges", "evaluation"), "Circuit discovery"),
    "evaluate": (("evaluation",), "Circuit discovery"),
    "patch": (("patching",), "Patching"),
    "mib": (("edges", "evaluation"), "MIB's circuit track"),
}


@dataclass(frozen=True)
class Study:
    """One command's whole request: what to load (``config``: task, model, placement, precision, metric)
    and the stage(s) to run on it. Built by every front end and checked before any model is loaded."""

    config: RunConfig
    command: str
    circuit: CircuitRequest | None = None
    sweeps: SweepRequest | None = None
    benchmark: BenchmarkRequest | None = None

    @property
    def purpose(self) -> str:
        return _STAGES.get(self.command, ((), "This analysis"))[1]

    @property
    def memory_stages(self) -> tuple[Stage, ...]:
        return _STAGES.get(self.command, ((), ""))[0]

    def settings(self, **extra: Any) -> dict[str, Any]:
        """Everything that decides the command's numbers: its folder's settings marker."""
        cfg = self.config
        out: dict[str, Any] = dict(task=cfg.task, model=cfg.model, n=cfg.n, seed=cfg.seed, corruption=cfg.corruption,
                                   split=cfg.split, drop_invalid=cfg.drop_invalid, processing=cfg.processing,
                                   dtype=cfg.dtype, metric=cfg.metric)
        for request in (self.circuit, self.sweeps, self.benchmark):
            if request is not None:
                out.update(request.settings())
        return {**out, **extra}


def plan_study(study: Study, tok: TokenizedTask, model: Any) -> ResourcePlan | None:
    """The memory and time plan of a command's own stages (``study.memory_stages``), as `run` prints
    its plan: per stage, the most prompts a batch may hold within the budget (the engines choose their
    batch within it), the memory at that batch, and the estimated time over every prompt. None for a
    command without stages or a task left with no prompt."""
    stages = study.memory_stages
    if not stages or not len(tok):
        return None
    s, T, device = Shapes.from_model(model), int(tok.clean.shape[1]), model.W_E.device
    held = metric_held(study.config.metric, len(tok), model)
    budget = budget_of(model) - held
    circuit = study.circuit
    steps = int(getattr(circuit.options, "steps", 5) or 5) if circuit is not None else 5
    flops = None
    sweeps = study.sweeps
    if sweeps is not None and "patching" in stages:
        cfg = study.config.model_copy(update={"patching": tuple(sweeps.sweeps), "align": sweeps.align})
        # Exact sweeps cost their cells; attribution alone is one forward and backward per prompt pair.
        exact = exact_patching_flops(cfg, tok, model) if sweeps.method != "attribution" else 0.0
        attribution = seconds("attribution", s, T, len(tok), str(device), model.W_E.dtype) \
            if sweeps.method != "exact" else 0.0
        flops = exact + attribution * CONE_EFFICIENCY * flop_rate(str(device), model.W_E.dtype, min(s.d_model, 2048))
    prefer = (circuit.batch_size if circuit is not None else study.sweeps.batch_size if study.sweeps else None) \
        or len(tok)
    out = []
    for stage in stages:
        b = max(1, min(fit_batch(stage, s, T, budget, prefer, device), len(tok)))
        secs = seconds(stage, s, T, len(tok), str(device), model.W_E.dtype, steps=steps,
                       flops=flops if stage == "patching" else None)
        out.append(StagePlan(stage, b, estimate(stage, s, T, b, device) + held, secs))
    given = getattr(model, "circuitwise_max_memory", None) is not None
    return ResourcePlan(tuple(out), budget + held, given, str(device), str(model.W_E.dtype).removeprefix("torch."))


def study_config(command: str, **given: Any) -> RunConfig:
    """The loading half of ``command``'s options as a RunConfig (None: the config's default); a bad
    option is said with the command's name."""
    return RunConfig.build(for_command=command, **{k: v for k, v in given.items() if v is not None})


__all__ = ["BenchmarkRequest", "CircuitRequest", "MIBRequest", "Plan", "ResourcePlan", "StagePlan", "Study",
           "SweepRequest", "benchmark_request", "check_options", "choose_exact_cells", "circuit_request",
           "corrupted_view", "exact_patching_flops", "metric_held", "mib_request", "plan_resources", "plan_run",
           "plan_study",
           "reference_batch", "study_config", "sweep_request"]
