"""The report's short written summary: what the numbers say, in sentences."""

from __future__ import annotations

from typing import Any


def _fmt(x: float) -> str:
    return f"{x:+.2f}"


def summarize(results: dict[str, Any]) -> list[str]:
    """A few plain sentences, each derived from a number in ``results``."""
    out: list[str] = []
    bl, dla, th = results["baseline"], results["dla"], results["top_heads"]
    n = results["task"]["n_prompts"]
    mean = bl["logit_diff"]["mean"]
    acc = bl["accuracy"]
    verdict = "prefers the correct answer" if mean > 0 else "prefers the incorrect answer"
    out.append(
        f"On {n} prompt{'s' if n != 1 else ''}, the model {verdict}: mean logit difference {_fmt(mean)}, "
        f"correct answer ahead in {acc:.0%} of prompts."
    )
    gap = mean - dla["final_resid"]
    out.append(
        f"Direct logit attribution of the final residual stream gives {_fmt(dla['final_resid'])}; the "
        f"remaining {_fmt(gap)} is the unembedding bias ({_fmt(dla['unembed_bias'])})"
        + (" plus numerical error." if abs(gap - dla["unembed_bias"]) > 1e-3 else ", so the decomposition closes.")
    )
    lens = dla["logit_lens"]
    vals, labels = lens["values"], lens["labels"]
    jumps = [vals[i + 1] - vals[i] for i in range(len(vals) - 1)]
    if jumps:
        i = max(range(len(jumps)), key=lambda j: abs(jumps[j]))
        out.append(
            f"In the logit lens the biggest single change ({_fmt(jumps[i])}) happens between {labels[i]} and "
            f"{labels[i + 1]}; the accumulated residual is "
            + ("positive from " + labels[_first_positive_run(vals)] + " on." if _first_positive_run(vals) is not None
               else "never positive for good.")
        )
    layers = dla["layers"]
    j = max(range(len(layers["values"])), key=lambda k: abs(layers["values"][k]))
    out.append(f"The largest single component is {layers['labels'][j]} ({_fmt(layers['values'][j])}).")
    total = sum(abs(v) for row in dla["heads"] for v in row) or 1.0
    pos = ", ".join(f"{h['label']} ({_fmt(h['value'])})" for h in th["positive"])
    neg = ", ".join(f"{h['label']} ({_fmt(h['value'])})" for h in th["negative"] if h["value"] < 0) or "none"
    share = sum(abs(h["value"]) for h in th["positive"]) / total
    out.append(
        f"Heads that push towards the correct answer most: {pos} — together {share:.0%} of all heads' "
        f"absolute direct effect. Heads that push against it: {neg}."
    )
    if results["task"].get("n_dropped"):
        out.append(f"{results['task']['n_dropped']} example(s) were dropped as unusable with this tokenizer.")
    return out


def _first_positive_run(vals: list[float]) -> int | None:
    """Index from which the values stay positive to the end, if any."""
    if not vals or vals[-1] <= 0:
        return None
    i = len(vals) - 1
    while i > 0 and vals[i - 1] > 0:
        i -= 1
    return i


__all__ = ["summarize"]
