"""Writing a circuit study to a folder: circuit.json, scores.json, evaluation.json, circuit.html.

The files are staged and swapped in whole (:mod:`circuitwise.runfolder`), so the folder holds
either the previous study or this one. ``circuit.html`` is self-contained: plotly.js is inlined
once, nothing loads from a CDN. (Moved here from ``evaluation/outputs.py``: every page is
rendered in ``reports/``; the evaluation's summary sentences stay in ``evaluation.outputs``.)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import plotly.graph_objects as go
from markupsafe import Markup

from circuitwise.circuits.circuit import Circuit
from circuitwise.circuits.scores import EdgeScores
from circuitwise.evaluation.evaluate import CircuitEvaluation
from circuitwise.evaluation.outputs import summary_lines
from circuitwise.reports.explorer import explorer_data, explorer_html
from circuitwise.reports.html import render
from circuitwise.reports.style import plotly_js
from circuitwise.runfolder import RunFolder
from circuitwise.schema.circuit import CircuitFile
from circuitwise.schema.results import Evaluation
from circuitwise.schema.study import EvaluationFile, ScoresFile
from circuitwise.types import nan_to_none


def prepare_dir(out: Path) -> Path:
    """Refuse, before any work, an --out that is a file or holds files circuitwise did not write."""
    out = Path(out)
    RunFolder(out).check()
    return out


def figures_html(figures: dict[str, go.Figure], title: str, summary: list[str],
                 stability: dict[str, Any] | None = None, explorer: str = "") -> str:
    """circuit.html: the study's figures and summary, plotly.js inlined once (templates/study/circuit.html);
    ``stability``: ``EdgeStability.to_json()``, drawn as a table of the circuit's edges; ``explorer``
    (:func:`explorer.explorer_html`) replaces the static drawing of the circuit."""
    figs = [(name, fig) for name, fig in figures.items() if not (explorer and name == "circuit")]
    return render("study/circuit.html", title=title, summary=summary, figures=figs,
                  plotly_js=Markup(plotly_js()), stability=stability, explorer=Markup(explorer))


def study_explorer(circuit: dict[str, Any], evaluation: CircuitEvaluation) -> str:
    """The explorer of a circuit study, from the files it writes: circuit.json's data and the evaluation."""
    data = explorer_data(circuit=CircuitFile.model_validate(circuit),
                         evaluation=Evaluation.model_validate(nan_to_none(evaluation.to_json())))
    return explorer_html(data)


def study_folder(out: Path, source: Path | None = None) -> RunFolder:
    """The staged, locked folder a circuit study is written to (enter it before the work starts)."""
    out = Path(out)
    names = {"evaluation.json", "circuit.html"}
    if source is None or not _same_file(Path(source), out / "circuit.json"):
        # A new circuit: its scores (or none) replace the earlier circuit's.
        names |= {"circuit.json", "scores.json"}
    return RunFolder(out, replaces=names)


def circuit_file(circuit: Circuit, evaluation: CircuitEvaluation) -> dict[str, Any]:
    """circuit.json's content, validated: the circuit, and MIB's metrics of the scores that chose it."""
    mib = {"mib": evaluation.mib.to_json()} if evaluation.mib is not None else {}
    stab = {"stability": evaluation.stability.to_json()} if evaluation.stability is not None else {}
    data = {**circuit.to_json(), **mib, **stab}
    CircuitFile.model_validate(data)
    return data


def scores_file(scores: EdgeScores, model: dict[str, Any] | None = None) -> dict[str, Any]:
    """scores.json's content, validated: the header, then every edge's score and the method's options,
    and ``model`` (``circuits.circuit.model_info``: the model they were scored on, with its fingerprint)."""
    data = {"format": ScoresFile.FORMAT, "schema_version": ScoresFile.VERSION, **scores.to_json(),
            **({} if model is None else {"model": model})}
    ScoresFile.model_validate(data)
    return data


def evaluation_file(evaluation: CircuitEvaluation, extra: dict[str, Any] | None = None,
                    model: dict[str, Any] | None = None) -> dict[str, Any]:
    """evaluation.json's content, validated: the header, the evaluation, what the command adds, and
    ``model`` (the model it was measured on, with its fingerprint)."""
    figures = {name: json.loads(fig.to_json()) for name, fig in evaluation.figures().items()}
    data = {"format": EvaluationFile.FORMAT, "schema_version": EvaluationFile.VERSION, **evaluation.to_json(),
            "figures": figures, **(extra or {}), **({} if model is None else {"model": model})}
    EvaluationFile.model_validate(data)
    return data


def write_outputs(out: Path, circuit: Circuit, evaluation: CircuitEvaluation, scores: EdgeScores | None = None,
                  extra: dict[str, Any] | None = None, *, source: Path | None = None,
                  folder: RunFolder | None = None, model: dict[str, Any] | None = None) -> dict[str, Path]:
    """Write the study's files into ``out``, whole, and return their paths.

    ``model``: the model the evaluation was measured on (``circuits.circuit.model_info``), recorded in
    scores.json and evaluation.json as circuit.json records it; default the circuit's own.

    ``source``: the circuit.json the circuit was read from (``evaluate``). It is never rewritten:
    ``out`` gets a byte-for-byte copy, or keeps it as it is when it already lives there.
    ``folder``: a :func:`study_folder` the caller entered before its work (it is committed here).
    """
    out = Path(out)
    if folder is None:
        with study_folder(out, source) as own:
            return write_outputs(out, circuit, evaluation, scores, extra, source=source, folder=own, model=model)
    if source is None:
        cdata = circuit_file(circuit, evaluation)
        folder.write_json("circuit.json", cdata)
    else:
        cdata = json.loads(Path(source).read_text(encoding="utf-8"))
        if "circuit.json" in folder.replaces:
            folder.write_text("circuit.json", Path(source).read_bytes())
    measured = model if model is not None else (circuit.model or None)
    if scores is not None:
        folder.write_json("scores.json", scores_file(scores, measured))
    folder.write_json("evaluation.json", evaluation_file(evaluation, extra, measured))
    title = f"Circuit for {circuit.task or 'task'} ({circuit.method or 'circuit'})"
    stability = evaluation.stability.to_json() if evaluation.stability is not None else None
    folder.write_text("circuit.html", figures_html(evaluation.figures(), title, summary_lines(evaluation), stability,
                                                   study_explorer(cdata, evaluation)))
    folder.commit()
    paths = {"circuit": out / "circuit.json", "evaluation": out / "evaluation.json", "html": out / "circuit.html"}
    if scores is not None:
        paths["scores"] = out / "scores.json"
    return paths


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.exists() and b.exists() and a.samefile(b)
    except OSError:
        return False


__all__ = ["evaluation_file", "figures_html", "prepare_dir", "scores_file", "study_explorer", "study_folder",
           "write_outputs"]
