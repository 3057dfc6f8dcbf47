"""The report's generated summary and mechanism section, from a whole run on the known-circuit model.

The model (tests/unit/circuits/known_circuit.py) is built so that L0H0 copies the letter at
position 1 and L1H0 copies that copy to the logits: the run's read-outs must say so, and every number
the summary prints must be one of results.json's (found by parsing the text, at its printed precision).
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

import pytest

import circuitwise as cw
from circuitwise.config import MECHANISM_PROMPTS, RunConfig
from circuitwise.reports.summary import summarize
from tests.unit.circuits.known_circuit import known_circuit_task, make_known_circuit_checkpoint


@pytest.fixture(scope="module")
def known_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("known-run")
    ckpt = make_known_circuit_checkpoint(root / "model")
    known_circuit_task().to_jsonl(root / "task.jsonl")
    cfg = RunConfig(task=str(root / "task.jsonl"), model=str(ckpt), out=root / "run", patching=("heads",),
                    circuit="eap", top_k=2)
    cw.run(cfg)
    return root / "run"


def _leaves(x: Any) -> list[float]:
    if isinstance(x, bool):
        return []
    if isinstance(x, (int, float)):
        return [float(x)]
    if isinstance(x, dict):
        return [v for k, val in x.items() if k != "figures" for v in _leaves(val)]
    if isinstance(x, list):
        return [v for val in x for v in _leaves(val)]
    return []


# A number in running text: not part of a label such as L1H0 or 1_attn_out.
NUMBER = re.compile(r"(?<![\w.])[-+]?\d+(?:\.\d+)?%?(?![\w])")


def test_every_number_in_the_summary_is_one_of_results_json(known_run):
    data = json.loads((known_run / "results.json").read_text())
    values = _leaves({k: data[k] for k in ("task", "baseline", "dla", "top_heads", "mechanism", "circuit")})
    lines = summarize(cw.load_results(known_run))
    assert len(lines) >= 7
    found = 0
    for line in lines:
        for text in NUMBER.findall(line):
            pct = text.endswith("%")
            x = float(text.rstrip("%"))
            decimals = len(text.rstrip("%").partition(".")[2])
            tol = 0.5 * 10 ** -decimals + 1e-9
            assert any(math.isfinite(v) and abs((100 * v if pct else v) - x) <= tol for v in values), (text, line)
            found += 1
    assert found > 20


def test_the_summary_tells_the_mechanism_and_the_circuits_certainty(known_run):
    res = cw.load_results(known_run)
    lines = summarize(res)
    text = " ".join(lines)
    m = res.mechanism
    assert m is not None and m.n_prompts == min(16, MECHANISM_PROMPTS) and not m.capped
    l1h0 = next(h for h in m.heads if h.label == "L1H0")
    assert "dla+" in l1h0.picked_by
    story = next(line for line in lines if line.startswith("L1H0 "))
    assert f"reading the answer token it copies it (copying score z {l1h0.ov_answer.z:+.1f}" in story
    assert f"its output raises the correct answer (z {l1h0.output.z:+.1f}" in story
    l0h0 = next(h for h in m.heads if h.label == "L0H0")  # picked by patching
    assert "patching" in l0h0.picked_by and l0h0.reads_position == "1"
    assert next(line for line in lines if line.startswith("L0H0 ")).startswith(
        "L0H0 attends from the answer position most to position 1 (mean attention 1.00)")
    f = res.circuit.evaluation.faithfulness
    rb = res.circuit.evaluation.random_baseline
    assert f"restores {f.faithfulness:.2f} (95% CI {f.interval.low:.2f} to {f.interval.high:.2f})" in text
    assert rb.p_value_is_bound  # random 3-edge circuits never carry the letter
    assert f"p < {rb.p_value:.2g} over {rb.samples} samples" in text
    bl = res.baseline.logit_diff
    assert f"{bl.mean:+.2f} (95% CI {bl.interval.low:+.2f} to {bl.interval.high:+.2f})" in text


def test_the_report_has_the_mechanism_section_and_old_results_still_load(known_run, tmp_path):
    html = (known_run / "report.html").read_text()
    assert 'id="mechanism"' in html or "What the top heads read and write" in html
    assert "L1H0" in html and "copies" in html
    data = json.loads((known_run / "results.json").read_text())
    del data["mechanism"]
    (tmp_path / "results.json").write_text(json.dumps(data))
    old = cw.load_results(tmp_path)
    assert old.mechanism is None
    assert not any(line.startswith("L1H0 attends") for line in summarize(old))


def test_a_run_caps_the_read_outs_and_says_so(tmp_path):
    cfg = RunConfig(task="opposites", model="bundled", n=MECHANISM_PROMPTS + 6, out=tmp_path / "run", patching=(),
                    attribution=False, circuit=None, top_k=2)
    res = cw.run(cfg).results
    m = res.mechanism
    assert m is not None and (m.n_prompts, m.of, m.capped) == (MECHANISM_PROMPTS, MECHANISM_PROMPTS + 6, True)
    assert any(f"first {MECHANISM_PROMPTS} of {MECHANISM_PROMPTS + 6} prompts" in note for note in res.notes)
    # DLA's top two heads each way, and nothing else without patching.
    assert sorted(h.label for h in m.heads) == sorted(h.label for h in res.top_heads.positive + res.top_heads.negative)
    capped = f"These read-outs use the first {MECHANISM_PROMPTS} of the {MECHANISM_PROMPTS + 6} prompts."
    assert capped in summarize(res)
    # The task has roles (N1, ADJ, BUT, N2, END): every head is read out by role as well.
    assert all({r.key for r in h.roles} >= {"N1", "ADJ", "END"} for h in m.heads)
