"""A hand-set GPT-2 sketch: the shared residual layout and distractors of the GPT-2 constructions.

Residual dims: 0–7 letter identity (``LETTERS``), 8 filler, 9 BOS, 10–25 positions, 26–28 three
selector words (the q-composition task), 30 a constant every position gets from the LayerNorm
bias, 32–39 space A, 40–47 space B (the only space the unembedding reads), 48–63 scratch.

Everything starts at zero. A construction sets its planted heads (and MLP) by hand; every other
head and MLP gets random weights that read the whole residual but write only into the scratch
space, so through the LayerNorms' shared scale every edge has some small effect (scores are never
exactly tied at zero) while nothing but the planted path carries the answer.
"""

from __future__ import annotations

import functools
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from tests.unit.circuits.known_circuit import LETTERS, tokenizer_ids

D, H, DH, N_POS = 64, 4, 16, 16
FILLER, BOS, POS, CONST, A, B = 8, 9, 10, 30, 32, 40
SELECT = 26  # dims 26–28
SCRATCH = slice(48, 64)
SELECTORS = [" first", " second", " third"]


@dataclass
class Sketch:
    """A zeroed GPT-2 LM with the embedding layout set, and views of each head's weights."""

    model: Any
    letter_ids: list[int]
    filler_ids: list[int]
    selector_ids: list[int]
    bos: int

    @property
    def tr(self) -> Any:
        return self.model.transformer

    def _attn(self, layer: int, which: int, head: int) -> Any:
        # c_attn.weight is [d, 3d] (x @ W): q, k, v blocks of d columns, heads consecutive d_head blocks.
        start = which * D + head * DH
        return self.tr.h[layer].attn.c_attn.weight[:, start : start + DH]

    def q(self, layer: int, head: int) -> Any:
        return self._attn(layer, 0, head)

    def k(self, layer: int, head: int) -> Any:
        return self._attn(layer, 1, head)

    def v(self, layer: int, head: int) -> Any:
        return self._attn(layer, 2, head)

    def o(self, layer: int, head: int) -> Any:
        """``[d_head, d]``: the head's rows of c_proj."""
        return self.tr.h[layer].attn.c_proj.weight[head * DH : (head + 1) * DH]

    def mlp_in(self, layer: int) -> Any:
        return self.tr.h[layer].mlp.c_fc.weight  # [d, 4d]

    def mlp_out(self, layer: int) -> Any:
        return self.tr.h[layer].mlp.c_proj.weight  # [4d, d]

    def unembed_letters_from(self, space: int, scale: float = 4.0, answers: list[int] | None = None) -> None:
        """The unembedding reads letter ``i`` from dim ``space + i`` (and nothing else)."""
        for i, t in enumerate(answers or self.letter_ids):
            self.model.lm_head.weight[t, space + i] = scale

    def distract(self, heads: Iterable[tuple[int, int]], mlps: Iterable[int], *, seed: int = 0,
                 noise: float = 0.3, write: float = 0.05) -> None:
        """Random read-everything, write-to-scratch weights for every head and MLP not planted.

        Their writes are small (``write``) so the scratch space does not swamp the LayerNorm
        scale of the layer-1 readers; they still move every edge's score a little.
        """
        import torch

        g = torch.Generator().manual_seed(seed)
        planted_heads, planted_mlps = set(heads), set(mlps)

        def rnd(*shape: int, scale: float = noise) -> torch.Tensor:
            return torch.randn(*shape, generator=g) * scale

        for layer in range(len(self.tr.h)):
            for h in range(H):
                if (layer, h) in planted_heads:
                    continue
                for w in (self.q(layer, h), self.k(layer, h), self.v(layer, h)):
                    w.copy_(rnd(D, DH))
                self.o(layer, h)[:, SCRATCH] = rnd(DH, 16, scale=write)
            if layer not in planted_mlps:
                self.mlp_in(layer).copy_(rnd(D, 4 * D))
                self.mlp_out(layer)[:, SCRATCH] = rnd(4 * D, 16, scale=write)


@functools.lru_cache(maxsize=1)
def _tokenizer_dir() -> tuple[Path, tuple[list[int], list[int], list[int], int]]:
    """GPT-2's tokenizer written once per process (building it from the BPE files takes a second or two)."""
    from transformers import GPT2TokenizerFast

    where = Path(tempfile.mkdtemp(prefix="gt-tokenizer-"))
    letter_ids, filler_ids, bos = tokenizer_ids(where)
    selector_ids = [GPT2TokenizerFast.from_pretrained(where).encode(w) for w in SELECTORS]
    if any(len(ids) != 1 for ids in selector_ids):
        raise ValueError(f"each selector must be one GPT-2 token, got {selector_ids}")
    return where, (letter_ids, filler_ids, [ids[0] for ids in selector_ids], bos)


def _tokenizer_into(out: Path) -> tuple[list[int], list[int], list[int], int]:
    where, ids = _tokenizer_dir()
    shutil.copytree(where, out, dirs_exist_ok=True)
    return ids


def sketch(out: Path, n_layer: int = 2) -> Sketch:
    """A zeroed 2-layer GPT-2 with one-hot embeddings, GPT-2's tokenizer written into ``out``."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel
    from transformers.initialization import no_init_weights

    letter_ids, filler_ids, selector_ids, bos = _tokenizer_into(Path(out))
    cfg = GPT2Config(n_layer=n_layer, n_head=H, n_embd=D, n_positions=N_POS, vocab_size=50257,
                     tie_word_embeddings=False, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    with no_init_weights():  # every weight is zeroed and set below; random init costs seconds
        model = GPT2LMHeadModel(cfg)
    s = Sketch(model, letter_ids, filler_ids, selector_ids, bos)
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        E = s.tr.wte.weight
        for i, t in enumerate(letter_ids):
            E[t, i] = 1.0
        for t in filler_ids:
            E[t, FILLER] = 1.0
        for i, t in enumerate(s.selector_ids):
            E[t, SELECT + i] = 1.0
        E[bos, BOS] = 1.0
        for p in range(N_POS):
            s.tr.wpe.weight[p, POS + p] = 1.0
        for block in s.tr.h:
            block.ln_1.weight.fill_(1.0)
            block.ln_2.weight.fill_(1.0)
            block.ln_1.bias[CONST] = 1.0
        s.tr.ln_f.weight.fill_(1.0)
    return s


def save(s: Sketch, out: Path) -> Path:
    s.model.save_pretrained(out, safe_serialization=True)
    return Path(out)


__all__ = ["A", "B", "BOS", "CONST", "D", "DH", "FILLER", "H", "LETTERS", "N_POS", "POS", "SCRATCH", "SELECT",
           "SELECTORS", "Sketch", "save", "sketch"]
