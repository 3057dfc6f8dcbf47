"""A GPT-2 whose circuit is known by construction (hand-set weights).

Task: the prompt is a capital letter and two filler words (" C and then"); the answer is the
letter (" C"), the wrong answer the corrupted prompt's letter. The planted circuit:

    input ──▶ L0H0.v     L0H0 attends from every position to position 1 and copies its letter
    L0H0  ──▶ L1H0.v     L1H0 attends uniformly and copies that copy into the unembedding's space
    L1H0  ──▶ logits     the unembedding reads only that space

Residual dims: 0–7 letter identity, 8 filler, 9 BOS, 10–25 positions, 30 a constant set by the
LayerNorm bias (L0H0's query), 32–39 L0H0's write, 40–47 L1H0's write, 48–63 a scratch space.
Every other head and both MLPs have random weights that read everything but write only into the
scratch space, so they change the residual's norm (and so every edge has some effect) without
carrying the letter to the answer directly.
"""

from __future__ import annotations

from pathlib import Path

LETTERS = [" A", " B", " C", " D", " E", " F", " G", " H"]
FILLERS = [" and", " then"]
PLANTED = {("input", "L0H0.v"), ("L0H0", "L1H0.v"), ("L1H0", "logits")}


def tokenizer_ids(out: Path) -> tuple[list[int], list[int], int]:
    """Write GPT-2's tokenizer into ``out``; the letters', fillers' and BOS token ids."""
    from transformers import GPT2TokenizerFast

    from tests.helpers import gpt2_tokenizer_files

    gpt2_tokenizer_files(out)
    tok = GPT2TokenizerFast.from_pretrained(out)
    return [tok.encode(t)[0] for t in LETTERS], [tok.encode(t)[0] for t in FILLERS], tok.bos_token_id


def make_known_circuit_checkpoint(out: Path, seed: int = 0, noise: float = 0.3) -> Path:
    import torch
    from transformers.initialization import no_init_weights
    from transformers import GPT2Config, GPT2LMHeadModel

    out = Path(out)
    letter_ids, filler_ids, bos = tokenizer_ids(out)
    d, H, dh, n_pos = 64, 4, 16, 16
    cfg = GPT2Config(n_layer=2, n_head=H, n_embd=d, n_positions=n_pos, vocab_size=50257,
                     tie_word_embeddings=False, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    with no_init_weights():  # every weight is set below; random init costs seconds
        model = GPT2LMHeadModel(cfg)
    g = torch.Generator().manual_seed(seed)
    c = 1.0
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        tr = model.transformer
        for i, t in enumerate(letter_ids):
            tr.wte.weight[t, i] = c
        for t in filler_ids:
            tr.wte.weight[t, 8] = c
        tr.wte.weight[bos, 9] = c
        for p in range(n_pos):
            tr.wpe.weight[p, 10 + p] = c
        for block in tr.h:
            block.ln_1.weight.fill_(1.0)
            block.ln_2.weight.fill_(1.0)
            block.ln_1.bias[30] = 1.0
        tr.ln_f.weight.fill_(1.0)

        def qkv(layer: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
            W = tr.h[layer].attn.c_attn.weight  # [d, 3d]: x @ W, heads are consecutive d_head blocks
            return W[:, :d], W[:, d : 2 * d], W[:, 2 * d :]

        Wq0, Wk0, Wv0 = qkv(0)
        Wq0[30, 0] = 5.0  # constant query …
        Wk0[11, 0] = 5.0  # … matched by the key of position 1 only
        for i in range(8):
            Wv0[i, i] = 1.0  # copy the letter
            tr.h[0].attn.c_proj.weight[i, 32 + i] = 1.0
        _, _, Wv1 = qkv(1)
        for i in range(8):
            Wv1[32 + i, i] = 1.0  # L1H0: uniform attention, copy dims 32–39 to 40–47
            tr.h[1].attn.c_proj.weight[i, 40 + i] = 1.0
        for i, t in enumerate(letter_ids):
            model.lm_head.weight[t, 40 + i] = 4.0

        def rnd(*shape: int) -> torch.Tensor:
            return torch.randn(*shape, generator=g) * noise

        scratch = slice(48, 64)
        for layer in range(2):
            Wq, Wk, Wv = qkv(layer)
            for h in range(1, H):  # distractor heads: read everything, write only to the scratch space
                cols = slice(h * dh, (h + 1) * dh)
                Wq[:, cols] = rnd(d, dh)
                Wk[:, cols] = rnd(d, dh)
                Wv[:, cols] = rnd(d, dh)
                tr.h[layer].attn.c_proj.weight[cols, scratch] = rnd(dh, 16)
            mlp = tr.h[layer].mlp
            mlp.c_fc.weight.copy_(rnd(d, 4 * d))
            mlp.c_proj.weight[:, scratch] = rnd(4 * d, 16)
    model.save_pretrained(out, safe_serialization=True)
    return out


def known_circuit_task(n: int = 16, seed: int = 0):
    """Prompts " X and then" → " X", corrupted with another letter (so the answer flips)."""
    import random

    import circuitwise as cw

    rng = random.Random(seed)
    examples = []
    for _ in range(n):
        a, b = rng.sample(LETTERS, 2)
        filler = "".join(rng.choice(FILLERS) for _ in range(2))
        examples.append(cw.Example(clean=a + filler, correct=a, incorrect=b, corrupted=b + filler))
    return cw.Task("copy-letter", tuple(examples), "Copy the first letter (known-circuit model).")
