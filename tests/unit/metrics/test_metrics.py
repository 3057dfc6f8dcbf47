"""The metrics' read-out columns against their definitions on full logits."""

from __future__ import annotations

import pytest
import torch

from circuitwise.errors import ConfigError
from circuitwise.metrics import METRICS, READOUT_ROWS, Targets, columns, get_metric, readout, reference_of
from tests.unit.metrics.reference import plain_metric


def _case(n=5, d=8, vocab=300, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g, dtype=torch.float64)
    W_U = torch.randn(d, vocab, generator=g, dtype=torch.float64)
    b_U = torch.randn(vocab, generator=g, dtype=torch.float64)
    answers = torch.randint(0, vocab, (n, 2), generator=g)
    ref_logits = torch.randn(n, vocab, generator=g, dtype=torch.float64) * 3
    return x, W_U, b_U, answers, ref_logits


@pytest.mark.parametrize("name", list(METRICS))
@pytest.mark.parametrize("cap", [None, 7.5])
def test_each_metric_from_its_columns_is_its_definition(name, cap):
    x, W_U, b_U, answers, ref_logits = _case()
    logits = x @ W_U + b_U
    if cap is not None:
        logits = torch.tanh(logits / cap) * cap
    m = get_metric(name)
    t = Targets(answers, m.vocab, reference_of(ref_logits) if m.reference else None)
    ours = m.fn(readout(x, W_U, b_U, t, cap))
    want = plain_metric(name, logits, answers, ref_logits.log_softmax(-1))
    torch.testing.assert_close(ours, want, atol=1e-10, rtol=1e-10)
    torch.testing.assert_close(m.fn(columns(logits, t)), want, atol=1e-10, rtol=1e-10)


def test_kl_is_zero_on_its_reference_and_positive_elsewhere():
    x, W_U, b_U, answers, _ = _case()
    logits = x @ W_U + b_U
    ref = reference_of(logits)
    kl = get_metric("kl").fn(readout(x, W_U, b_U, Targets(answers, True, ref)))
    torch.testing.assert_close(kl, torch.zeros_like(kl), atol=1e-12, rtol=0)
    other = get_metric("kl").fn(readout(x * 0.5, W_U, b_U, Targets(answers, True, ref)))
    assert bool((other > 1e-6).all())


def test_vocabulary_read_out_is_built_in_row_chunks_with_the_same_numbers():
    x, W_U, b_U, answers, ref_logits = _case(n=2 * READOUT_ROWS + 3)
    t = Targets(answers, True, reference_of(ref_logits))
    whole = columns(x @ W_U + b_U, t)
    torch.testing.assert_close(readout(x, W_U, b_U, t), whole, atol=1e-10, rtol=1e-10)


def test_targets_slice_index_and_repeat_keep_rows_together():
    x, W_U, b_U, answers, ref_logits = _case(n=6)
    ref = reference_of(ref_logits)
    t = Targets(answers, True, ref)
    idx = torch.tensor([4, 1])
    sub = t[idx]
    assert torch.equal(sub.answers, answers[idx]) and torch.equal(sub.ref, ref[idx])
    rep = t[:2].repeat(3)
    assert len(rep) == 6 and torch.equal(rep.ref[4], ref[0]) and torch.equal(rep.answers[5], answers[1])


def test_a_token_the_reference_never_predicts_adds_nothing_to_kl():
    logits = torch.tensor([[2.0, 1.0, 0.0]], dtype=torch.float64)
    ref = torch.tensor([[0.0, float("-inf"), float("-inf")]], dtype=torch.float64)  # all mass on token 0
    cols = columns(logits, Targets(torch.tensor([[0, 1]]), True, ref))
    assert float(cols[0, 3]) == pytest.approx(-float(logits.log_softmax(-1)[0, 0]), abs=1e-12)


def test_half_precision_reads_the_softmax_in_float32():
    x, W_U, b_U, answers, _ = _case(vocab=5000)
    t = Targets(answers, True)
    full = columns((x @ W_U + b_U).float(), t)
    half = readout(x.bfloat16(), W_U.bfloat16(), b_U.bfloat16(), t)
    assert half.dtype == torch.float32
    # bf16 logits are off by their own rounding (≈0.4% of each logit); the log-sum-exp adds no more.
    assert float((get_metric("logprob").fn(half) - get_metric("logprob").fn(full)).abs().max()) < 0.5


def test_an_unknown_metric_names_the_choices():
    with pytest.raises(ConfigError, match="logit_diff, prob, logprob, kl"):
        get_metric("accuracy")
