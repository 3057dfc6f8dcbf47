"""benchmark(): every registered method on one task; each row is that method's own MIB result.

On the known-circuit model (a planted 3-edge circuit), so the numbers also mean something: every
method's circuit at faithfulness 0.9 is the planted one.
"""

from __future__ import annotations

import json

import pytest

from circuitwise.circuits import METHODS, score_edges
from circuitwise.circuits.select import select_target
from circuitwise.errors import ConfigError
from circuitwise.evaluation import benchmark as bm
from circuitwise.evaluation.mib import mib_metrics


@pytest.fixture(scope="module")
def result(known_model, known_tok):
    return bm.benchmark(known_model, known_tok)


def test_every_registered_method_runs_in_registry_order(result):
    assert [r.method for r in result.results] == list(METHODS)
    assert result.skipped == ()
    assert result.total_edges == 110 and result.n_examples == 16


def test_each_row_is_that_methods_own_mib_result_and_target_circuit(result, known_model, known_tok):
    for r in result.results:
        scores = score_edges(known_model, known_tok, r.method)
        mib = mib_metrics(known_model, known_tok, scores)
        assert r.cpr == pytest.approx(mib.cpr, abs=1e-9) and r.cmd == pytest.approx(mib.cmd, abs=1e-9)
        assert r.mib.absolute.faithfulness == pytest.approx(mib.absolute.faithfulness, abs=1e-9)
        assert r.mib.signed.n_edges == mib.signed.n_edges
        chosen = select_target(scores, model=known_model, tok=known_tok, target=0.9)
        assert r.edges_at_target == chosen.n_edges
        assert r.faithfulness_at_target == pytest.approx(chosen.selection["faithfulness"], abs=1e-9)
        assert r.seconds > 0 and r.config == scores.config
        row = r.row()
        assert (row["cpr"], row["cmd"], row["edges_at_target"]) == (r.cpr, r.cmd, r.edges_at_target)


def test_on_the_planted_model_every_method_finds_the_three_edges(result):
    # Ground truth: the planted circuit (3 edges) reaches faithfulness >= 0.9 and no smaller one can.
    for r in result.results:
        assert r.edges_at_target == 3 and r.faithfulness_at_target >= 0.9, r.row()
        assert 0 < r.cpr <= 1.2 and 0 <= r.cmd < 0.5


def test_json_is_strict_and_carries_the_rows(result):
    data = json.loads(json.dumps(result.to_json(), allow_nan=False))
    assert data["format"] == bm.FORMAT and data["version"] == bm.VERSION
    assert [m["method"] for m in data["methods"]] == list(METHODS)
    for m, r in zip(data["methods"], result.results):
        assert (m["cpr"], m["cmd"], m["edges_at_target"], m["seconds"]) == (r.cpr, r.cmd, r.edges_at_target, r.seconds)
        assert m["mib"]["cpr"] == r.cpr


def test_the_figure_has_both_curves_of_every_method_and_the_table_the_rows(result):
    fig = result.figure()
    assert len(fig.data) == 2 * len(result.results)
    for r in result.results:
        (ab,) = [t for t in fig.data if t.name == f"{r.method}, absolute (CMD)"]
        assert list(ab.y) == r.mib.absolute.faithfulness
    headers, cells = result.table()
    assert len(headers) == 6 and [c[0] for c in cells] == [r.method for r in result.results]
    assert [(c[1], c[2]) for c in cells] == [(bm.fmt(r.cpr), bm.fmt(r.cmd)) for r in result.results]
    assert [c[3] for c in cells] == [bm.edges_cell(r.edges_at_target, result.total_edges) for r in result.results]


def test_unknown_or_no_methods_are_errors_naming_the_registered_ones(known_model):
    with pytest.raises(ConfigError, match="Unknown discovery method 'path-patching'.*eap-ig"):
        bm.plan_benchmark(known_model, ["eap", "path-patching"])
    with pytest.raises(ConfigError, match="at least one method"):
        bm.check_methods([])


def test_a_method_that_cannot_run_is_skipped_with_a_note_before_any_work(known_model, known_tok, monkeypatch):
    import circuitwise.circuits.exact as exact

    monkeypatch.setattr(exact, "MAX_EXACT_EDGES", 10)
    plan = bm.plan_benchmark(known_model, ["exact", "eap"])
    assert plan.run == ("eap",) and [s.method for s in plan.skipped] == ["exact"]
    assert "110 edges" in plan.skipped[0].reason
    notes: list[str] = []
    res = bm.benchmark(known_model, known_tok, ["exact", "eap"], notes=notes.append)
    assert [r.method for r in res.results] == ["eap"] and notes == [f"exact skipped: {plan.skipped[0].reason}."]
    assert res.to_json()["skipped"] == [{"method": "exact", "reason": plan.skipped[0].reason}]
    with pytest.raises(ConfigError, match="None of the methods can run"):
        bm.benchmark(known_model, known_tok, ["exact"])
