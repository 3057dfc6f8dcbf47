"""A MIB circuit-track submission: every task × model × method, in MIB's folder layout, with CPR/CMD.

MIB's leaderboard (its README, "Submitting to the MIB Leaderboard") takes, per method, one folder
per task/model named ``{task}_{model}`` (``ioi_gpt2``, ``arc-easy_llama3``), each holding either
one ``.json``/``.pt`` file of importance scores for every edge, or one circuit per budget. Both
forms are written (``form``):

- ``scores``: as MIB's own ``run_attribution.py`` does, ``{out}/{method}/{task}_{model}/importances.json``
  (EAP-IG's graph file: every edge scored and in the graph; MIB re-selects by score).
- ``circuits``: nine EAP-IG graph files per folder, ``circuit_{p}pct.json``, one per budget p of MIB's
  README (0.1, 0.2, 0.5, 1, 2, 5, 10, 20 and 50 % of the graph's edges; its list also names 0, but it
  asks for 9 files, and the 0 % and 100 % circuits are the same for every method). The circuit at p is
  what MIB's ``evaluate_area_under_curve`` builds at that budget: the top ``int(p/100 · E)`` edges of
  one ranking (``by``), then pruned to the edges on some input → logits path — fully:
  ``apply_topn(prune=True)`` at the commit MIB pins stops one pass short and keeps a few dangling edges
  (circuitwise.circuits.prune.one_pass_prune), which change no metric but count against the budget.
  The nodes' ``in_graph`` follow EAP-IG's rule on those edges, so the ``prune()`` MIB's
  ``evaluate_graph`` runs on a loaded file removes nothing. Each file also carries every edge's
  score, as ``Graph.to_json`` writes them (the pinned ``Graph.from_json`` reads a score for every
  edge and fails without one). MIB's README names no file names; its rule is on the edge counts,
  which :func:`check_layout` checks. The pair's CPR and CMD are then those of these nine circuits'
  faithfulness curve, with the full model (f = 1) at 100 % as MIB's last budget: one ranking gives
  both (in the scores form CPR reads the signed ranking and CMD the absolute one).

At ``level="node"`` or ``"neuron"`` (MIB's ``run_attribution.py --level``; scores form only) the file holds
node or neuron scores (:mod:`circuitwise.circuits.neurons`, ``eap`` / ``eap-ig``) and the pair's CPR and CMD
are MIB's unit-level ones (:mod:`circuitwise.evaluation.mib_units`). A neuron-level file is
``importances.pt``: the pinned ``Graph.from_json`` gives every head of a layer its last head's neurons.

Beside the method folders a leaderboard of the CPR and CMD each pair reaches (``leaderboard.json`` /
``.html``). Each pair's result is kept as it is finished, so an interrupted submission resumes from
the next pair.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal, get_args

import torch

from circuitwise.circuits import score_edges
from circuitwise.circuits.circuit import Circuit, model_info
from circuitwise.circuits.interop import check_exportable, export_eap_ig, read_graph_file
from circuitwise.circuits.neurons import score_neurons, write_unit_graph
from circuitwise.circuits.patch import Ablation, normalise, patched_metrics
from circuitwise.circuits.prune import one_pass_prune, prune_dangling
from circuitwise.circuits.scores import EdgeScores, Progress, no_progress, prepare
from circuitwise.circuits.select import Rank, select_top_n, top_edges
from circuitwise.errors import ConfigError
from circuitwise.evaluation.mib import MIB_BUDGETS, area_from_1, area_under, mib_metrics
from circuitwise.evaluation.mib_units import mib_unit_metrics
from circuitwise.tasks.tokenize import TokenizedTask

#: MIB's model names (its folder names) and the checkpoints they stand for (MIB_circuit_track/utils.py).
MIB_MODELS = {"gpt2": "gpt2", "qwen2.5": "Qwen/Qwen2.5-0.5B", "gemma2": "google/gemma-2-2b",
              "llama3": "meta-llama/Llama-3.1-8B"}
#: MIB's task names as its folders spell them.
MIB_TASK_NAMES = ("ioi", "mcqa", "arithmetic-addition", "arithmetic-subtraction", "arc-easy", "arc-challenge")
#: The one file per task/model folder (MIB's run_attribution.py writes this name).
IMPORTANCES = "importances.json"
#: The two forms MIB's README accepts per task/model folder: importance scores, or a circuit per budget.
SubmissionForm = Literal["scores", "circuits"]
FORMS: tuple[SubmissionForm, ...] = get_args(SubmissionForm)
#: What a score is given to: every edge (MIB's default), every node, or every output dimension of every node.
SubmissionLevel = Literal["edge", "node", "neuron"]
LEVELS: tuple[SubmissionLevel, ...] = get_args(SubmissionLevel)
#: The methods that score nodes and neurons (circuits.neurons; MIB's attribute_node has EAP and EAP-IG-inputs).
UNIT_METHODS = ("eap", "eap-ig")
#: The circuit form's budgets (fractions of the graph's edges): MIB's evaluation budgets but the full model.
CIRCUIT_BUDGETS: tuple[float, ...] = MIB_BUDGETS[:-1]
# A folder name MIB's checker can split into task and model: one underscore, no path characters.
_PART = re.compile(r"^[A-Za-z0-9.\-]+$")


@dataclass(frozen=True)
class PairResult:
    """One method on one task and model: MIB's two numbers and what they were computed on."""

    method: str
    task: str
    model: str
    cpr: float
    cmd: float
    n_examples: int
    total_edges: int
    seconds: float
    file: str  # the importance file, or (circuits) the pair's folder, relative to the submission
    form: SubmissionForm = "scores"
    # The circuit form only: the ranking, and per budget the edges taken, kept after pruning, what MIB's
    # pinned apply_topn would keep (one prune pass), and the faithfulness.
    by: Rank | None = None
    edges_taken: list[int] | None = None
    edges: list[int] | None = None
    mib_edge_count: list[int] | None = None
    faithfulness: list[float] | None = None
    # Node or neuron scores (None: edges) and how many units MIB's budgets are fractions of.
    level: SubmissionLevel | None = None
    total_units: int | None = None
    # The model's fingerprint (models.fingerprint), so a resume on another checkpoint of the same name is
    # caught (absent in state files written before it).
    fingerprint: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        return d if self.form == "circuits" else {k: v for k, v in d.items() if v is not None}


