"""The circuit explorer: one self-contained interactive page component (vanilla JS + SVG, no library).

Everything it shows is gathered here from the schema files alone — results.json (a run) and
circuit.json (the circuit's edges) — into one JSON object the template embeds (``script_json``:
no ``</script>`` can close it early). The browser only lays out, draws and looks numbers up: every
number a panel shows is a value of these files (a mean, a share, a point of the faithfulness curve)
or a linear interpolation between two measured curve points, marked as such. A panel whose data
the files lack says why instead of staying blank.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from markupsafe import Markup

from circuitwise.config import EXPLORER_PROMPTS
from circuitwise.reports.html import render, script_json
from circuitwise.schema.circuit import CircuitFile
from circuitwise.schema.results import Evaluation, MechanismHead, RunResults, Stability

# Per-prompt distributions are rounded to this many significant digits: a 2,000-prompt run's page
# stays small, and no panel shows more digits than these.
DIGITS = 6

# Sweeps with a position axis, drawn on the token × layer grid.
POSITION_SWEEPS = ("resid_pre", "attn_out", "mlp_out")


def _r(x: float | None) -> float | None:
    if x is None or not math.isfinite(x):
        return None
    return float(f"{x:.{DIGITS}g}")


def _rs(xs: Sequence[float | None]) -> list[float | None]:
    return [_r(x) for x in xs]


def _kind(name: str) -> str:
    if name in ("input", "logits"):
        return name
    return "mlp" if name.startswith("MLP") else "head"


def _head(name: str) -> tuple[int, int]:
    layer, head = name[1:].split("H")
    return int(layer), int(head)


def _edges(circuit: CircuitFile | None, results: RunResults | None,
           stability: Stability | None) -> tuple[list[dict[str, Any]], str | None]:
    """The circuit's edges, strongest |score| first, each with its resampling frequency, per-block scores and
    (where the method keeps them) its score on each prompt."""
    stab = {(e.sender, e.receiver): e for e in stability.edges} if stability is not None else {}
    note = None
    if circuit is not None:
        rows = [(e.sender, e.receiver, e.score) for e in circuit.edges]
    elif results is not None and results.circuit is not None:
        c = results.circuit
        rows = [(e.sender, e.receiver, e.score) for e in c.top_edges]
        if len(rows) < c.n_edges:
            note = (f"the strongest {len(rows)} of the circuit's {c.n_edges} edges (results.json keeps those; "
                    f"{c.file} beside it holds all of them)")
    else:
        rows = []
    by_pos: dict[tuple[str, str], Any] = {}
    if circuit is not None and circuit.positions is not None:
        labels = circuit.positions.labels
        for e in circuit.edges:
            if e.position_scores is not None:
                kept = set(labels if e.kept_positions is None else e.kept_positions)
                by_pos[(e.sender, e.receiver)] = {"scores": _rs([e.position_scores.get(p) for p in labels]),
                                                  "kept": [p in kept for p in labels]}
                if e.flow_scores is not None:  # a key/value edge of a key × query circuit: key → query flows
                    flows = {(k, q) for k, q in (e.kept_flows or [])}
                    by_pos[(e.sender, e.receiver)]["flows"] = {
                        "scores": [_rs([e.flow_scores.get(k, {}).get(q) for q in labels]) for k in labels],
                        "kept": [[(k, q) in flows for q in labels] for k in labels]}
    out = []
    for s, r, score in rows:
        st = stab.get((s, r))
        out.append({"s": s, "r": r, "score": score, "freq": st.frequency if st is not None else None,
                    "scores": _rs(st.scores) if st is not None and st.scores is not None else None,
                    "prompts": _rs(st.prompt_scores) if st is not None and st.prompt_scores is not None else None,
                    "by_pos": by_pos.get((s, r))})
    def strength(e: dict[str, Any]) -> float:
        x = e["score"]
        return -abs(x) if x is not None and math.isfinite(x) else math.inf

    out.sort(key=strength)
    return out, note


def _curve(ev: Evaluation | None) -> list[dict[str, Any]]:
    """Measured faithfulness by circuit size (edges after pruning): the curve's points and the circuit's own.

    Several curve points can prune to the same size; the first measured (fewest top edges) is kept.
    """
    if ev is None:
        return []
    points: dict[int, dict[str, Any]] = {}
    if ev.curve is not None:
        for n, f, top in zip(ev.curve.n_edges, ev.curve.faithfulness, ev.curve.top, strict=True):
            if f is not None and n not in points:
                points[n] = {"n": n, "f": f, "from": f"top {top} edges, pruned"}
    fs = ev.faithfulness
    if fs.faithfulness is not None:
        points.setdefault(fs.n_edges, {"n": fs.n_edges, "f": fs.faithfulness, "from": "the circuit itself"})
    return [points[n] for n in sorted(points)]


def _dla(results: RunResults, name: str) -> dict[str, Any] | None:
    d = results.dla
    if d is None:
        return None
    total = d.logit_diff
    kind = _kind(name)
    per: list[float | None] | None = None
    if kind == "head":
        layer, head = _head(name)
        value = d.heads[layer][head]
        if d.heads_per_prompt is not None:
            per = _rs([p[layer][head] for p in d.heads_per_prompt])
        what = "the head's direct effect on the logit difference (its output through the unembedding)"
    elif kind == "mlp":
        label = f"{name[3:]}_mlp_out"
        if label not in d.layers.labels:
            return None
        value = d.layers.values[d.layers.labels.index(label)]
        what = "the MLP's direct effect on the logit difference"
    elif kind == "input":
        parts = [v for lab, v in zip(d.layers.labels, d.layers.values, strict=True) if lab in ("embed", "pos_embed")]
        if not parts:
            return None
        value = sum(parts)
        what = "the token and position embeddings' direct effect on the logit difference"
    else:
        value = total
        what = "the logit difference the direct effects add up to"
        if results.baseline is not None:
            per = _rs(results.baseline.logit_diff.per_prompt)
    share = value / total if total else None
    return {"value": value, "share": share, "total": total, "what": what, "per_prompt": per}


def _patching(results: RunResults, name: str) -> dict[str, Any] | None:
    p = results.patching or {}
    kind = _kind(name)
    if kind == "head" and "heads" in p:
        sw = p["heads"]
        layer, head = _head(name)
        vals: Any = sw.values
        value = vals[layer][head]
        per = None
        rows: Any = sw.per_example
        if rows is not None:
            per = _rs([row[layer][head] for row in rows])
        return {"sweep": "heads", "value": value, "normalized": sw.normalized, "per_prompt": per,
                "direction": sw.config.direction, "degenerate": sw.degenerate}
    if kind == "mlp" and "mlp_out" in p:
        sw = p["mlp_out"]
        layer = int(name[3:])
        row: list[float | None] = list(sw.values[layer])  # type: ignore[arg-type]
        finite = [(abs(v), i) for i, v in enumerate(row) if v is not None and math.isfinite(v)]
        if not finite:
            return None
        at = max(finite)[1]
        per = None
        exs: Any = sw.per_example
        if exs is not None:
            per = _rs([ex[layer][at] for ex in exs])
        return {"sweep": "mlp_out", "value": row[at], "position": sw.labels["pos"][at], "normalized": sw.normalized,
                "per_prompt": per, "direction": sw.config.direction, "degenerate": sw.degenerate}
    return None


def _mechanism(results: RunResults, name: str) -> dict[str, Any] | None:
    m = results.mechanism
    if m is None or _kind(name) != "head":
        return None
    layer, head = _head(name)
    h: MechanismHead | None = next((h for h in m.heads if (h.layer, h.head) == (layer, head)), None)
    if h is None:
        return None
    best = next((s for s in h.positions if s.key == h.reads_position), None)

    def write(w: Any) -> dict[str, Any]:
        return {"z": w.z, "cosine": w.cosine, "copies": w.copies, "suppresses": w.suppresses,
                "raises": [t.token for t in w.top[:5]], "lowers": [t.token for t in w.bottom[:5]]}

    return {"n_prompts": m.n_prompts, "of": m.of, "reads_role": h.reads_role, "reads_position": h.reads_position,
            "attention": best.attention if best is not None else None,
            "token": best.token if best is not None else None, "qk_position": h.qk_position, "qk_role": h.qk_role,
            "attended": h.attended, "ov_attended": write(h.ov_attended), "output": write(h.output),
            "picked_by": h.picked_by}


def _positions(results: RunResults, heads: Sequence[str]) -> dict[str, Any] | None:
    """Patching by position on a token × layer grid: each layer × position sweep, and each circuit head's row."""
    p = results.patching or {}
    grids: dict[str, Any] = {}
    tokens: list[str] | None = None
    for what in POSITION_SWEEPS:
        if what in p and p[what].axes == ["layer", "pos"]:
            sw = p[what]
            tokens = tokens or sw.labels["pos"]
            grids[what] = {"layers": sw.labels["layer"], "values": [_rs(r) for r in sw.values],  # type: ignore[arg-type]
                           "normalized": sw.normalized}
    if "heads_by_pos" in p and p["heads_by_pos"].axes == ["layer", "pos", "head"]:
        sw = p["heads_by_pos"]
        tokens = tokens or sw.labels["pos"]
        cube: Any = sw.values
        for name in heads:
            layer, head = _head(name)
            grids[f"heads_by_pos {name}"] = {
                "layers": [str(layer)], "values": [_rs([cube[layer][i][head] for i in range(len(sw.labels["pos"]))])],
                "normalized": sw.normalized, "head": name}
    if not grids or tokens is None:
        return None
    return {"tokens": tokens, "grids": grids}


