"""Every discovery method on one task: MIB's CPR and CMD, edges at a target faithfulness, seconds.

``benchmark(model, tok, methods)`` first plans (each named method is registered and can run on
this model, or it is skipped with a note, before any work), then per method: scores every edge
(timed: the ``seconds`` column is the scoring alone), measures MIB's circuit-track metrics on
those scores (:func:`~circuitwise.evaluation.mib.mib_metrics`: CPR from the signed ranking, CMD
from the absolute one) and the fewest top edges (absolute ranking, pruned) whose circuit reaches
the target faithfulness (:func:`~circuitwise.circuits.select.select_target`, as
``circuitwise circuit`` picks a circuit). All methods see the same prompts and the same ablation.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import plotly.graph_objects as go

from circuitwise.circuits.circuit import model_info
from circuitwise.circuits.graph import graph_of
from circuitwise.circuits.methods import METHODS, check_metric, get_method, score_edges
from circuitwise.circuits.patch import Ablation, check_ablation
from circuitwise.circuits.scores import EdgeScores, Progress, no_progress
from circuitwise.circuits.select import select_target
from circuitwise.errors import ConfigError
from circuitwise.evaluation.mib import MIBResult, mib_metrics
from circuitwise.metrics import prepared_for
from circuitwise.schema.benchmark import FORMAT, VERSION
from circuitwise.tasks.tokenize import TokenizedTask

Notes = Callable[[str], None]


def _no_notes(note: str) -> None:
    return None


@dataclass(frozen=True)
class MethodResult:
    """One method's row of the benchmark."""

    method: str
    config: dict[str, Any]  # the options the scores record (EdgeScores.config)
    seconds: float  # scoring every edge, wall clock
    mib: MIBResult
    target: float
    edges_at_target: int | None  # None: no prefix of the ranking reached the target
    faithfulness_at_target: float  # of that circuit (of the whole graph when not reached)

    @property
    def cpr(self) -> float:
        return self.mib.cpr

    @property
    def cmd(self) -> float:
        return self.mib.cmd

    def row(self) -> dict[str, Any]:
        """The table's numbers (console, page and JSON show these same values)."""
        return {"method": self.method, "cpr": self.cpr, "cmd": self.cmd, "edges_at_target": self.edges_at_target,
                "faithfulness_at_target": self.faithfulness_at_target, "seconds": self.seconds}

    def to_json(self) -> dict[str, Any]:
        return {**self.row(), "config": self.config, "target": self.target, "mib": self.mib.to_json()}


@dataclass(frozen=True)
class Skipped:
    method: str
    reason: str

    def to_json(self) -> dict[str, Any]:
        return {"method": self.method, "reason": self.reason}


@dataclass(frozen=True)
class BenchmarkPlan:
    """What a benchmark will run: the methods in order, and those skipped with why."""

    run: tuple[str, ...]
    skipped: tuple[Skipped, ...]