def check_name(kind: str, name: str) -> None:
    """A task or model name usable in MIB's ``{task}_{model}`` folder names (raises ValueError)."""
    if not _PART.match(name):
        raise ValueError(f"{kind} name {name!r} must be letters, digits, '.' and '-' only (MIB's folders are "
                         f"{{task}}_{{model}}, e.g. ioi_gpt2)")


def pair_folder(out: Path, method: str, task: str, model: str) -> Path:
    return Path(out) / method / f"{task}_{model}"


def check_form(form: str) -> SubmissionForm:
    if form not in FORMS:
        raise ConfigError(f"--form {form!r}: MIB takes importance scores ('scores', one file per task/model) "
                          "or circuits ('circuits', one per edge budget); give one of those.")
    return form  # type: ignore[return-value]


def check_level(level: str, form: str, methods: tuple[str, ...] | list[str]) -> SubmissionLevel:
    """``level`` checked against the form and the methods, before any work."""
    if level not in LEVELS:
        raise ConfigError(f"--level {level!r}: MIB scores edges, nodes or neurons; give one of {', '.join(LEVELS)}.")
    if level != "edge":
        if form != "scores":
            raise ConfigError(f"--level {level} writes {level} scores (MIB's importance form); --form circuits holds "
                              "edge circuits at MIB's edge budgets. Drop --form circuits, or use --level edge.")
        other = [m for m in methods if m not in UNIT_METHODS]
        if other:
            raise ConfigError(f"--level {level}: {other[0]} scores edges only; {level}s are scored by "
                              f"{' and '.join(UNIT_METHODS)} (as MIB's attribute_node).")
    return level  # type: ignore[return-value]


