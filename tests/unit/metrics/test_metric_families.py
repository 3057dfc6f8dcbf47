"""prob, logprob and kl through every engine on every family, against TransformerLens hooks.

Each engine reads the metric from its own read-out columns (circuitwise.metrics.readout); the
references here compute it from the model's full logits, through TransformerLens's own tools
where one exists (edge faithfulness, edge attribution, the activation-patching sweeps) and
plain hooks elsewhere (finite differences for attribution patching).
"""

from __future__ import annotations

import pytest
import torch

import circuitwise as cw
from circuitwise.circuits import eap, graph_of
from circuitwise.circuits.forward import run_graph
from circuitwise.circuits.patch import patched_metrics
from circuitwise.circuits.scores import prepare
from circuitwise.metrics import get_metric, targets_of
from circuitwise.patching import SWEEPS, activation_patching, attribution_patching
from tests.unit.circuits.tl_reference import params_require_grad, receiver_name, sender_name, tl_edges
from tests.unit.metrics.reference import VOCAB_METRICS, plain_metric, reference_logprobs, tl_metric
from tests.unit.patching.finite_difference import finite_difference

# Tolerances relative to how much the metric moves between the clean and corrupted runs: these
# random 50k-token checkpoints predict almost uniformly, so a probability is ~1e-5, a KL ~1e-5 and
# a log-probability moves by ~1e-2 around −11; a fixed absolute tolerance would pass anything.
RTOL = 1e-3
# The floor: float32 logits differ from the bridge's by ~1e-7 relative, which leaves ~1e-8 in a KL
# (the reference is stored in float32) — against KLs of 0.1–5 on trained models.
FLOOR = 5e-8


def close(ours, want, spread):
    ours, want = torch.as_tensor(ours).double(), torch.as_tensor(want).double()
    torch.testing.assert_close(ours, want, atol=max(RTOL * spread, FLOOR), rtol=0)


@pytest.fixture(scope="module")
def spread(family_model, family_tok, ref):
    """Per metric: the largest clean − corrupted difference over the prompts (the scale of every effect)."""
    out = {}
    for name in VOCAB_METRICS:
        gap = (_plain(family_model, family_tok.clean, family_tok, name, ref)
               - _plain(family_model, family_tok.corrupted, family_tok, name, ref))
        out[name] = float(gap.abs().max())
        # float32's own noise on these values is ~1e-7 relative (1e-12 on a KL computed in float64).
        assert out[name] > 1e-9, f"degenerate fixture: {name} does not move"
    return out


@pytest.fixture(scope="module")
def family_tok(family_model):
    # The seed prompts whose corruption moves every family's answer most; equal lengths (TL's sweeps read -1).
    tok, _ = cw.tokenize_task(family_model, cw.get_task("opposites-seed").subset((1, 2, 5)), need_corrupted=True)
    return tok


@pytest.fixture(scope="module")
def ref(family_model, family_tok):
    return reference_logprobs(family_model, family_tok.clean, family_tok.last)


def _plain(model, tokens, tok, name, ref):
    with torch.no_grad():
        logits = model(tokens)
    return plain_metric(name, logits[torch.arange(len(tok)), tok.last], tok.answers, ref).float()


@pytest.mark.parametrize("name", VOCAB_METRICS)
def test_graph_forward_reads_each_metric_as_the_model_does(family_model, family_tok, ref, spread, name):
    prep = prepare(family_model, family_tok, name)
    gm, tok = prep.gm, prep.tok
    clean = run_graph(gm, gm.embed(tok.clean), tok.last, targets_of(tok), record=True)
    corrupted = run_graph(gm, gm.embed(tok.corrupted), tok.last, targets_of(tok), record=True)
    want_clean = _plain(family_model, tok.clean, tok, name, ref)
    want_corr = _plain(family_model, tok.corrupted, tok, name, ref)
    close(prep.metric(clean.answer_logits[0]), want_clean, spread[name])
    close(prep.metric(corrupted.answer_logits[0]), want_corr, spread[name])
    # Every edge reading the corrupted senders, from clean inputs: the corrupted run's metric.
    none = torch.zeros(1, len(gm.graph.senders), len(gm.graph.receivers))
    patched = run_graph(gm, gm.embed(tok.clean), tok.last, targets_of(tok), keep=none,
                        replacement=corrupted.outputs)
    close(prep.metric(patched.answer_logits[0]), want_corr, spread[name])