def _attention(results: RunResults) -> dict[str, Any] | None:
    c = results.circuit
    if c is None or c.attention is None or not c.attention.heads:
        return None
    a = c.attention
    ex = results.task.examples
    return {"examples": a.examples, "of": a.of,
            "prompts": [ex[i].clean if i < len(ex) else f"prompt {i}" for i in a.examples],
            "tokens": [ex[i].tokens if i < len(ex) else [] for i in a.examples],
            "heads": {h: [_rs(row) for row in rows] for h, rows in zip(a.heads, a.rows, strict=True)}}


def explorer_data(*, results: RunResults | None = None, circuit: CircuitFile | None = None,
                  evaluation: Evaluation | None = None, n_layers: int | None = None,
                  n_heads: int | None = None) -> dict[str, Any]:
    """Everything the explorer draws, from the files: ``results`` (a run's results.json), ``circuit``
    (circuit.json) and ``evaluation`` (the circuit's evaluation; the run's own by default)."""
    c = results.circuit if results is not None else None
    ev = evaluation if evaluation is not None else (c.evaluation if c is not None else None)
    stability = ev.stability if ev is not None and ev.stability is not None else (
        circuit.stability if circuit is not None else None)
    edges, note = _edges(circuit, results, stability)
    if results is not None:
        n_layers, n_heads = results.model.n_layers, results.model.n_heads
    elif circuit is not None and circuit.graph is not None:
        n_layers, n_heads = circuit.graph.n_layers, circuit.graph.n_heads
    nodes_seen = {e["s"] for e in edges} | {e["r"].split(".")[0] for e in edges}
    order = sorted(nodes_seen, key=lambda n: (-1, 0) if n == "input" else (10**9, 0) if n == "logits" else
                   (int(n[3:]), 10**6) if n.startswith("MLP") else _head(n))
    nodes: dict[str, Any] = {}
    missing: dict[str, str] = {}
    for name in order:
        info: dict[str, Any] = {"kind": _kind(name)}
        if results is not None:
            info["dla"] = _dla(results, name)
            info["patching"] = _patching(results, name)
            info["mechanism"] = _mechanism(results, name)
        nodes[name] = info
    if results is None:
        why = "this page was written from circuit.json and its evaluation alone: run `circuitwise run` for {}"
        missing = {"dla": why.format("direct logit attribution"), "patching": why.format("activation patching"),
                   "mechanism": why.format("mechanism read-outs"), "attention": why.format("attention patterns")}
    else:
        if results.dla is None:
            missing["dla"] = "the run has no direct logit attribution"
        if not results.patching:
            missing["patching"] = results.patching_skipped or "the run did not patch activations (--patch)"
        missing["mechanism"] = ("the run has no mechanism read-outs" if results.mechanism is None else
                                "mechanism read-outs cover the run's top heads (by DLA and patching); this head is not "
                                "one of them")
        if c is None or c.attention is None:
            missing["attention"] = "results.json has no attention of the circuit's heads (written by an older version)"
    if stability is None:
        missing["edge_scores"] = ("edge stability was not measured for this method, so the files hold no score "
                                  "per prompt (only the mean over prompts)")
    elif stability.group_sizes is None:
        missing["edge_scores"] = "the files were written before per-prompt edge scores were kept"
    heads = [n for n in order if _kind(n) == "head"]
    positions = _positions(results, heads) if results is not None else None
    if positions is None:
        missing["positions"] = ("no patching by position ran (--patch resid_pre, attn_out, mlp_out or heads_by_pos)"
                                if results is not None else "patching by position is in a run's results.json")
    fs = ev.faithfulness if ev is not None else None
    return {
        "n_layers": n_layers, "n_heads": n_heads,
        "method": (c.method if c is not None else circuit.method if circuit is not None else None),
        "n_edges": len(edges), "total_edges": (c.total_edges if c is not None else
                                               circuit.total_edges if circuit is not None else None),
        "edges_note": note,
        "edges": [{**e, "score": _r(e["score"])} for e in edges],
        "prompt_rows": EXPLORER_PROMPTS,  # an edge panel's table lists this many prompts (its histogram all)
        "curve": _curve(ev),
        "faithfulness": None if fs is None else {"value": fs.faithfulness, "n_edges": fs.n_edges},
        "groups": None if stability is None or stability.group_sizes is None else {
            "sizes": stability.group_sizes, "per_prompt": stability.groups == stability.n_examples,
            "n_examples": stability.n_examples},
        "nodes": nodes,
        "attention": _attention(results) if results is not None else None,
        "positions": positions,
        # A position-aware circuit (circuits.positional): its columns; each edge's by_pos says where it is kept.
        "columns": None if circuit is None or circuit.positions is None else {
            "mode": circuit.positions.mode, "labels": circuit.positions.labels},
        "missing": missing,
    }


def explorer_html(data: dict[str, Any], ids: str = "") -> str:
    """The explorer's markup, its data (JSON, script-safe) and its script, for a page or a notebook output."""
    return render("explorer/explorer.html", root=f"{ids}cwx", data=script_json(data),
                  js=Markup(_explorer_js()), css=Markup(_explorer_css()))


def _explorer_js() -> str:
    from importlib import resources

    return (resources.files("circuitwise.reports") / "templates" / "explorer" / "explorer.js").read_text("utf-8")


def _explorer_css() -> str:
    from importlib import resources

    return (resources.files("circuitwise.reports") / "templates" / "explorer" / "explorer.css").read_text("utf-8")


__all__ = ["explorer_data", "explorer_html"]
