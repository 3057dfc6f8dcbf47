"""Right padding changes no number: prompts of different lengths batched together give what each
prompt gives run alone, on every family (issue 21, item 7).

The prompts are 2, 7, 10 and 15 GPT-2 tokens (one more with BOS), in mixed order so the shortest
is not row 0: the windowed fixtures' window (4 tokens) lies between the shortest and the rest, and
rotary, partial rotary, grouped keys, post-norms and soft-caps all see padded rows. Each quantity
is computed twice — all prompts in one padded batch, and each prompt tokenized alone (a task of one
example: no padding at all) — and the two are compared; nothing is compared with stored numbers.
"""

from __future__ import annotations

import pytest
import torch

import circuitwise as cw
from circuitwise.attribution import baseline
from circuitwise.circuits import eap_ig
from circuitwise.patching import activation_patching, attribution_patching
from tests.families import WINDOW, WINDOWED

ATOL, RTOL = 1e-4, 1e-4

# (clean, corrupted, correct, incorrect, the flipped word): one token for one in both prompts.
PROMPTS = [
    ("A tortoise is old, but a kitten is", "A tortoise is young, but a kitten is", " young", " old", "old"),
    ("Ice is", "Fire is", " cold", " hot", "Ice"),
    ("The very old and slow tortoise is old, but the tiny kitten is",
     "The very old and slow tortoise is young, but the tiny kitten is", " young", " old", "old"),
    ("Snow is cold, so fire is", "Snow is hot, so fire is", " hot", " cold", "cold"),
]


def _example(clean: str, corrupted: str, correct: str, incorrect: str, word: str) -> cw.Example:
    at = 0 if clean.startswith(word) else clean.rindex(f" {word},") + 1
    roles = {"X": at, "END": clean.rindex(" is") + 1}
    return cw.Example(clean, correct, incorrect, corrupted=corrupted, roles=roles)


TASK = cw.Task("padding", tuple(_example(*p) for p in PROMPTS))


def _close(batched: torch.Tensor, alone: torch.Tensor) -> None:
    torch.testing.assert_close(batched, alone, atol=ATOL, rtol=RTOL)


@pytest.fixture(scope="module")
def toks(family_model):
    """(the padded batch, each example tokenized on its own)."""
    tok, _ = cw.tokenize_task(family_model, TASK, need_corrupted=True)
    alone = [cw.tokenize_task(family_model, cw.Task("one", (ex,)), need_corrupted=True)[0] for ex in TASK]
    return tok, alone


def test_the_batch_is_padded_and_each_example_alone_is_not(family_ckpt, family_model, toks):
    tok, alone = toks
    lengths = tok.lengths.tolist()
    assert len(set(lengths)) == len(lengths) and min(lengths) < WINDOW < max(lengths)
    if family_ckpt[0] in WINDOWED:  # the window the model really has lies between the lengths
        hf = family_model.original_model.config
        assert min(lengths) < (getattr(hf, "sliding_window", None) or hf.window_size) < max(lengths)
    width = tok.clean.shape[1]
    assert width == max(lengths)
    for i, one in enumerate(alone):
        n = lengths[i]
        assert one.clean.shape == (1, n) and int(one.last[0]) == n - 1  # no padding at all
        torch.testing.assert_close(one.clean[0], tok.clean[i, :n], atol=0, rtol=0)
        torch.testing.assert_close(one.corrupted[0], tok.corrupted[i, :n], atol=0, rtol=0)
        assert (tok.clean[i, n:] == tok.pad_id).all() and (tok.corrupted[i, n:] == tok.pad_id).all()
        assert one.roles == (tok.roles[i],) and torch.equal(one.answers[0], tok.answers[i])
        # batch_size=1 is unpadded too: each batch is trimmed to its own width.
        b = list(tok.batches(1))[i]
        assert torch.equal(b.clean, one.clean) and torch.equal(b.corrupted, one.corrupted)