@pytest.mark.parametrize("name", VOCAB_METRICS)
def test_patched_circuit_equals_transformerlens_faithfulness_for_each_metric(family_ckpt, family_model, family_tok,
                                                                             ref, spread, name):
    from transformer_lens.tools.analysis.attribution_patching import faithfulness as tl_faithfulness

    tok = family_tok
    g = graph_of(family_model)
    ids = torch.randperm(g.n_edges, generator=torch.Generator().manual_seed(7))[:25].tolist()
    keep = torch.zeros(g.n_edges, dtype=torch.bool)
    keep[ids] = True
    # The circuit's raw metric: these fixtures' gaps are below the normalised faithfulness's floor.
    ours = patched_metrics(prepare(family_model, tok, name), keep[None]).patched[0]
    got, want = [], []
    for i in range(2):
        try:
            r = tl_faithfulness(family_model, tok.clean[i:i + 1], tok.corrupted[i:i + 1],
                                tl_metric(name, tok, ref, rows=[i]), tl_edges(g, ids, tok.clean.shape[1]))
        except Exception as e:  # noqa: BLE001 - TL's own limits, named in the skip
            pytest.skip(f"TransformerLens's faithfulness fails on {family_ckpt[0]}: {type(e).__name__}: {e}")
        got.append(float(ours[i]))
        want.append(r.corrupt_metric + r.recovered * (r.full_metric - r.corrupt_metric))
    close(got, want, spread[name])


@pytest.mark.parametrize("name", VOCAB_METRICS)
def test_eap_equals_transformerlens_edge_attribution_for_each_metric(family_ckpt, family_model, family_tok, ref,
                                                                     spread, name):
    from transformer_lens.tools.analysis.attribution_patching import EdgeAttributionConfig, attribution_patch

    tok = family_tok
    g = graph_of(family_model)
    want = torch.zeros(g.n_edges, dtype=torch.float64)
    with params_require_grad(family_model):
        for i in range(len(tok)):
            try:
                res = attribution_patch(family_model, tok.clean[i:i + 1], tok.corrupted[i:i + 1],
                                        tl_metric(name, tok, ref, rows=[i]), EdgeAttributionConfig(granularity="edge"))
            except Exception as e:  # noqa: BLE001
                pytest.skip(f"TransformerLens's edge attribution fails on {family_ckpt[0]}: {type(e).__name__}: {e}")
            for (w, r), v in res.edge_scores.items():
                want[g.edge_id(sender_name(w), receiver_name(r))] += v
    want /= len(tok)
    ours = eap(family_model, tok, gradient="corrupted", batch_size=2, metric=name)
    assert ours.metric == name
    assert float(want.abs().max()) > 1e-3 * spread[name], "degenerate: TL's attribution moves nothing"
    close(ours.scores, want, float(want.abs().max()))


@pytest.mark.parametrize("name", VOCAB_METRICS)
@pytest.mark.parametrize("what", ["resid_pre", "heads"])
def test_activation_patching_equals_transformerlens_for_each_metric(family_model, family_tok, ref, spread, name, what):
    from transformer_lens import patching

    tok = family_tok
    _, clean_cache = family_model.run_with_cache(tok.clean)
    want = getattr(patching, SWEEPS[what].tl_function)(family_model, tok.corrupted, clean_cache,
                                                      tl_metric(name, tok, ref)).cpu().float()
    res = activation_patching(family_model, tok, what, normalize=False, metric=name)
    assert res.metric == name
    close(res.values, want, spread[name])
    close(res.clean, _plain(family_model, tok.clean, tok, name, ref), spread[name])


@pytest.mark.parametrize("name", VOCAB_METRICS)
def test_attribution_patching_equals_a_finite_difference_for_each_metric(family_model, family_tok, ref, name):
    tok = family_tok
    attr = attribution_patching(family_model, tok, "resid_pre", normalize=False, metric=name)
    effect = attr.raw - attr.corrupted.view(-1, 1, 1)  # [example, layer, pos]
    layer, pos = (int(c) for c in torch.unravel_index(effect.abs().mean(0).argmax(), effect.shape[1:]))
    per_example = tl_metric(name, tok, ref, reduce=False)
    fd = finite_difference(family_model, tok, "resid_pre", layer, (pos,), metric=per_example).float()
    # A linear estimate of a nonlinear patch: its first-order term, to the finite difference's own error.
    torch.testing.assert_close(effect[:, layer, pos].double(), fd.double(), atol=5e-3 * float(fd.abs().max()),
                               rtol=5e-3)


def test_kl_of_the_clean_run_is_zero_and_patching_nothing_or_everything_gives_the_endpoints(family_model, family_tok,
                                                                                           spread):
    tok = family_tok
    g = graph_of(family_model)
    everything = torch.ones(g.n_edges, dtype=torch.bool)
    nothing = torch.zeros(g.n_edges, dtype=torch.bool)
    prep = prepare(family_model, tok, "kl")
    # Measured, not short-cut: one edge off the full set and one edge on the empty one change almost nothing.
    pm = patched_metrics(prep, torch.stack([everything, nothing]))
    assert float(pm.clean.abs().max()) < max(RTOL * spread["kl"], FLOOR)  # the reference is the clean run itself
    close(pm.patched[0], pm.clean, spread["kl"])
    close(pm.patched[1], pm.corrupted, spread["kl"])
    assert get_metric("kl").higher_is_clean is False
