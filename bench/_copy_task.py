"""A task random weights can do: the answer is the prompt's own last token ("copy the last word").

With random weights a corruption that changes an early word moves the logit difference by noise
only. Here the clean prompt ends in X, the corrupted one in Y (same template, same length), and
the logit difference compares X against Y. With tied embeddings the unembedding reads the last
token's own embedding back out of the residual, so the two runs' logit differences have opposite
signs: a real clean–corrupted gap (about 1.5 on GPT-2-small shapes, 2.5 on Qwen2.5-0.5B's, where
the random blocks flip its sign), so patching, circuits and the faithfulness/MIB curves have
something to normalise by. Untied random models (Pythia) get a gap of either sign.

Every template has the same number of GPT-2 tokens once the noun is in (each noun is one token
after a space), so the prompts share one length and the positional sweeps align by token.
"""

from __future__ import annotations

import random

from circuitwise.tasks import Example, Task

# 14 GPT-2 tokens each with the noun (checked by check_lengths on a model's tokenizer).
TEMPLATES = (
    "When I walked outside this morning the first thing I noticed was the {}",
    "After a long day at work all she could think about was the {}",
    "In the middle of the old quiet village there used to be a {}",
    "He opened the heavy box slowly and found that inside it was a {}",
)
NOUNS = (
    "dog cat house tree car book water fire king queen river stone bird fish horse apple door table "
    "chair window music paper money game road city light night bread milk ship train bell lamp wall "
    "garden letter phone box hat coat ring knife bottle cup"
).split()


def copy_task(n: int, seed: int = 0) -> Task:
    """``n`` pairs: clean ends in X, corrupted in Y; correct " X", incorrect " Y"."""
    rng = random.Random(seed)
    examples = []
    for i in range(n):
        x, y = rng.sample(NOUNS, 2)
        t = TEMPLATES[i % len(TEMPLATES)]
        examples.append(Example(clean=t.format(x), correct=" " + x, incorrect=" " + y, corrupted=t.format(y),
                                meta={"template": i % len(TEMPLATES)}))
    return Task("copy-last-token", tuple(examples),
                "The answer is the prompt's last word; the corrupted prompt ends in the incorrect one.")


def check_lengths(tokenizer) -> set[int]:
    """The token lengths of every template × noun (one value when the prompts align by token)."""
    return {len(tokenizer.encode(t.format(w))) for t in TEMPLATES for w in NOUNS}


__all__ = ["NOUNS", "TEMPLATES", "check_lengths", "copy_task"]
