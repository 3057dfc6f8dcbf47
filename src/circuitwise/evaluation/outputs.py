"""Writing a circuit study to a folder: circuit.json, scores.json, evaluation.json, circuit.html.

``circuit.html`` is self-contained: plotly.js is inlined once, nothing loads from a CDN.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

import plotly.graph_objects as go

from circuitwise.circuits.circuit import Circuit
from circuitwise.circuits.scores import EdgeScores
from circuitwise.errors import ConfigError
from circuitwise.evaluation.evaluate import CircuitEvaluation


def _write(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def prepare_dir(out: Path) -> Path:
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file; give a folder (it is created if missing).")
    out.mkdir(parents=True, exist_ok=True)
    return out


def figures_html(figures: dict[str, go.Figure], title: str, summary: list[str]) -> str:
    parts = []
    for i, fig in enumerate(figures.values()):
        parts.append(fig.to_html(full_html=False, include_plotlyjs=(i == 0)))
    items = "".join(f"<li>{html.escape(s)}</li>" for s in summary)
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title></head>"
            f"<body style='font-family:sans-serif;max-width:1100px;margin:auto'><h1>{html.escape(title)}</h1>"
            f"<ul>{items}</ul>{''.join(parts)}</body></html>")


def summary_lines(ev: CircuitEvaluation) -> list[str]:
    f = ev.faithfulness
    lines = [
        f"{f.n_edges} of {f.total_edges} edges ({f.edge_fraction:.2%})",
        f"faithfulness {f.faithfulness:.3f} ({f.ablation} ablation); keeps {f.kept_fraction:.1%} of the clean "
        f"metric ({f.circuit_metric:+.3f} of {f.clean_metric:+.3f}; corrupted {f.corrupted_metric:+.3f})",
        f"complement alone: faithfulness {ev.completeness.complement.faithfulness:.3f} "
        f"(completeness {ev.completeness.completeness:.3f})",
    ]
    if ev.random is not None:
        lines.append(f"random circuits of the same size: {ev.random.mean:.3f} ± {ev.random.std:.3f} "
                     f"(p = {ev.random.p_value:.3g}, {len(ev.random.random_faithfulness)} samples)")
    if ev.agreement is not None:
        a = ev.agreement
        lines.append(f"{a.method} vs exact patching on the top {len(a.edges)} edges: Spearman {a.spearman:.3f}, "
                     f"Pearson {a.pearson:.3f}, same sign {a.sign_agreement:.0%}")
    return lines


def write_outputs(out: Path, circuit: Circuit, evaluation: CircuitEvaluation, scores: EdgeScores | None = None,
                  extra: dict[str, Any] | None = None) -> dict[str, Path]:
    """Write the study's files into ``out`` and return their paths."""
    out = prepare_dir(out)
    paths = {"circuit": circuit.save(out / "circuit.json")}
    if scores is not None:
        paths["scores"] = out / "scores.json"
        _write(paths["scores"], json.dumps(scores.to_json(), indent=1))
    paths["evaluation"] = out / "evaluation.json"
    _write(paths["evaluation"], json.dumps({**evaluation.to_json(), **(extra or {})}, indent=1))
    paths["html"] = out / "circuit.html"
    title = f"Circuit for {circuit.task or 'task'} ({circuit.method or 'circuit'})"
    _write(paths["html"], figures_html(evaluation.figures(), title, summary_lines(evaluation)))
    return paths


__all__ = ["figures_html", "prepare_dir", "summary_lines", "write_outputs"]
