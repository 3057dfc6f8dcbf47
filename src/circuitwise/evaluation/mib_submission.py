"""A MIB circuit-track submission: every task × model × method, in MIB's folder layout, with CPR/CMD.

MIB's leaderboard (its README, "Submitting to the MIB Leaderboard") takes, per method, one folder
per task/model named ``{task}_{model}`` (``ioi_gpt2``, ``arc-easy_llama3``), each holding either
one ``.json``/``.pt`` file of importance scores for every edge, or one circuit per budget. This
writes the importance-score form, as MIB's own ``run_attribution.py`` does
(``{out}/{method}/{task}_{model}/importances.json``, EAP-IG's graph file: every edge scored and
in the graph; MIB re-selects by score), and beside the method folders a leaderboard of the CPR
and CMD each pair reaches (``leaderboard.json`` / ``.html``). Each pair's result is kept as it
is finished, so an interrupted submission resumes from the next pair.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from circuitwise.circuits import score_edges
from circuitwise.circuits.interop import check_exportable, export_eap_ig
from circuitwise.circuits.patch import Ablation
from circuitwise.circuits.scores import Progress, no_progress
from circuitwise.circuits.select import select_top_n
from circuitwise.evaluation.mib import mib_metrics
from circuitwise.tasks.tokenize import TokenizedTask

#: MIB's model names (its folder names) and the checkpoints they stand for (MIB_circuit_track/utils.py).
MIB_MODELS = {"gpt2": "gpt2", "qwen2.5": "Qwen/Qwen2.5-0.5B", "gemma2": "google/gemma-2-2b",
              "llama3": "meta-llama/Llama-3.1-8B"}
#: MIB's task names as its folders spell them.
MIB_TASK_NAMES = ("ioi", "mcqa", "arithmetic-addition", "arithmetic-subtraction", "arc-easy", "arc-challenge")
#: The one file per task/model folder (MIB's run_attribution.py writes this name).
IMPORTANCES = "importances.json"
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
    file: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def check_name(kind: str, name: str) -> None:
    """A task or model name usable in MIB's ``{task}_{model}`` folder names (raises ValueError)."""
    if not _PART.match(name):
        raise ValueError(f"{kind} name {name!r} must be letters, digits, '.' and '-' only (MIB's folders are "
                         f"{{task}}_{{model}}, e.g. ioi_gpt2)")


def pair_folder(out: Path, method: str, task: str, model: str) -> Path:
    return Path(out) / method / f"{task}_{model}"


def run_pair(model: Any, tok: TokenizedTask, *, method: str, task: str, model_name: str, out: Path,
             options: Any = None, metric: str = "logit_diff", ablation: Ablation = "corrupted",
             batch_size: int | None = None, progress: Progress = no_progress) -> PairResult:
    """Score every edge with ``method``, write MIB's importance file, and measure CPR and CMD."""
    t0 = time.perf_counter()
    scores = score_edges(model, tok, method, options, batch_size=batch_size, metric=metric, progress=progress)
    check_exportable(scores.graph)
    # Every edge in the graph with its score: MIB ranks by score and builds its own circuits per budget.
    every = select_top_n(scores, n=scores.graph.n_edges, prune=False)
    path = export_eap_ig(every, pair_folder(out, method, task, model_name) / IMPORTANCES)
    mib = mib_metrics(model, tok, scores, ablation=ablation, batch_size=batch_size, progress=progress, check=False)
    return PairResult(method, task, model_name, float(mib.cpr), float(mib.cmd), len(tok), scores.graph.n_edges,
                      time.perf_counter() - t0, str(path.relative_to(out)))


def check_layout(out: Path, methods: list[str]) -> list[str]:
    """What in ``out`` breaks MIB's submission rules (empty when the folder is ready to upload)."""
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
            files = [p.name for p in folder.iterdir() if not p.name.startswith(".")]
            graphs = [f for f in files if f.endswith((".json", ".pt"))]
            if len(graphs) != 1 or len(files) != 1:
                problems.append(f"{method}/{folder.name} holds {files or 'nothing'}; MIB takes one .json or .pt "
                                "file of importance scores")
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

__all__ = ["IMPORTANCES", "MIB_MODELS", "MIB_TASK_NAMES", "PairResult", "check_layout", "check_name", "leaderboard",
           "pair_folder", "read_done", "run_pair"]
