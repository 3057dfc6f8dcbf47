"""compare.html (reports/compare.py) is built from compare.json alone; prompts and labels are escaped; the summary says what the numbers say."""

from __future__ import annotations

import copy

from circuitwise.reports.compare import build_compare_page, summarize_compare

EVIL = '</script><script>alert("x")</script><img src=x onerror=alert(1)>'


def test_prompts_and_labels_cannot_inject_into_the_page(forms_run):
    _, r = forms_run
    r = copy.deepcopy(r)
    r["a"]["label"] = EVIL
    r["a"]["examples"][0]["tokens"] = [EVIL, " and"]
    r["attention"]["tokens_a"][0] = EVIL
    r["notes"].append(EVIL)
    html = build_compare_page(r).render()
    assert EVIL not in html and "<img src=x" not in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html


def test_summary_names_the_flagged_heads_and_the_cross_faithfulness(forms_run):
    _, r = forms_run
    lines = summarize_compare(r)
    heads = next(s for s in lines if s.startswith("Direct effect per head"))
    assert "letters-lower the answer is carried more by L0H1" in heads and "letters-upper more by L0H0" in heads
    assert "2 of 8 heads differ" in heads
    cross = [s for s in lines if "circuit keeps" in s]
    assert len(cross) == 2 and all("random circuits of its size" in s for s in cross)
    r2 = copy.deepcopy(r)
    r2["heads"]["significant"] = [False] * len(r2["heads"]["significant"])
    assert any(s.startswith("No head's direct effect differs") for s in summarize_compare(r2))