def importances_file(level: SubmissionLevel = "edge") -> str:
    """The scores form's one file: ``importances.json``, or ``importances.pt`` for neurons (module docstring)."""
    return "importances.pt" if level == "neuron" else IMPORTANCES


def circuit_file(budget: float) -> str:
    """``circuit_0.1pct.json`` … ``circuit_50pct.json``: the budget as MIB's README writes it, in percent."""
    return f"circuit_{round(budget * 100, 6):g}pct.json"


def pair_files(form: SubmissionForm, level: SubmissionLevel = "edge") -> list[str]:
    """What a finished pair folder holds."""
    return [importances_file(level)] if form == "scores" else [circuit_file(b) for b in CIRCUIT_BUDGETS]


def pair_done(folder: Path, form: SubmissionForm, level: SubmissionLevel = "edge") -> bool:
    return all((folder / f).is_file() for f in pair_files(form, level))


def clear_other_form(folder: Path, form: SubmissionForm, level: SubmissionLevel = "edge") -> None:
    """Remove the other form's (or level's) files from a pair folder (left by a run replaced with --force):
    MIB takes one form per folder."""
    other = next(f for f in FORMS if f != form)
    stale = set(pair_files(other)) | {importances_file(v) for v in LEVELS} - set(pair_files(form, level))
    for name in stale:
        (folder / name).unlink(missing_ok=True)


def budget_circuits(scores: EdgeScores, by: Rank) -> tuple[list[int], torch.Tensor]:
    """Per circuit budget, the edges taken (``int(b · E)``, MIB's) and the pruned circuit ``[budget, edge]``."""
    taken = [int(b * scores.graph.n_edges) for b in CIRCUIT_BUDGETS]
    return taken, torch.stack([prune_dangling(scores.graph, top_edges(scores, k, by)) for k in taken])


def run_pair(model: Any, tok: TokenizedTask, *, method: str, task: str, model_name: str, out: Path,
             options: Any = None, metric: str = "logit_diff", ablation: Ablation = "corrupted",
             batch_size: int | None = None, progress: Progress = no_progress, form: SubmissionForm = "scores",
             by: Rank = "abs", level: SubmissionLevel = "edge") -> PairResult:
    """Score every edge with ``method``, write MIB's importance file (or its circuits at MIB's budgets,
    ranked ``by``), and measure CPR and CMD; at ``level`` node or neuron, every node or neuron."""
    t0 = time.perf_counter()
    check_level(level, form, [method])
    if level == "node" or level == "neuron":
        return _units_pair(model, tok, method=method, task=task, model_name=model_name, out=out, options=options,
                           metric=metric, ablation=ablation, batch_size=batch_size, progress=progress, level=level,
                           t0=t0)
    scores = score_edges(model, tok, method, options, batch_size=batch_size, metric=metric, progress=progress)
    check_exportable(scores.graph)
    clear_other_form(pair_folder(out, method, task, model_name), check_form(form))
    if form == "circuits":
        return _circuits_pair(model, tok, scores, method=method, task=task, model_name=model_name, out=out,
                              ablation=ablation, batch_size=batch_size, progress=progress, by=by, t0=t0)
    # Every edge in the graph with its score: MIB ranks by score and builds its own circuits per budget.
    # The model's d_model goes into the file's cfg: EAP-IG's Graph.from_json fails without it.
    every = select_top_n(scores, n=scores.graph.n_edges, prune=False, model=model)
    path = export_eap_ig(every, pair_folder(out, method, task, model_name) / IMPORTANCES)
    mib = mib_metrics(model, tok, scores, ablation=ablation, batch_size=batch_size, progress=progress, check=False)
    return PairResult(method, task, model_name, float(mib.cpr), float(mib.cmd), len(tok), scores.graph.n_edges,
                      time.perf_counter() - t0, str(path.relative_to(out)))