def test_baseline(family_model, toks):
    tok, alone = toks
    together = baseline(family_model, tok, batch_size=len(tok))
    assert together.logit_diff.abs().max() > 0.1, "degenerate fixture: the logit differences are ~0"
    for i, one in enumerate(alone):
        b = baseline(family_model, one)
        _close(together.answer_logits[i], b.answer_logits[0])
        _close(together.logit_diff[i], b.logit_diff[0])
        # A rank moves only past logits within rounding of the answer's: random logits tie closely (qwen3's
        # correct answer ranks ~32,000th, and a 1e-7 difference between batched and lone matmuls moved it by one).
        with torch.no_grad():
            logits = family_model(one.clean)[0, int(one.last[0])].float()
        near = int(((logits - logits[int(one.answers[0, 0])]).abs() <= ATOL).sum()) - 1
        assert abs(int(together.correct_rank[i]) - int(b.correct_rank[0])) <= near


SWEEPS = [("heads", "auto", "auto"), ("heads", "auto", "hooks"), ("resid_pre", "role", "auto"),
          ("resid_pre", "end", "auto")]


def _columns(batched, alone, i: int, align: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Row i of the batched sweep and the lone sweep's row, on the columns they share.

    ``end`` alignment keeps the shortest prompt's number of positions, counted from each prompt's
    end; alone, a prompt keeps all of its own, so the batch's columns are the lone run's last ones.
    """
    a, b = batched.raw[i], alone.raw[0]
    if align == "end":
        n = a.shape[-1]
        assert batched.labels["pos"] == alone.labels["pos"][-n:]
        b = b[..., -n:]
    else:
        assert batched.labels == alone.labels
    return a, b


@pytest.mark.parametrize("what,align,engine", SWEEPS, ids=["-".join(s) for s in SWEEPS])
def test_activation_patching(family_model, toks, what, align, engine):
    tok, alone = toks
    together = activation_patching(family_model, tok, what, normalize=False, align=align, engine=engine,
                                   batch_size=len(tok))
    assert together.raw.abs().max() > 0.1
    for i, one in enumerate(alone):
        a = activation_patching(family_model, one, what, normalize=False, align=align, engine=engine)
        assert a.config["engine"] == together.config["engine"]
        _close(together.clean[i], a.clean[0])
        _close(together.corrupted[i], a.corrupted[0])
        _close(*_columns(together, a, i, align))


@pytest.mark.parametrize("what,align", [("heads", "auto"), ("resid_pre", "role"), ("resid_pre", "end")])
@pytest.mark.parametrize("direction", ["denoise", "noise"])
def test_attribution_patching(family_model, toks, what, align, direction):
    tok, alone = toks
    together = attribution_patching(family_model, tok, what, normalize=False, align=align, direction=direction,
                                    batch_size=len(tok))
    for i, one in enumerate(alone):
        a = attribution_patching(family_model, one, what, normalize=False, align=align, direction=direction)
        _close(together.clean[i], a.clean[0])
        _close(together.corrupted[i], a.corrupted[0])
        _close(*_columns(together, a, i, align))


def test_eap_ig_edge_scores_are_the_mean_of_each_prompts(family_model, toks):
    """Scores average over examples (summed over positions): the batch's is the mean of the lone ones."""
    tok, alone = toks
    together = eap_ig(family_model, tok, steps=2, batch_size=len(tok))
    ones = [eap_ig(family_model, one, steps=2, batch_size=1) for one in alone]
    assert together.n_examples == len(tok)
    mean = torch.stack([o.scores for o in ones]).mean(0)
    scale = float(mean.abs().max())
    assert scale > 1e-3
    torch.testing.assert_close(together.scores, mean, atol=ATOL * scale, rtol=RTOL)
    assert together.clean_metric == pytest.approx(sum(o.clean_metric for o in ones) / len(ones), abs=ATOL, rel=RTOL)
    assert together.corrupted_metric == pytest.approx(sum(o.corrupted_metric for o in ones) / len(ones),
                                                      abs=ATOL, rel=RTOL)
