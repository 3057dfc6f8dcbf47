"""A GPT-2 whose two "forms" of one task run through two different heads, by construction.

Task: the prompt is a letter and two filler words (" C and then" → " C"); the answer is the
letter, the wrong answer the corrupted prompt's letter. The letter is written in one of two
forms — upper case (" C") or lower case (" c") — the way a number is written in digits or words.
The planted routes:

    upper:  input ──▶ L0H0.v ──▶ logits     L0H0 attends to position 1 and copies an upper-case letter
    lower:  input ──▶ L0H1.v ──▶ logits     L0H1 does the same for a lower-case letter

so on the upper form only L0H0 writes the answer directly, on the lower form only L0H1. Residual
dims: 0–7 upper letters, 8–15 lower letters, 16 filler, 17 BOS, 18–33 positions, 34 a constant
(the LayerNorm bias: the heads' query), 40–47 L0H0's write, 48–55 L0H1's write (read by the
unembedding of the upper and the lower letters), 56–63 scratch. Every other head and both MLPs
have random weights that read everything and write only into the scratch space, so their direct
effect is zero on both forms and their difference is not one a test should flag.
"""

from __future__ import annotations

from pathlib import Path

UPPER = [" A", " B", " C", " D", " E", " F", " G", " H"]
LOWER = [" a", " b", " c", " d", " e", " f", " g", " h"]
FILLERS = [" and", " then"]
ROUTES = {"upper": "L0H0", "lower": "L0H1"}


def make_two_route_checkpoint(out: Path, seed: int = 0, noise: float = 0.3) -> Path:
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel, GPT2TokenizerFast

    from tests.helpers import gpt2_tokenizer_files

    out = Path(out)
    gpt2_tokenizer_files(out)
    tok = GPT2TokenizerFast.from_pretrained(out)
    ids = lambda words: [tok.encode(w)[0] for w in words]  # noqa: E731
    upper, lower, fillers, bos = ids(UPPER), ids(LOWER), ids(FILLERS), tok.bos_token_id
    d, H, dh, n_pos = 64, 4, 16, 16
    cfg = GPT2Config(n_layer=2, n_head=H, n_embd=d, n_positions=n_pos, vocab_size=50257,
                     tie_word_embeddings=False, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    model = GPT2LMHeadModel(cfg)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        tr = model.transformer
        for i, t in enumerate(upper):
            tr.wte.weight[t, i] = 1.0
        for i, t in enumerate(lower):
            tr.wte.weight[t, 8 + i] = 1.0
        for t in fillers:
            tr.wte.weight[t, 16] = 1.0
        tr.wte.weight[bos, 17] = 1.0
        for p in range(n_pos):
            tr.wpe.weight[p, 18 + p] = 1.0
        for block in tr.h:
            block.ln_1.weight.fill_(1.0)
            block.ln_2.weight.fill_(1.0)
            block.ln_1.bias[34] = 1.0
        tr.ln_f.weight.fill_(1.0)

        def qkv(layer: int):
            W = tr.h[layer].attn.c_attn.weight  # [d, 3d]: x @ W, heads are consecutive d_head blocks
            return W[:, :d], W[:, d : 2 * d], W[:, 2 * d :]

        Wq0, Wk0, Wv0 = qkv(0)
        for head, (src, dst) in enumerate(((0, 40), (8, 48))):
            Wq0[34, head * dh] = 5.0  # constant query …
            Wk0[19, head * dh] = 5.0  # … matched by the key of position 1 only
            for i in range(8):
                Wv0[src + i, head * dh + i] = 1.0
                tr.h[0].attn.c_proj.weight[head * dh + i, dst + i] = 1.0
        for i, t in enumerate(upper):
            model.lm_head.weight[t, 40 + i] = 4.0
        for i, t in enumerate(lower):
            model.lm_head.weight[t, 48 + i] = 4.0

        def rnd(*shape: int):
            return torch.randn(*shape, generator=g) * noise

        scratch = slice(56, 64)
        for layer in range(2):
            Wq, Wk, Wv = qkv(layer)
            for h in range(2 if layer == 0 else 0, H):
                cols = slice(h * dh, (h + 1) * dh)
                Wq[:, cols] = rnd(d, dh)
                Wk[:, cols] = rnd(d, dh)
                Wv[:, cols] = rnd(d, dh)
                tr.h[layer].attn.c_proj.weight[cols, scratch] = rnd(dh, 8)
            mlp = tr.h[layer].mlp
            mlp.c_fc.weight.copy_(rnd(d, 4 * d))
            mlp.c_proj.weight[:, scratch] = rnd(4 * d, 8)
    model.save_pretrained(out, safe_serialization=True)
    return out


def form_task(form: str, n: int = 12, seed: int = 0):
    """The letter-copy task in one form; the same seed gives the twin of the other form, pair by pair."""
    import random

    import circuitwise as cw

    letters = UPPER if form == "upper" else LOWER
    rng = random.Random(seed)
    examples = []
    for _ in range(n):
        a, b = rng.sample(range(8), 2)
        filler = "".join(rng.choice(FILLERS) for _ in range(2))
        examples.append(cw.Example(clean=letters[a] + filler, correct=letters[a], incorrect=letters[b],
                                   corrupted=letters[b] + filler, meta={"letter": a, "wrong": b, "filler": filler}))
    return cw.Task(f"letters-{form}", tuple(examples), f"Copy the first letter, written in {form} case.")
