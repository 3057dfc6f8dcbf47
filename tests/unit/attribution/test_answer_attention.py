"""The explorer's attention rows: prompts of one length run together, each row equal to its own forward's."""

from __future__ import annotations

import torch

import circuitwise as cw
from circuitwise.attribution.attention import answer_attention, attention_patterns


def test_batched_rows_equal_each_prompts_own_pattern(tiny_model):
    tok, _ = cw.tokenize_task(tiny_model, cw.get_task("opposites", n=12, seed=3))
    lengths = {int(n) for n in tok.last.tolist()}
    heads = [(0, 1), (1, 3), (1, 0)]
    got = answer_attention(tiny_model, tok, heads, max_prompts=10, batch_size=3)
    assert got["examples"] == list(range(10)) and got["of"] == len(tok)
    for i in range(10):
        want = attention_patterns(tiny_model, tok, heads, example=i).values[:, -1]
        for j in range(len(heads)):
            torch.testing.assert_close(torch.tensor(got["rows"][j][i]), want[j], atol=1e-6, rtol=0)
    assert len(lengths) > 1  # prompts of several lengths: several groups, each batched
    assert answer_attention(tiny_model, tok, [], max_prompts=5)["rows"] == []
