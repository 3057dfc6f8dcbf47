"""Build the report page from ``results.json`` alone (so a report can be re-rendered later)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from circuitwise.reports import figures
from circuitwise.reports.html import Page, attention_html, esc, figure_html, table, tokens_html
from circuitwise.reports.summary import summarize

def _f(x: float | None, digits: int = 3) -> str:
    return "—" if x is None else f"{x:.{digits}f}"


def _overview(page: Page, r: dict[str, Any]) -> None:
    items = "".join(f"<li>{esc(s)}</li>" for s in summarize(r))
    m, t = r["model"], r["task"]
    dropped = ""
    if t.get("n_dropped"):
        reasons = "".join(f"<li>{esc(d)}</li>" for d in t.get("dropped_reasons", [])[:5])
        dropped = (f'<p class="warn">{t["n_dropped"]} example(s) of the task were dropped as unusable with '
                   f"this model's tokenizer. First reasons:</p><ul class=\"note\">{reasons}</ul>")
    page.add("summary", "Summary", (
        f'<ul class="summary">{items}</ul>{dropped}'
        f'<p class="note">Model <code>{esc(m["name"])}</code>: {m["n_layers"]} layers × {m["n_heads"]} heads, '
        f'd_model {m["d_model"]}, weight processing {"on" if m.get("processing", True) else "off"}. '
        f'Re-run with <code>{esc(r.get("rerun", ""))}</code>.</p>'
    ))


def _baseline(page: Page, r: dict[str, Any]) -> None:
    bl, ex = r["baseline"], r["task"]["examples"]
    rows = []
    for i, e in enumerate(ex):
        top = " ".join(f'<span class="tok">{esc(t["token"])}</span>{t["prob"]:.0%}' for t in bl["top_k"][i][:5])
        ld = bl["logit_diff"]["per_prompt"][i]
        rows.append([
            str(i), tokens_html(e["tokens"]), f'<span class="tok">{esc(e["correct"])}</span>',
            f'<span class="tok">{esc(e["incorrect"])}</span>',
            f'<span class="{"pos" if ld > 0 else "neg"}">{ld:+.3f}</span>',
            f'{bl["answer_probs"][i][0]:.2%}', str(bl["correct_rank"][i]), top,
        ])
    page.add("baseline", "Baseline: the model's answers", (
        f'<p>Mean logit difference <b>{bl["logit_diff"]["mean"]:+.3f}</b>; accuracy '
        f'<b>{bl["accuracy"]:.1%}</b> (correct answer beats the incorrect one). Each prompt is read at its '
        "own last token.</p>"
        + table(["#", "prompt tokens", "correct", "incorrect", "logit diff", "P(correct)", "rank", "top 5 next tokens"],
                rows, numeric=(4, 5, 6))
    ))


def _dla(page: Page, r: dict[str, Any]) -> None:
    d, bl = r["dla"], r["baseline"]
    gap = bl["logit_diff"]["mean"] - d["final_resid"]
    page.add("dla", "Direct logit attribution", (
        "<p>The final residual stream, scaled by the final LayerNorm and projected on each prompt's "
        "logit-difference direction (W_U[correct] − W_U[incorrect]), gives "
        f'<b>{d["final_resid"]:+.4f}</b> against the model\'s actual logit difference '
        f'<b>{bl["logit_diff"]["mean"]:+.4f}</b>. The gap, {gap:+.4f}, is the unembedding bias '
        f'b_U[correct] − b_U[incorrect] ({d["unembed_bias"]:+.4f}) plus float error '
        f"({gap - d['unembed_bias']:+.1e}).</p>"
        + figure_html(figures.line(d["logit_lens"]["values"], d["logit_lens"]["labels"],
                                   "Logit lens: logit difference of the accumulated residual stream",
                                   x="layer (pre / mid)"), "fig-logit-lens")
        + '<p class="note">Each point reads the residual stream before a layer (pre), between its attention '
          "and MLP (mid), or at the end, through the final LayerNorm scale.</p>"
        + figure_html(figures.bars(d["layers"]["values"], d["layers"]["labels"],
                                   "Per-layer decomposition: what each component writes"), "fig-layers")
        + '<p class="note">These bars sum to the final-residual attribution above.</p>'
        + figure_html(figures.heatmap(d["heads"], [str(h) for h in range(len(d["heads"][0]))],
                                      [str(l) for l in range(len(d["heads"]))],
                                      "Per-head direct logit attribution", "head", "layer"), "fig-heads")
    ))


def _top_heads(page: Page, r: dict[str, Any]) -> None:
    th, att = r["top_heads"], r.get("attention")
    rows = [[esc(h["label"]), f'<span class="pos">{h["value"]:+.3f}</span>'] for h in th["positive"]]
    rows += [[esc(h["label"]), f'<span class="neg">{h["value"]:+.3f}</span>'] for h in th["negative"]]
    body = table(["head", "direct effect on logit diff"], rows, numeric=(1,))
    if att:
        page.uses_circuitsvis = True
        k = len(th["positive"])
        body += (f'<p class="note">Attention patterns on prompt {att["example"]} (hover a head, then a token). '
                 "Top positive heads:</p>"
                 + attention_html("cv-positive", att["tokens"], att["patterns"][:k], att["heads"][:k])
                 + '<p class="note">Top negative heads:</p>'
                 + attention_html("cv-negative", att["tokens"], att["patterns"][k:], att["heads"][k:]))
    page.add("heads", "Top heads and their attention", body)


def build_page(results: dict[str, Any]) -> Page:
    m, t = results["model"], results["task"]
    page = Page(f"circuitwise — {t['name']} on {m['name']}",
                f"{t['n_prompts']} prompts · {m['n_layers']} layers × {m['n_heads']} heads")
    for section in (_overview, _baseline, _dla, _top_heads):
        section(page, results)
    return page


def write_report(results: dict[str, Any], path: Path) -> Path:
    build_page(results).write(path)
    return path


__all__ = ["build_page", "write_report"]
