"""Ground truth: on a model where upper-case letters run through L0H0 and lower-case through L0H1,
compare flags exactly those two heads (and nothing when a task is compared with itself), and every
statistic in compare.json equals a plain-Python recomputation from its per-example values."""

from __future__ import annotations

import pytest

from circuitwise.compare.schema import CompareResults
from tests.unit.compare import reference as ref
from tests.unit.compare.known_forms import ROUTES

PLANTED = {ROUTES["upper"], ROUTES["lower"]}


def test_direct_effect_flags_exactly_the_routed_heads(forms_run):
    _, r = forms_run
    assert r["pairing"]["paired"] and r["pairing"]["kind"] == "declared"
    heads = r["heads"]
    flagged = {c for c, s in zip(heads["cells"], heads["significant"]) if s}
    assert flagged == PLANTED
    cell = {c: i for i, c in enumerate(heads["cells"])}
    up, low = cell[ROUTES["upper"]], cell[ROUTES["lower"]]
    assert heads["diff"][up] > 4 and heads["diff"][low] < -4  # A is upper: L0H0 more on A, L0H1 more on B
    assert heads["diff_low"][up] > 0 and heads["diff_high"][low] < 0  # intervals exclude 0
    assert abs(heads["b"][up]) < 1e-4 and abs(heads["a"][low]) < 1e-4  # each route is silent on the other form


def test_heads_patching_flags_exactly_the_routed_heads(forms_run):
    _, r = forms_run
    p = r["patching"]
    assert p["statistic"] == "ratio"
    assert {c for c, s in zip(p["cells"], p["significant"]) if s} == PLANTED
    i, j = p["cells"].index(ROUTES["upper"]), p["cells"].index(ROUTES["lower"])
    assert p["a"][i] == pytest.approx(1.0, abs=0.05) and p["b"][j] == pytest.approx(1.0, abs=0.05)


def test_the_same_task_flags_nothing(same_run):
    r = same_run.results
    assert r.pairing.paired and r.pairing.kind == "same-prompts"
    for c in (r.logit_diff, r.accuracy, r.lens, r.layers, r.heads, r.patching):
        assert c is not None and c.flagged() == []
        assert max(abs(d) for d in c.diff if d is not None) == 0.0
        assert all(p == 1.0 for p in c.p if p is not None)
    ov = r.circuits.overlap
    assert ov.jaccard == 1.0 and ov.jaccard_equal_size == 1.0 and ov.weighted == pytest.approx(1.0)
    own = {(x.circuit, x.on): x.faithfulness for x in r.circuits.cross}
    assert own[("a", "b")] == pytest.approx(own[("a", "a")], abs=1e-6)


def _check(c: dict, exact_cells: int | None = None) -> None:
    """Every number of one comparison, recomputed from its per-example values in plain Python."""
    ratio = c["statistic"] == "ratio"
    extra = (c["clean_a"], c["clean_b"], c["corrupted_a"], c["corrupted_b"]) if ratio else (None,) * 4
    for j, cell in enumerate(c["cells"][:exact_cells]):
        a, b = ref.column(c["per_example_a"], j), ref.column(c["per_example_b"], j)
        sa = ref.statistic(c["statistic"], a, extra[0], extra[2])
        sb = ref.statistic(c["statistic"], b, extra[1], extra[3])
        assert c["a"][j] == pytest.approx(sa, abs=1e-9), cell
        assert c["diff"][j] == pytest.approx(sa - sb, abs=1e-9), cell
        p = ref.exact_paired_p(c["statistic"], a, b, *extra)
        assert c["p"][j] == pytest.approx(p, abs=1e-12), cell
    if c["q"] is not None:
        assert c["q"] == pytest.approx(ref.benjamini_hochberg(c["p"]), abs=1e-12)
    decide = c["q"] if c["q"] is not None else c["p"]
    assert c["significant"] == [q <= c["alpha"] and abs(d) > c["min_difference"] for q, d in zip(decide, c["diff"])]


def test_paired_statistics_equal_an_independent_computation(forms_run):
    _, r = forms_run
    assert r["heads"]["n_a"] == 12 and "exact, all 4096" in r["heads"]["test"]
    for name in ("logit_diff", "accuracy", "heads", "patching", "layers"):
        _check(r[name])
    # Per-example values are the sides' own: the logit difference the baseline read.
    assert ref.column(r["logit_diff"]["per_example_a"], 0) == pytest.approx(r["a"]["logit_diff"])
    assert r["accuracy"]["a"][0] == pytest.approx(ref.mean([x > 0 for x in r["a"]["logit_diff"]]))


def test_circuits_follow_the_routes_and_do_not_transfer(forms_run):
    _, r = forms_run
    c = r["circuits"]
    assert f"{ROUTES['upper']}->logits" in c["a"]["edges"] and f"{ROUTES['lower']}->logits" in c["b"]["edges"]
    assert not any(e.startswith(ROUTES["lower"]) for e in c["a"]["edges"])
    cross = {(x["circuit"], x["on"]): x for x in c["cross"]}
    assert cross[("a", "a")]["faithfulness"] > 0.8 and cross[("b", "b")]["faithfulness"] > 0.8
    assert abs(cross[("a", "b")]["faithfulness"]) < 0.2 and abs(cross[("b", "a")]["faithfulness"]) < 0.2
    assert c["overlap"]["jaccard"] < 0.5 and ROUTES["upper"] not in c["overlap"]["shared_nodes"]
    assert len(cross[("a", "b")]["random_faithfulness"]) == 5


def test_compare_json_validates_and_is_complete(forms_run):
    out, r = forms_run
    res = CompareResults.model_validate(r)
    assert res.complete and res.format == "circuitwise.compare"
    assert (out / "compare.html").exists() and (out / "circuit_a.json").exists() and (out / "config.yaml").exists()
    assert any("L0H0" in s and "L0H1" in s for s in res.summary)
    one = res.heads.cell(ROUTES["upper"])
    assert one["significant"] and one["diff_low"] <= one["diff"] <= one["diff_high"] and one["q"] >= one["p"]
    assert res.heads.flagged()[0] in PLANTED and set(res.heads.flagged()) == PLANTED


def test_unpaired_statistics_also_find_the_routes(two_route):
    import circuitwise as cw

    root, ckpt, model = two_route
    out = cw.compare(a=str(root / "upper.jsonl"), b=str(root / "lower.jsonl"), model=str(ckpt), models=(model, model),
                     out=root / "unpaired", patching=False, circuit=None)
    r = out.results
    assert not r.pairing.paired and "pairing paired" in r.pairing.reason  # auto on two files: said, not guessed
    assert "two-sample" in r.heads.test and set(r.heads.flagged()) == PLANTED
    assert r.patching is None and r.circuits is None


def test_cross_faithfulness_p_values_say_when_they_are_bounds(same_run):
    for cell in same_run.results.circuits.cross:
        reached = sum(f is not None and f >= cell.faithfulness for f in cell.random_faithfulness)
        assert cell.random_p_is_bound == (reached == 0)
        assert cell.random_p == pytest.approx((reached + 1) / (len(cell.random_faithfulness) + 1))
