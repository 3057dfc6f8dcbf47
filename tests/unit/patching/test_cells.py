"""Exact patching of the cells that matter: their cost, the choice, and values equal to the full sweep."""

from __future__ import annotations

import math

import pytest
import torch

import circuitwise as cw
import circuitwise.plan as plan_module
from circuitwise.config import RunConfig
from circuitwise.patching import activation_patching
from circuitwise.patching.cells import MIN_EXACT_CELLS, cell_flops, select_cells


@pytest.fixture(scope="module")
def bundled_tok():
    model = cw.load_model("bundled", device="cpu")
    tok, _ = cw.tokenize_task(model, cw.get_task("opposites", n=24, split="heldout-template"), need_corrupted=True)
    return model, tok


@pytest.mark.parametrize("what", ["resid_pre", "heads", "heads_by_pos"])
def test_cell_costs_have_the_sweeps_shape_and_follow_the_cone(bundled_tok, what):
    model, tok = bundled_tok
    costs = cell_flops(what, model, tok)
    full = activation_patching(model, tok, what)
    assert costs.shape == full.values.shape
    assert bool((costs >= 0).all())
    # Later layers recompute fewer layers after them.
    per_layer = costs.flatten(1).sum(1)
    assert bool((per_layer[:-1] >= per_layer[1:]).all())
    if what != "heads":
        # Columns before every prompt's first clean/corrupted difference change nothing: free.
        differs = (tok.clean != tok.corrupted)
        first = int(differs.int().argmax(-1).min())
        assert float(costs[:, :first].sum()) == 0.0


@pytest.mark.parametrize("what", ["resid_pre", "heads", "heads_by_pos"])
@pytest.mark.parametrize("engine", ["cone", "hooks"])
def test_patching_only_some_cells_gives_those_cells_exactly_and_nan_elsewhere(bundled_tok, what, engine):
    model, tok = bundled_tok
    full = activation_patching(model, tok, what, engine=engine)
    g = torch.Generator().manual_seed(0)
    mask = torch.rand(full.values.shape, generator=g) < 0.4
    part = activation_patching(model, tok, what, engine=engine, cells=mask)
    assert part.config["exact_cells"] == int(mask.sum())
    torch.testing.assert_close(part.values[mask], full.values[mask], atol=0, rtol=0)
    assert bool(torch.isnan(part.values[~mask]).all())
    torch.testing.assert_close(part.raw[:, mask], full.raw[:, mask], atol=0, rtol=0)


def test_a_mask_of_the_wrong_shape_is_refused(bundled_tok):
    model, tok = bundled_tok
    with pytest.raises(cw.CircuitwiseError, match="boolean mask"):
        activation_patching(model, tok, "heads", cells=torch.ones(3, 3, dtype=torch.bool))


def test_the_choice_keeps_whole_sweeps_under_budget_and_the_top_cells_over_it():
    costs = {"a": torch.ones(2, 50), "b": torch.full((2, 4), 2.0)}
    ranking = {"a": torch.arange(100.0).view(2, 50), "b": torch.zeros(2, 4)}
    whole = select_cells(costs, ranking, budget_flops=1e9)
    assert whole.cells == {"a": None, "b": None} and whole.note() is None
    # b (cost 16) fits its half; a gets the rest: 40 of its most-attributed cells.
    sel = select_cells(costs, ranking, budget_flops=56.0)
    assert sel.cells["b"] is None
    a = sel.cells["a"]
    assert a is not None and int(a.sum()) == 40
    assert bool(a.flatten()[60:].all()) and not bool(a.flatten()[:60].any())
    assert sel.exact_flops <= 56.0 and "a 40 of 100" in (sel.note() or "")
    tiny = select_cells(costs, ranking, budget_flops=1.0)
    assert int(tiny.cells["a"].sum()) == MIN_EXACT_CELLS  # never fewer than the top few


def test_a_run_over_budget_patches_the_top_cells_and_finds_what_exhaustive_finds(tmp_path, monkeypatch):
    monkeypatch.setattr(plan_module, "EXACT_PATCHING_SECONDS", 1e-5)
    common = dict(task="opposites", model="bundled", n=48, split="heldout-template", circuit="")
    chosen = cw.run(RunConfig.build(**common, out=tmp_path / "chosen")).results
    every = cw.run(RunConfig.build(**common, out=tmp_path / "every", exhaustive=True)).results
    assert any("--exhaustive" in n for n in chosen.notes)
    assert not any("--exhaustive" in n for n in every.notes)
    hbp = chosen.patching["heads_by_pos"]
    n_cells = math.prod(len(v) for v in hbp.labels.values())
    assert hbp.config.exact_cells is not None and hbp.config.exact_cells < n_cells
    assert every.patching["heads_by_pos"].config.exact_cells is None
    for what in ("resid_pre", "heads", "heads_by_pos"):
        top = lambda r: [c.cell for c in r.patching[what].top[:3]]  # noqa: E731
        assert top(chosen) == top(every), what
    assert chosen.top_heads == every.top_heads
    # The plan's time for patching is the budget's, not the whole sweep's.
    t = lambda r: next(s.seconds for s in r.plan.resources.stages if s.stage == "patching")  # noqa: E731
    assert t(chosen) <= t(every)