def _units_pair(model: Any, tok: TokenizedTask, *, method: str, task: str, model_name: str, out: Path, options: Any,
                metric: str, ablation: Ablation, batch_size: int | None, progress: Progress,
                level: Literal["node", "neuron"], t0: float) -> PairResult:
    """The node / neuron level of :func:`run_pair`: the scores file and MIB's unit-level CPR and CMD."""
    if ablation != "corrupted":
        raise ConfigError(f"--level {level} patches units from the corrupted run (MIB's patching); drop --ablation.")
    if options is not None and not isinstance(options, Mapping):
        raise ConfigError(f"--level {level} takes the neuron scores' options as a mapping (circuits.neurons."
                          f"NeuronOptions' fields), not {type(options).__name__}.")
    opts = dict(options or {})
    scores = score_neurons(model, tok, {"method": method, **opts}, batch_size=batch_size, metric=metric,
                           progress=progress)
    check_exportable(scores.graph)
    folder = pair_folder(out, method, task, model_name)
    clear_other_form(folder, "scores", level)
    path = write_unit_graph(folder / importances_file(level), scores, level=level)
    mib = mib_unit_metrics(model, tok, scores, level=level, batch_size=batch_size, progress=progress, check=False)
    return PairResult(method, task, model_name, float(mib.cpr), float(mib.cmd), len(tok), scores.graph.n_edges,
                      time.perf_counter() - t0, str(path.relative_to(out)), level=level, total_units=mib.total_units)


def _circuits_pair(model: Any, tok: TokenizedTask, scores: EdgeScores, *, method: str, task: str, model_name: str,
                   out: Path, ablation: Ablation, batch_size: int | None, progress: Progress, by: Rank,
                   t0: float) -> PairResult:
    """The circuit form of :func:`run_pair`: the nine circuits written, CPR and CMD of their one curve."""
    graph = scores.graph
    taken, kept = budget_circuits(scores, by)
    folder = pair_folder(out, method, task, model_name)
    info = model_info(model)
    for b, k, edges in zip(CIRCUIT_BUDGETS, taken, kept, strict=True):
        circuit = Circuit(graph, edges, scores.scores.clone(), scores.method,
                          {"kind": "mib-budget", "budget": b, "n": k, "by": by, "pruned": True,
                           "edges_before_pruning": k},
                          info, tok.task.name, scores.metric)
        export_eap_ig(circuit, folder / circuit_file(b))
    # The empty circuit, the nine, the full model (MIB's 100 % budget): one stack of patched forwards.
    masks = torch.cat([torch.zeros(1, graph.n_edges, dtype=torch.bool), kept,
                       torch.ones(1, graph.n_edges, dtype=torch.bool)])
    prep = prepare(model, tok, scores.metric, check=False, batch_size=batch_size)
    pm = patched_metrics(prep, masks, ablation=ablation, batch_size=prep.batch_size, progress=progress,
                         what="MIB budget circuits")
    means = pm.patched.mean(1).double()
    f = normalise(means[1:], float(pm.clean.mean()), float(means[0])).tolist()
    mib_count = one_pass_prune(graph, torch.stack([top_edges(scores, k, by) for k in taken])).sum(1).tolist()
    return PairResult(method, task, model_name, float(area_under(f)), float(area_from_1(f)), len(tok),
                      graph.n_edges, time.perf_counter() - t0, str(folder.relative_to(out)), "circuits", by,
                      taken, [int(x) for x in kept.sum(1)], [int(x) for x in mib_count], f)


