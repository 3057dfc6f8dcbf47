"""The batched evaluation (one stacked engine call) gives the separate functions' numbers."""

from __future__ import annotations

import pytest
import torch

from circuitwise.circuits import Circuit, eap_ig, select_circuit
from circuitwise.evaluation import evaluate_circuit, faithfulness_curve, shortlist_agreement
from circuitwise.evaluation.curve import random_masks
from circuitwise.evaluation.evaluate import curve_sizes
from circuitwise.evaluation.faithfulness import faithfulness_of_masks
from circuitwise.evaluation.mib import mib_metrics


@pytest.fixture(scope="module")
def scores(tiny_model, tiny_tok):
    return eap_ig(tiny_model, tiny_tok, steps=3)


@pytest.fixture(scope="module")
def circuit(tiny_model, tiny_tok, scores):
    return select_circuit(scores, "top-n", n=30, model=tiny_model, tok=tiny_tok)


@pytest.mark.parametrize("ablation", ["corrupted", "mean"])
def test_batched_evaluation_equals_the_separate_functions(tiny_model, tiny_tok, scores, circuit, ablation):
    # batch_size 3 on the six prompts: two batches, so the stacking crosses batch boundaries too
    kw = dict(ablation=ablation, batch_size=3)
    ev = evaluate_circuit(tiny_model, tiny_tok, circuit, scores=scores, random_samples=5, shortlist=12, seed=7, **kw)
    gen = torch.Generator().manual_seed(7)
    masks = torch.cat([circuit.edges[None], (~circuit.edges)[None], random_masks(circuit.graph, circuit.n_edges,
                                                                                 5, gen)])
    sep = faithfulness_of_masks(tiny_model, tiny_tok, masks, **kw)
    got = [ev.faithfulness, ev.completeness.complement]
    for a, b in zip(sep[:2], got):
        assert a.faithfulness == pytest.approx(b.faithfulness, abs=1e-6)
        torch.testing.assert_close(a.per_example, b.per_example, atol=1e-5, rtol=0)
    assert [r.faithfulness for r in sep[2:]] == pytest.approx(ev.random.random_faithfulness, abs=1e-6)
    crv = faithfulness_curve(tiny_model, tiny_tok, scores, random_samples=3, seed=7, sizes=curve_sizes(scores), **kw)
    assert ev.curve.n_edges == crv.n_edges and ev.curve.top == crv.top
    assert ev.curve.faithfulness == pytest.approx(crv.faithfulness, abs=1e-6)
    assert ev.curve.random_mean == pytest.approx(crv.random_mean, abs=1e-6)
    assert ev.curve.random_std == pytest.approx(crv.random_std, abs=1e-6)
    agr = shortlist_agreement(tiny_model, tiny_tok, scores, k=12, batch_size=3)  # exact: corrupted edges
    assert ev.agreement.edges == agr.edges
    assert ev.agreement.exact == pytest.approx(agr.exact, abs=1e-5)
    m = mib_metrics(tiny_model, tiny_tok, scores, **kw)
    assert ev.mib.signed.faithfulness == pytest.approx(m.signed.faithfulness, abs=1e-6)
    assert ev.mib.absolute.faithfulness == pytest.approx(m.absolute.faithfulness, abs=1e-6)
    assert ev.mib.cpr == pytest.approx(m.cpr, abs=1e-6) and ev.mib.cmd == pytest.approx(m.cmd, abs=1e-6)


def test_mib_is_left_out_without_a_full_ranking(tiny_model, tiny_tok, circuit):
    # the circuit's own scores cover only its edges: no MIB ranking of the whole graph
    own = torch.where(circuit.edges, circuit.scores, torch.tensor(float("nan")))
    bare = Circuit(circuit.graph, circuit.edges, own, circuit.method)
    ev = evaluate_circuit(tiny_model, tiny_tok, bare, random_samples=0, curve=False)
    assert ev.mib is None and ev.to_json()["mib"] is None


def test_patched_metrics_stacks_dedupes_and_knows_the_endpoints(tiny_model, tiny_tok, monkeypatch):
    import circuitwise.circuits.patch as patch
    from circuitwise.circuits.forward import run_graph
    from circuitwise.circuits.scores import prepare

    prep = prepare(tiny_model, tiny_tok, batch_size=4)  # two batches of the six prompts
    E = prep.gm.graph.n_edges
    rnd = torch.rand(6, E, generator=torch.Generator().manual_seed(3)) < 0.5
    masks = torch.cat([rnd, torch.ones(1, E, dtype=torch.bool), torch.zeros(1, E, dtype=torch.bool), rnd[:1]])
    pm = patch.patched_metrics(prep, masks)
    assert torch.equal(pm.patched[6], pm.clean) and torch.equal(pm.patched[7], pm.corrupted)
    assert torch.equal(pm.patched[8], pm.patched[0])
    # the endpoints really are those runs: through the engine with every edge patched / kept
    b = prep.tok
    x_c, x_k = prep.gm.embed(b.clean), prep.gm.embed(b.corrupted)
    rep = run_graph(prep.gm, x_k, b.last, b.answers, record=True).outputs
    for keep, want in ((0.0, pm.corrupted), (1.0, pm.clean)):
        dense = torch.full((1, len(prep.gm.graph.senders), len(prep.gm.graph.receivers)), keep)
        got = prep.metric(run_graph(prep.gm, x_c, b.last, b.answers, keep=dense, replacement=rep).answer_logits[0])
        torch.testing.assert_close(got.float(), want, atol=1e-5, rtol=0)
    # one stack of everything, and one variant at a time, give the same numbers
    for budget in (1e12, 1.0):
        monkeypatch.setattr(patch, "STACK_BYTES", budget)
        torch.testing.assert_close(patch.patched_metrics(prep, masks).patched, pm.patched, atol=1e-5, rtol=0)
    mean = patch.patched_metrics(prep, masks, ablation="mean")  # a mean-ablated empty circuit is run, not assumed
    assert not torch.equal(mean.patched[7], mean.corrupted)


def test_batches_by_length_keep_each_examples_row(tiny_model):
    """Prompts of mixed lengths run grouped by length; every number stays on its own example."""
    import circuitwise as cw
    from circuitwise.attribution import baseline
    from circuitwise.circuits.patch import patched_metrics
    from circuitwise.circuits.scores import prepare

    tok = cw.tokenize_task(tiny_model, cw.get_task("opposites", n=10, seed=3), need_corrupted=True)[0]
    assert len(set(tok.last.tolist())) > 1  # mixed lengths, in no sorted order
    E = prepare(tiny_model, tok, check=False).gm.graph.n_edges
    masks = torch.rand(3, E, generator=torch.Generator().manual_seed(0)) < 0.5
    pm = patched_metrics(prepare(tiny_model, tok, batch_size=4), masks)
    torch.testing.assert_close(pm.clean, baseline(tiny_model, tok).logit_diff.float(), atol=1e-4, rtol=0)
    for i in range(len(tok)):
        one = patched_metrics(prepare(tiny_model, tok.slice(i, i + 1), check=False), masks)
        torch.testing.assert_close(pm.patched[:, i], one.patched[:, 0], atol=1e-5, rtol=0)
        assert float(pm.corrupted[i]) == pytest.approx(float(one.corrupted[0]), abs=1e-5)
