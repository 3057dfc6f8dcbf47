"""Uncertainty: bootstrap intervals equal a direct percentile computation, random circuits are
connected and of the asked size, and the random baseline's p-value is right on constructed cases."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from circuitwise.circuits import Graph, eap_ig, select_circuit
from circuitwise.circuits.patch import PatchedMetrics
from circuitwise.errors import ConfigError
from circuitwise.evaluation import RandomBaseline, evaluate_circuit
from circuitwise.evaluation.bootstrap import (
    Resampling,
    mean_interval,
    normalised_intervals,
    resample_indices,
    top_cell_order,
)
from circuitwise.evaluation.curve import random_masks
from circuitwise.evaluation.mib import MIB_BUDGETS, mib_intervals
from circuitwise.evaluation.outputs import summary_lines
from circuitwise.evaluation.random_circuits import connected_masks

RS = Resampling(resamples=1000, level=0.95, seed=3)


# ---- bootstrap intervals -------------------------------------------------------------------------

def test_a_means_interval_is_numpys_percentile_of_the_resampled_means():
    x = torch.randn(57, generator=torch.Generator().manual_seed(0)).double() * 2 + 1
    iv = mean_interval(x, RS)
    idx = resample_indices(57, RS).numpy()
    means = x.numpy()[idx].mean(1)
    lo, hi = np.percentile(means, [2.5, 97.5])
    assert iv.low == pytest.approx(lo, abs=1e-12) and iv.high == pytest.approx(hi, abs=1e-12)
    assert iv.covers(float(x.mean()))
    assert (iv.level, iv.resamples, iv.seed) == (0.95, 1000, 3)


def test_intervals_are_fixed_by_the_seed():
    x = torch.rand(40, generator=torch.Generator().manual_seed(1))
    assert mean_interval(x, RS) == mean_interval(x, RS)
    other = mean_interval(x, Resampling(1000, 0.95, 4))
    assert (other.low, other.high) != (mean_interval(x, RS).low, mean_interval(x, RS).high)


def test_a_ratio_is_bootstrapped_as_the_ratio_of_resampled_means():
    g = torch.Generator().manual_seed(2)
    clean, corr = 3 + torch.rand(30, generator=g), -1 + torch.rand(30, generator=g)
    patched = corr + 0.7 * (clean - corr) + 0.3 * torch.randn(30, generator=g)
    clean[0], corr[0] = 0.01, 0.0  # one prompt with a tiny own gap: a mean of ratios would explode on it
    iv = normalised_intervals(patched[:, None], clean, corr, RS)[0]
    idx = resample_indices(30, RS)
    p, c, r = (t.double()[idx].mean(1) for t in (patched, clean, corr))
    lo, hi = np.percentile(((p - r) / (c - r)).numpy(), [2.5, 97.5])
    assert iv.low == pytest.approx(lo, abs=1e-10) and iv.high == pytest.approx(hi, abs=1e-10)
    full = float((patched.mean() - corr.mean()) / (clean.mean() - corr.mean()))
    assert iv.covers(full) and iv.high - iv.low < 1


def test_bad_resampling_is_refused():
    with pytest.raises(ConfigError, match="resamples"):
        Resampling(1, 0.95, 0)
    with pytest.raises(ConfigError, match="level"):
        Resampling(100, 95, 0)


def test_cell_order_is_patchings_top_order():
    vals = torch.tensor([[0.1, -0.9, float("nan")], [0.5, 0.0, -0.2]])
    assert top_cell_order(vals, 3) == [1, 3, 5]


def test_cpr_and_cmd_intervals_cover_the_full_sample_values():
    g = torch.Generator().manual_seed(5)
    n, k = 40, len(MIB_BUDGETS)
    clean, corr = 2 + 0.2 * torch.randn(n, generator=g), -2 + 0.2 * torch.randn(n, generator=g)
    frac = torch.linspace(0.2, 1.0, k)
    rows = [corr] + [corr + f * (clean - corr) + 0.1 * torch.randn(n, generator=g) for f in frac.tolist() * 2]
    pm = PatchedMetrics(torch.stack(rows), clean, corr)
    cpr, cmd = mib_intervals(pm, RS)
    means = pm.patched.mean(1).double()
    f = (means[1:] - means[0]) / (float(clean.mean()) - means[0])
    b = MIB_BUDGETS
    area = lambda y: sum((b[i + 1] - b[i]) * (y[i] + y[i + 1]) / 2 for i in range(k - 1))  # noqa: E731
    assert cpr.covers(area(f[:k].tolist())) and cmd.covers(area((1 - f[k:]).abs().tolist()))


# ---- random connected circuits ---------------------------------------------------------------------

def _on_input_to_logits_paths(graph: Graph, mask: torch.Tensor) -> bool:
    """Every kept edge lies on an input→logits path of kept edges (checked by plain graph search)."""
    s_idx, r_idx = graph.edge_index
    node_of = {}
    for j, rec in enumerate(graph.receivers):
        node_of[j] = "logits" if rec.kind == "logits" else rec.node
    pairs = zip(s_idx[mask].tolist(), r_idx[mask].tolist(), strict=True)
    kept = [(graph.senders[s].name, node_of[r]) for s, r in pairs]
    forward, backward = {}, {}
    for a, b in kept:
        forward.setdefault(a, set()).add(b)
        backward.setdefault(b, set()).add(a)

    def reach(start, nxt):
        seen, todo = {start}, [start]
        while todo:
            for v in nxt.get(todo.pop(), ()):
                if v not in seen:
                    seen.add(v)
                    todo.append(v)
        return seen

    from_input, to_logits = reach("input", forward), reach("logits", backward)
    return all(a in from_input and b in to_logits for a, b in kept)


@pytest.mark.parametrize("shape", [(2, 4, True, False), (3, 2, False, False), (2, 3, True, True)])
@pytest.mark.parametrize("size", [1, 2, 5, 17, 40])
def test_random_circuits_are_connected_and_of_the_asked_size(shape, size):
    L, H, mlp, parallel = shape
    graph = Graph(L, H, has_mlp=mlp, parallel_attn_mlp=parallel)
    size = min(size, graph.n_edges)
    masks = connected_masks(graph, size, 25, torch.Generator().manual_seed(size))
    assert masks.shape == (25, graph.n_edges) and (masks.sum(1) == size).all()
    assert all(_on_input_to_logits_paths(graph, m) for m in masks)
    if size > 2:
        assert len({tuple(m.nonzero().flatten().tolist()) for m in masks}) > 1  # random, not one fixed circuit


def test_random_circuits_are_fixed_by_the_seed_and_fill_the_graph_at_its_size():
    graph = Graph(2, 4)
    a = random_masks(graph, 9, 10, torch.Generator().manual_seed(0))
    b = random_masks(graph, 9, 10, torch.Generator().manual_seed(0))
    assert torch.equal(a, b)
    assert connected_masks(graph, graph.n_edges, 2, torch.Generator()).all()
    assert not random_masks(graph, 0, 3, torch.Generator()).any()


# ---- the random baseline's p-value -----------------------------------------------------------------

def test_no_random_circuit_reaching_the_circuit_gives_the_bound():
    rb = RandomBaseline(0.97, [0.0] * 99 + [0.5], 6)
    assert rb.hits == 0 and rb.p_value_is_bound and rb.p_value == pytest.approx(1 / 101)
    assert rb.p_text() == "p < 0.0099"
    j = rb.to_json()
    assert j["p_value_is_bound"] is True and j["samples"] == 100 and j["hits"] == 0 and j["null"] == "connected"


def test_random_circuits_reaching_the_circuit_give_the_exact_count():
    rb = RandomBaseline(0.8, [0.9, 0.8, 0.1, float("nan")] + [0.0] * 96, 6)  # ties count, NaN never does
    assert rb.hits == 2 and not rb.p_value_is_bound and rb.p_value == pytest.approx(3 / 101)
    assert rb.p_text() == "p = 0.0297" and rb.to_json()["p_value_is_bound"] is False


# ---- the evaluation with intervals on a model --------------------------------------------------------

@pytest.fixture(scope="module")
def evaluated(tiny_model, tiny_tok):
    scores = eap_ig(tiny_model, tiny_tok, steps=3)
    circuit = select_circuit(scores, "top-n", n=30, model=tiny_model, tok=tiny_tok)
    return circuit, evaluate_circuit(tiny_model, tiny_tok, circuit, scores=scores, random_samples=12, seed=1,
                                     bootstrap=Resampling(200, 0.9, 0))


def test_the_evaluation_carries_intervals_and_a_connected_null(evaluated):
    circuit, ev = evaluated
    f = ev.faithfulness
    assert f.interval is not None and f.interval.covers(f.faithfulness) and f.interval.level == 0.9
    j = ev.to_json()
    assert j["faithfulness"]["interval"]["resamples"] == 200
    assert j["completeness"]["complement"]["interval"] is not None
    assert ev.mib is not None and ev.mib.cpr_interval.covers(ev.mib.cpr) and ev.mib.cmd_interval.covers(ev.mib.cmd)
    assert j["mib"]["cpr_interval"]["low"] <= ev.mib.cpr <= j["mib"]["cpr_interval"]["high"]
    assert j["random_baseline"]["samples"] == 12 and j["random_baseline"]["null"] == "connected"
    line = next(s for s in summary_lines(ev) if s.startswith("faithfulness"))
    assert "90% CI" in line
    # bootstrap=None (a library call that asks for none) adds no interval and no key
    assert "interval" not in ev.faithfulness.__class__(**{**ev.faithfulness.__dict__, "interval": None}).to_json()


# ---- coverage: an interval from a small sample covers the value of a larger one -----------------------

def test_intervals_from_40_prompts_cover_the_values_on_400():
    import circuitwise as cw
    from circuitwise.attribution import baseline
    from circuitwise.evaluation.faithfulness import faithfulness_of_masks

    model = cw.load_model("bundled", device="cpu")
    tok, _ = cw.tokenize_task(model, cw.get_task("opposites", n=400, seed=1), need_corrupted=True, on_invalid="drop")
    small = tok.slice(0, 40)
    rs = Resampling(1000, 0.95, 0)
    ld_small, ld_large = baseline(model, small).logit_diff, baseline(model, tok).logit_diff
    assert mean_interval(ld_small.double(), rs).covers(float(ld_large.mean()))
    circuit = select_circuit(eap_ig(model, small, steps=5), "top-n", n=8, model=model, tok=small)
    f_small = faithfulness_of_masks(model, small, circuit.edges)[0].with_interval(rs)
    f_large = faithfulness_of_masks(model, tok, circuit.edges)[0]
    assert f_small.interval.covers(f_large.faithfulness)
    assert f_small.interval.high - f_small.interval.low > 0  # a real spread, not a point