@dataclass(frozen=True)
class BenchmarkResult:
    task: str
    model: dict[str, Any]
    n_examples: int
    total_edges: int
    metric: str
    ablation: str
    target: float
    results: tuple[MethodResult, ...]
    skipped: tuple[Skipped, ...] = field(default_factory=tuple)

    def rows(self) -> list[dict[str, Any]]:
        return [r.row() for r in self.results]

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT, "version": VERSION, "task": self.task, "model": self.model,
            "n_examples": self.n_examples, "total_edges": self.total_edges, "metric": self.metric,
            "ablation": self.ablation, "target": self.target,
            "columns": {
                "cpr": "MIB's circuit performance ratio: area under faithfulness over the edge budgets, "
                       "signed ranking (higher is better)",
                "cmd": "MIB's circuit-model distance: area under |1 - faithfulness|, absolute ranking "
                       "(lower is better)",
                "edges_at_target": f"fewest top edges (absolute ranking, pruned) with faithfulness >= "
                                   f"{self.target:g}; null when no prefix reaches it",
                "seconds": "scoring every edge (wall clock); evaluation not included",
            },
            "methods": [r.to_json() for r in self.results],
            "skipped": [s.to_json() for s in self.skipped],
        }

    def figure(self) -> go.Figure:
        """Every method's MIB curves in one figure: absolute ranking solid, signed dashed."""
        fig = go.Figure()
        palette = ["#2166ac", "#b2182b", "#1b7837", "#762a83", "#e08214", "#35978f", "#8c510a", "#4d4d4d"]
        for i, r in enumerate(self.results):
            colour = palette[i % len(palette)]
            for curve, dash, label in ((r.mib.absolute, "solid", "absolute (CMD)"), (r.mib.signed, "dash", "signed (CPR)")):
                fig.add_trace(go.Scatter(
                    x=[100 * b for b in r.mib.budgets], y=curve.faithfulness, mode="lines+markers",
                    line=dict(color=colour, dash=dash), name=f"{r.method}, {label}", legendgroup=r.method,
                    customdata=curve.n_edges,
                    hovertemplate=f"{r.method}<br>%{{x}}% budget, %{{customdata}} edges after pruning<br>"
                                  "faithfulness %{y:.3f}<extra></extra>"))
        for y in (0.0, 1.0):
            fig.add_hline(y=y, line_width=1, line_color="#aaa", line_dash="dot")
        fig.add_hline(y=self.target, line_width=1, line_color="#d62728", line_dash="dash",
                      annotation_text=f"target {self.target:g}", annotation_position="bottom right")
        fig.update_layout(
            title=f"{self.task}: faithfulness at MIB's edge budgets ({self.ablation} ablation, "
                  f"{self.total_edges} edges, {self.n_examples} prompts)",
            xaxis_title="edge budget (% of all edges; top-n by score, then pruned)",
            yaxis_title="faithfulness (0 = empty circuit, 1 = full model)",
            template="plotly_white", height=480, margin=dict(l=60, r=20, t=60, b=60),
        )
        fig.update_xaxes(type="log")
        return fig

    def table(self) -> tuple[list[str], list[list[str]]]:
        """The table as text cells (the console's and the page's), from :meth:`rows`."""
        headers = ["method", "CPR ↑", "CMD ↓", f"edges at {self.target:g}", "faithfulness", "seconds"]
        cells = [[r["method"], fmt(r["cpr"]), fmt(r["cmd"]), edges_cell(r["edges_at_target"], self.total_edges),
                  fmt(r["faithfulness_at_target"]), f"{r['seconds']:.2f}"] for r in self.rows()]
        return headers, cells

    def summary(self) -> list[str]:
        lines = [f"{self.task}: {self.n_examples} prompts, {self.total_edges} edges, {self.ablation} ablation"]
        for r in self.rows():
            lines.append(f"{r['method']}: CPR {fmt(r['cpr'])}, CMD {fmt(r['cmd'])}, "
                         f"{edges_cell(r['edges_at_target'], self.total_edges)} edges at faithfulness "
                         f"{self.target:g}, {r['seconds']:.2f} s scoring")
        lines += [f"{s.method} skipped: {s.reason}" for s in self.skipped]
        return lines


def fmt(x: float | None) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.3f}"


def edges_cell(edges: int | None, total: int) -> str:
    return "not reached" if edges is None else f"{edges} ({edges / total:.1%})"


def cannot_run(name: str, model: Any, metric: str = "logit_diff") -> str | None:
    """Why registered method ``name`` cannot score ``model``'s whole graph under ``metric``, or None."""
    why_not = metric_refusal(name, metric)
    if why_not is not None:
        return why_not
    entry = METHODS[name]
    check = getattr(entry, "supports", None)  # a method may say for itself what it cannot run
    if callable(check):
        why = check(model)
        if why:
            return str(why)
    if name == "exact":
        from circuitwise.circuits.exact import MAX_EXACT_EDGES

        n = graph_of(model).n_edges
        if n > MAX_EXACT_EDGES:
            return f"exact patching takes one forward per edge and this model has {n} edges (limit {MAX_EXACT_EDGES})"
    if name == "acdc":
        from circuitwise.circuits.acdc import MAX_BENCHMARK_EDGES

        n = graph_of(model).n_edges
        if n > MAX_BENCHMARK_EDGES:
            return (f"ACDC tries the edges one by one (up to one forward each) and this model has {n} edges "
                    f"(benchmark limit {MAX_BENCHMARK_EDGES}; `circuitwise circuit --circuit acdc` runs it anyway)")
    return None


