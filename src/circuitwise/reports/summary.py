"""The report's short written summary: what the numbers say, in sentences."""

from __future__ import annotations

from circuitwise.schema.results import (
    CircuitSection,
    DLASection,
    Interval,
    MechanismHead,
    MechanismWrite,
    RunResults,
)

# Heads whose read-out the summary tells (the report's mechanism section has them all).
SUMMARY_HEADS = 3


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
    if results.mechanism is not None:
        out.extend(mechanism_lines(results))
    if results.circuit is not None:
        out.extend(circuit_lines(results.circuit))
    if results.task.n_dropped:
        out.append(f"{results.task.n_dropped} example(s) were dropped as unusable with this tokenizer.")
    return out


def _where(h: MechanismHead, key: str) -> str:
    return f"position {key}" + (" (counted from the end)" if h.positions_from == "end" else "")


def _effect(w: MechanismWrite, what: str) -> str:
    """What a write does to the token it read, in words, with the copying score."""
    if w.z is None:
        return f"reading {what} it writes nothing the unembedding reads"
    verb = "copies it" if w.copies else "suppresses it" if w.suppresses else "neither copies nor suppresses it"
    return f"reading {what} it {verb} (copying score z {w.z:+.1f}, cosine {w.cosine:+.2f})"


def _score_words(score: float | None) -> str:
    return "" if score is None else f" (mean score {score:+.2f})"


def head_story(h: MechanismHead, copy_z: float) -> str:
    """One head's read-out in one sentence: where it looks, what its query prefers, what it writes."""
    pos = next(p for p in h.positions if p.key == h.reads_position)
    role = next((r for r in h.roles if r.key == h.reads_role), None)
    if role is not None:
        reads = f"the {role.key} token (mean attention {role.attention:.2f})"
    else:
        reads = f"{_where(h, pos.key)} (mean attention {pos.attention:.2f}"
        # A token worth naming only where it is the same in most prompts (a template's fixed word).
        if pos.token is not None and pos.token_count is not None and 2 * pos.token_count > pos.n:
            reads += f"; {pos.token!r} there in {pos.token_count} of {pos.n} prompts"
        reads += ")"
    qk_role = next((r for r in h.roles if r.key == h.qk_role), None)
    if qk_role is not None:
        qk_text = f"the {qk_role.key} token{_score_words(qk_role.score)}"
    else:
        qk = next(p for p in h.positions if p.key == h.qk_position)
        qk_text = f"{_where(h, qk.key)}{_score_words(qk.score)}"
    out = h.output
    if out.z is None:
        writes = "its output at the answer position writes nothing the unembedding reads"
    else:
        # The output's own z says whether it moves the answer; the copy flags (top few on most
        # prompts) are about singling out a token read, which is the OV read-outs' story.
        verb = "raises" if out.z >= copy_z else "lowers" if out.z <= -copy_z else "barely moves"
        writes = (f"its output {verb} the correct answer (z {out.z:+.1f}, median rank {out.rank:.0f}, "
                  f"cosine {out.cosine:+.2f})")
    return (f"{h.label} attends from the answer position most to {reads}; its query scores {qk_text} highest; "
            f"{_effect(h.ov_attended, 'the token it attends to')}, {_effect(h.ov_answer, 'the answer token')}; "
            f"{writes}.")


def story_heads(r: RunResults) -> list[MechanismHead]:
    """The read-out heads in the order the story tells them: DLA's strongest heads towards the answer
    and patching's strongest heads taken in turn (each list by its own ranking), then the rest."""
    m = r.mechanism
    if m is None:
        return []
    by_label = {h.label: h for h in m.heads}
    dla = [h.label for h in r.top_heads.positive] if r.top_heads is not None else []
    patched = [h.label for h in m.heads if "patching" in h.picked_by]
    sweep = (r.patching or {}).get("heads")
    if sweep is not None:
        grid = sweep.values

        def effect(label: str) -> float:
            h = by_label[label]
            v = grid[h.layer][h.head]
            return abs(v) if isinstance(v, (int, float)) else 0.0

        patched.sort(key=effect, reverse=True)
    order: list[str] = []
    for pair in zip(dla, patched, strict=False):
        order.extend(pair)
    order += dla[len(patched):] + patched[len(dla):] + [h.label for h in m.heads]
    return [by_label[label] for label in dict.fromkeys(order) if label in by_label]


def mechanism_lines(r: RunResults) -> list[str]:
    """What the top heads read and write, in one sentence each (the report's section has them all)."""
    m = r.mechanism
    if m is None:
        return []
    out = [head_story(h, m.copy_z) for h in story_heads(r)[:SUMMARY_HEADS]]
    if out and m.capped:
        out.append(f"These read-outs use the first {m.n_prompts} of the {m.of} prompts.")
    return out


def p_words(p: float | None, bound: bool | None, samples: int | None) -> str:
    """``p < 0.0099 (100 samples)`` where no random circuit reached the circuit (the p-value is then a bound)."""
    if p is None:
        return "p undefined"
    of = f" over {samples} samples" if samples else ""
    return f"p {'<' if bound else '='} {p:.2g}{of}"


def circuit_lines(c: CircuitSection) -> list[str]:
    """How faithful the circuit is, and how sure we are (its interval, the random-circuit p-value)."""
    f = c.evaluation.faithfulness
    if f.faithfulness is None:
        text = (f"The {c.method} circuit ({c.n_edges} of {c.total_edges} edges) has no faithfulness: the "
                "clean and corrupted metrics are too close to normalise by.")
    else:
        text = (f"The {c.method} circuit ({c.n_edges} of {c.total_edges} edges) restores {f.faithfulness:.2f}"
                f"{ci(f.interval, '{:.2f}')} of the clean–corrupted gap ({f.ablation} ablation)")
        rb = c.evaluation.random_baseline
        if rb is not None and rb.random_mean is not None:
            text += (f"; random {rb.null + ' ' if rb.null else ''}circuits of its size restore {rb.random_mean:.2f} "
                     f"on average ({p_words(rb.p_value, rb.p_value_is_bound, rb.samples)})")
        text += "."
    return [text]


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


__all__ = ["FLOAT_GAP", "SUMMARY_HEADS", "ci", "ci_words", "circuit_lines", "dla_closure", "head_story",
           "mechanism_lines", "p_words", "story_heads", "summarize"]
