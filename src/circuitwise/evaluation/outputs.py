"""The evaluation of a circuit in a few sentences (the CLI's summary, the report's circuit list).

Writing a study's files and its page moved to :mod:`circuitwise.reports.study`.
"""

from __future__ import annotations

import math

from circuitwise.evaluation.bootstrap import Interval
from circuitwise.evaluation.evaluate import CircuitEvaluation
from circuitwise.evaluation.faithfulness import Faithfulness


def ci_text(iv: Interval | None) -> str:
    """`` (95% CI 0.951–0.987)`` after a number, or nothing where no interval was drawn."""
    if iv is None:
        return ""
    return f" ({iv.level:.0%} CI {iv.low:.3f}–{iv.high:.3f})"


def summary_lines(ev: CircuitEvaluation) -> list[str]:
    f = ev.faithfulness
    lines = [
        f"{f.n_edges} of {f.total_edges} edges ({f.edge_fraction:.2%})",
        *_node_lines(ev),
        f"faithfulness {f.faithfulness:.3f}{ci_text(f.interval)} ({f.ablation} ablation); {_kept_text(f)}",
        f"complement alone: faithfulness {ev.completeness.complement.faithfulness:.3f} "
        f"(completeness {ev.completeness.completeness:.3f})",
    ]
    if ev.random is not None:
        r = ev.random
        null = ("random node sets of the same size (their edge circuits)" if r.null == "node-set"
                else "random connected circuits of the same size")
        lines.append(f"{null}: {r.mean:.3f} ± {r.std:.3f} "
                     f"({r.p_text()}: {r.hits} of {r.samples} samples reach the circuit's faithfulness)")
    if ev.mib is not None:
        m = ev.mib
        lines.append(f"MIB (signed ranking) CPR {m.cpr:.3f}{ci_text(m.cpr_interval)}, (absolute ranking) CMD "
                     f"{m.cmd:.3f}{ci_text(m.cmd_interval)}: area under "
                     f"faithfulness at {len(m.budgets)} edge budgets from {m.budgets[0]:.1%} to "
                     f"{m.budgets[-1]:.0%} ({m.ablation} ablation)")
    if ev.agreement is not None:
        a = ev.agreement
        lines.append(f"{a.method} vs exact patching on the top {len(a.edges)} edges: Spearman {a.spearman:.3f}, "
                     f"Pearson {a.pearson:.3f}, same sign {a.sign_agreement:.0%}")
    if ev.stability is not None:
        lines.append(ev.stability.summary())
    return lines


def _kept_text(f: Faithfulness) -> str:
    if math.isnan(f.kept_fraction):  # a clean metric of about 0 (kl's, by definition) has no share to keep
        return (f"metric: circuit {f.circuit_metric:+.3f}, clean {f.clean_metric:+.3f}, "
                f"corrupted {f.corrupted_metric:+.3f}")
    return (f"keeps {f.kept_fraction:.1%} of the clean metric ({f.circuit_metric:+.3f} of {f.clean_metric:+.3f}; "
            f"corrupted {f.corrupted_metric:+.3f})")


def _node_lines(ev: CircuitEvaluation) -> list[str]:
    """A node-level circuit's kept nodes with their node scores, strongest first (none for an edge circuit)."""
    sel = ev.circuit.selection
    if sel.get("level") != "node":
        return []
    g = ev.circuit.graph
    scores = sel.get("node_scores") or {}
    names = sorted(sel.get("nodes") or [], key=lambda n: -abs(scores.get(n) or 0.0))
    kept = ", ".join(f"{n} ({scores[n]:+.3g})" if isinstance(scores.get(n), (int, float)) else n for n in names)
    return [f"{len(names)} of {len(g.senders) - 1} nodes (heads and MLPs; the input always in): {kept or 'none'}"]


__all__ = ["ci_text", "summary_lines"]