def check_circuits(folder: Path, files: list[str]) -> list[str]:
    """MIB's rule for a folder of circuits: nine EAP-IG graph files, and for each budget b of
    :data:`CIRCUIT_BUDGETS` its own circuit with at most ``b · E`` edges in the graph (E: every edge of
    the file's graph). Circuits are matched to budgets smallest to smallest, which finds a match
    whenever one exists; the names do not matter to MIB."""
    where = f"{folder.parent.name}/{folder.name}"
    counts = []
    for f in files:
        try:
            kind, graph = read_graph_file(folder / f)
        except ConfigError as e:
            return [f"{where}/{f} is not an EAP-IG graph file MIB can load: {e}"]
        if kind != "eap-ig":
            return [f"{where}/{f} is a circuitwise circuit.json; MIB takes EAP-IG graph files (Graph.to_json / .pt)"]
        counts.append((int(graph.in_graph.sum()), graph.in_graph.numel(), f))
    problems = []
    for b, (n, total, f) in zip(CIRCUIT_BUDGETS, sorted(counts), strict=True):
        if n > b * total:
            problems.append(f"{where}: no circuit left for the {b * 100:g} % budget (at most {int(b * total)} of "
                            f"{total} edges) once the smaller budgets have theirs; the smallest remaining, {f}, "
                            f"has {n}. MIB wants one circuit within each of its {len(CIRCUIT_BUDGETS)} budgets")
            break
    return problems


def check_layout(out: Path, methods: list[str]) -> list[str]:
    """What in ``out`` breaks MIB's submission rules (empty when the folder is ready to upload): per
    task/model folder one importance file, or nine circuits within MIB's budgets."""
    problems: list[str] = []
    tasks, models = set(), set()
    for method in methods:
        root = Path(out) / method
        if not root.is_dir():
            problems.append(f"{method}/ is missing")
            continue
        for folder in sorted(root.iterdir()):
            if not folder.is_dir():
                problems.append(f"{method}/{folder.name} is a file; a method folder holds only task_model folders")
                continue
            task, sep, model = folder.name.partition("_")
            if not sep or not _PART.match(task) or not _PART.match(model):
                problems.append(f"{method}/{folder.name} is not named {{task}}_{{model}}")
            else:
                tasks.add(task)
                models.add(model)
            files = sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))
            graphs = [f for f in files if f.endswith((".json", ".pt"))]
            if len(graphs) == len(CIRCUIT_BUDGETS) == len(files):
                problems += check_circuits(folder, files)
            elif len(graphs) != 1 or len(files) != 1:
                problems.append(f"{method}/{folder.name} holds {files or 'nothing'}; MIB takes one .json or .pt "
                                f"file of importance scores, or {len(CIRCUIT_BUDGETS)} circuits (one per budget)")
    if len(tasks) < 2 or len(models) < 2:
        problems.append(f"MIB ranks submissions of at least 2 tasks and 2 models; this one has {len(tasks)} task(s) "
                        f"and {len(models)} model(s) (fine for a look, not for the leaderboard)")
    return problems


def leaderboard(results: list[PairResult]) -> dict[str, Any]:
    """Per method, CPR (higher is better) and CMD (lower is better) for each ``task_model``, as MIB's table."""
    columns = sorted({f"{r.task}_{r.model}" for r in results})
    rows = {}
    for method in sorted({r.method for r in results}):
        mine = {f"{r.task}_{r.model}": r for r in results if r.method == method}
        rows[method] = {c: {"cpr": mine[c].cpr, "cmd": mine[c].cmd} if c in mine else None for c in columns}
    return {"columns": columns, "methods": rows, "pairs": [r.to_json() for r in results]}


def read_done(path: Path) -> dict[tuple[str, str, str], PairResult]:
    """Pairs finished by an earlier (interrupted) run, from its state file."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    done = {}
    for d in data.get("pairs", []) if isinstance(data, dict) else []:
        try:
            r = PairResult(**d)
        except TypeError:
            continue
        done[(r.method, r.task, r.model)] = r
    return done


Notes = Callable[[str], None]

__all__ = ["CIRCUIT_BUDGETS", "FORMS", "IMPORTANCES", "LEVELS", "MIB_MODELS", "MIB_TASK_NAMES", "PairResult",
           "SubmissionForm", "SubmissionLevel", "UNIT_METHODS", "budget_circuits", "check_circuits", "check_form",
           "check_layout", "check_level", "check_name", "circuit_file", "clear_other_form", "importances_file",
           "leaderboard", "pair_done", "pair_files", "pair_folder", "read_done", "run_pair"]
