"""The evaluation of a circuit in a few sentences (the CLI's summary, the report's circuit list).

Writing a study's files and its page moved to :mod:`circuitwise.reports.study`.
"""

from __future__ import annotations

from circuitwise.evaluation.evaluate import CircuitEvaluation


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
    if ev.mib is not None:
        m = ev.mib
        lines.append(f"MIB (signed ranking) CPR {m.cpr:.3f}, (absolute ranking) CMD {m.cmd:.3f}: area under "
                     f"faithfulness at {len(m.budgets)} edge budgets from {m.budgets[0]:.1%} to "
                     f"{m.budgets[-1]:.0%} ({m.ablation} ablation)")
    if ev.agreement is not None:
        a = ev.agreement
        lines.append(f"{a.method} vs exact patching on the top {len(a.edges)} edges: Spearman {a.spearman:.3f}, "
                     f"Pearson {a.pearson:.3f}, same sign {a.sign_agreement:.0%}")
    return lines


__all__ = ["summary_lines"]
