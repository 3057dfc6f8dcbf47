"""The report's short written summary: what the numbers say, in sentences."""

from __future__ import annotations

from circuitwise.schema.results import DLASection, Interval, RunResults


def _fmt(x: float) -> str:
    return f"{x:+.2f}"


def ci_words(iv: Interval | None, fmt: str = "{:+.2f}") -> str:
    """``95% CI +1.20 to +1.51`` for an interval read from results.json; empty without one (older
    files, or a resample-free statistic)."""
    if iv is None or iv.low is None or iv.high is None:
        return ""
    return f"{iv.level:.0%} CI {fmt.format(iv.low)} to {fmt.format(iv.high)}"


def ci(iv: Interval | None, fmt: str = "{:+.2f}") -> str:
    """:func:`ci_words` in brackets after a number."""
    words = ci_words(iv, fmt)
    return f" ({words})" if words else ""


def summarize(results: RunResults) -> list[str]:
    """A few plain sentences, each derived from a number in ``results``."""
    out: list[str] = []
    bl, dla, th = results.baseline, results.dla, results.top_heads
    if bl is None or dla is None or th is None:
        return out
    n = results.task.n_prompts
    mean = bl.logit_diff.mean
    acc = bl.accuracy
    verdict = "prefers the correct answer" if mean > 0 else "prefers the incorrect answer"
    out.append(
        f"On {n} prompt{'s' if n != 1 else ''}, the model {verdict}: mean logit difference {_fmt(mean)}"
        f"{ci(bl.logit_diff.interval)}, correct answer ahead in {acc:.0%} of prompts"
        f"{ci(bl.accuracy_interval, '{:.0%}')}."
    )
    out.extend(dla_closure(dla, mean))
    vals, labels = dla.logit_lens.values, dla.logit_lens.labels
    jumps = [vals[i + 1] - vals[i] for i in range(len(vals) - 1)]
    if jumps:
        i = max(range(len(jumps)), key=lambda j: abs(jumps[j]))
        first = _first_positive_run(vals)
        out.append(
            f"In the logit lens the biggest single change ({_fmt(jumps[i])}) happens between {labels[i]} and "
            f"{labels[i + 1]}; the accumulated residual is "
            + ("positive from " + labels[first] + " on." if first is not None else "never positive for good.")
        )
    layers = dla.layers
    j = max(range(len(layers.values)), key=lambda k: abs(layers.values[k]))
    iv = layers.intervals[j] if layers.intervals else None
    out.append(f"The largest single component is {layers.labels[j]} ({_fmt(layers.values[j])}"
               + (f"; {ci_words(iv)})." if iv is not None and ci_words(iv) else ")."))
    total = sum(abs(v) for row in dla.heads for v in row) or 1.0
    pos = ", ".join(f"{h.label} ({_fmt(h.value)}" + (f"; {ci_words(h.interval)})" if h.interval else ")")
                    for h in th.positive)
    neg = ", ".join(f"{h.label} ({_fmt(h.value)})" for h in th.negative if h.value < 0) or "none"
    share = sum(abs(h.value) for h in th.positive) / total
    out.append(
        f"Heads that push towards the correct answer most: {pos} — together {share:.0%} of all heads' "
        f"absolute direct effect. Heads that push against it: {neg}."
    )
    if results.task.n_dropped:
        out.append(f"{results.task.n_dropped} example(s) were dropped as unusable with this tokenizer.")
    return out


# Below this a gap is float rounding; above it, it has a cause and the summary names it.
FLOAT_GAP = 1e-4


def dla_closure(dla: DLASection, output_mean: float) -> list[str]:
    """How the final-residual attribution adds up to the model's logit difference, gap named.

    ``output_mean`` is the model's mean output logit difference (the baseline's).
    """
    fr, ub, nb = dla.final_resid, dla.unembed_bias, dla.norm_bias
    capped = dla.target == "pre_cap_logit_diff"
    target = dla.logit_diff
    what = "pre-cap logit difference" if capped else "logit difference"
    parts = f"the unembedding bias adds {_fmt(ub)}"
    if nb:
        parts += f" and the final norm's own bias (not folded into the unembedding) {_fmt(nb)}"
    gap = target - (fr + ub + nb)
    worst = dla.closure_error
    rounding = dla.rounding
    first = f"Direct logit attribution of the final residual stream gives {_fmt(fr)}; {parts}, "
    if worst < FLOAT_GAP:
        first += f"which together make the model's {what} ({_fmt(target)}): the decomposition closes."
    elif worst < rounding:
        first += (
            f"which together make the model's {what} ({_fmt(target)}) up to {worst:.1g}: the model computes "
            f"in {dla.dtype}, whose rounding of the final norm's output can account for up to {rounding:.1g}."
        )
    else:
        cause = "the final norm was not read the way the model applies it — a circuitwise bug, please report it"
        first += (
            f"{_fmt(fr + ub + nb)} in all, against the model's {what} of {_fmt(target)} (a gap of "
            f"{gap:+.2g}, up to {worst:.2g} on one prompt): {cause}."
        )
    out = [first]
    readout_gap = output_mean - target
    if not capped and abs(readout_gap) >= max(FLOAT_GAP, rounding):
        out.append(
            f"The model's output logit difference ({_fmt(output_mean)}) is not the unembedding of its final "
            f"norm's output ({_fmt(target)}): something after the unembedding changes its logits by "
            f"{readout_gap:+.2g}, and the attribution does not decompose it."
        )
    if capped:
        out.append(
            f"The model soft-caps its logits, so the attribution decomposes the pre-cap logit difference; "
            f"after the cap the model outputs {_fmt(output_mean)} (the cap"
            + ("" if dla.dtype == "float32" else f" and {dla.dtype} rounding")
            + f", not a component, accounts for the {output_mean - target:+.2g} between them)."
        )
    if "post_norm" in dla.nonlinear:
        out.append(
            "Attention and MLP outputs are normalised before they join the residual stream: the per-layer "
            "values are exact, the per-head values hold each post-attention norm's scale fixed."
        )
    return out


def _first_positive_run(vals: list[float]) -> int | None:
    """Index from which the values stay positive to the end, if any."""
    if not vals or vals[-1] <= 0:
        return None
    i = len(vals) - 1
    while i > 0 and vals[i - 1] > 0:
        i -= 1
    return i


__all__ = ["FLOAT_GAP", "ci", "ci_words", "dla_closure", "summarize"]