def metric_refusal(name: str, metric: str) -> str | None:
    """Why registered method ``name`` scores nothing under ``metric`` whatever the model, or None."""
    try:
        check_metric(name, METHODS[name].options(), metric)
    except ConfigError as e:
        return str(e).split(". Use")[0].removeprefix("--metric ")
    return None


def _none_can_run(skipped: Sequence[Skipped]) -> ConfigError:
    reasons = "; ".join(f"{s.method}: {s.reason}" for s in skipped)
    return ConfigError(f"None of the methods can run ({reasons}). Choose others with --circuit "
                       f"({', '.join(METHODS)}).")


def check_methods(methods: Sequence[str] | None, metric: str | None = None) -> tuple[str, ...]:
    """The methods to run (default: every registered one), each checked to be registered; with ``metric``,
    refused where none of them can score anything under it (no model needed to tell)."""
    names = tuple(METHODS) if methods is None else tuple(dict.fromkeys(methods))
    if not names:
        raise ConfigError(f"Name at least one method to benchmark: {', '.join(METHODS)}.")
    for name in names:
        get_method(name)  # an unknown name is a ConfigError listing the registered ones
    if metric is not None:
        refused = [Skipped(n, why) for n in names if (why := metric_refusal(n, metric)) is not None]
        if len(refused) == len(names):
            raise _none_can_run(refused)
    return names


def plan_benchmark(model: Any, methods: Sequence[str] | None = None, metric: str = "logit_diff") -> BenchmarkPlan:
    """Decide, before any work, which methods run and which are skipped (and why)."""
    names = check_methods(methods)
    run, skipped = [], []
    for name in names:
        why = cannot_run(name, model, metric)
        if why is None:
            run.append(name)
        else:
            skipped.append(Skipped(name, why))
    if not run:
        raise _none_can_run(skipped)
    return BenchmarkPlan(tuple(run), tuple(skipped))


def benchmark(
    model: Any,
    tok: TokenizedTask,
    methods: Sequence[str] | None = None,
    *,
    target: float = 0.9,
    ablation: Ablation = "corrupted",
    metric: str = "logit_diff",
    batch_size: int | None = None,
    progress: Progress = no_progress,
    notes: Notes = _no_notes,
) -> BenchmarkResult:
    """Run ``methods`` (default: all registered) on the same task; see the module docstring."""
    check_ablation(ablation)
    if isinstance(target, bool) or not isinstance(target, (int, float)) or not 0 < target <= 1:
        raise ConfigError(f"The target faithfulness must be in (0, 1], got {target!r} (0.9 is usual).")
    plan = plan_benchmark(model, methods, metric)
    tok = prepared_for(model, tok, metric)  # kl's reference once, not once per method
    for s in plan.skipped:
        notes(f"{s.method} skipped: {s.reason}.")
    results = []
    for name in plan.run:
        def step(done: int, total: int, what: str, name: str = name) -> None:
            progress(done, total, what if what.startswith(name) else f"{name}: {what}")

        t0 = time.perf_counter()
        scores: EdgeScores = score_edges(model, tok, name, batch_size=batch_size, metric=metric, progress=step)
        seconds = time.perf_counter() - t0
        mib = mib_metrics(model, tok, scores, ablation=ablation, batch_size=batch_size, progress=step, check=False)
        circuit = select_target(scores, model=model, tok=tok, target=target, by="abs", ablation=ablation,
                                batch_size=batch_size, progress=step, check=False)
        sel = circuit.selection
        results.append(MethodResult(
            method=name, config=dict(scores.config), seconds=seconds, mib=mib, target=float(target),
            edges_at_target=circuit.n_edges if sel["reached"] else None,
            faithfulness_at_target=float(sel["faithfulness"]),
        ))
    graph = graph_of(model)
    return BenchmarkResult(task=tok.task.name, model=model_info(model), n_examples=len(tok),
                           total_edges=graph.n_edges, metric=metric, ablation=ablation, target=float(target),
                           results=tuple(results), skipped=plan.skipped)


__all__ = ["BenchmarkPlan", "BenchmarkResult", "FORMAT", "MethodResult", "Skipped", "VERSION", "benchmark",
           "cannot_run", "check_methods", "edges_cell", "fmt", "metric_refusal", "plan_benchmark"]
