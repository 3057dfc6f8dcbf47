"""Attention patterns of chosen heads on one example (what circuitsvis draws)."""

from __future__ import annotations

from typing import Any, Sequence

import torch

from circuitwise.attribution.dla import head_label
from circuitwise.errors import ConfigError
from circuitwise.tasks.tokenize import TokenizedTask
from circuitwise.types import Labelled, Shows


class AttentionPatterns(Labelled, Shows):
    """Patterns ``[head, dest, src]`` of some heads on one example; displays as circuitsvis's view."""

    def __repr__(self) -> str:
        return (f"AttentionPatterns({', '.join(self.labels['head'])} on {len(self.labels['src'])} tokens: "
                f"{''.join(self.labels['src'])[:60]!r})")

@torch.inference_mode()
def attention_patterns(
    model: Any, tok: TokenizedTask, heads: Sequence[tuple[int, int]], *, example: int = 0
) -> AttentionPatterns:
    """Patterns ``[head, dest, src]`` of ``heads`` (as (layer, head)) on one unpadded example."""
    if not 0 <= example < len(tok):
        raise ConfigError(f"Example {example} does not exist; the task has {len(tok)} examples (0–{len(tok) - 1}).")
    n = int(tok.last[example]) + 1
    tokens = tok.clean[example : example + 1, :n]
    layers = sorted({l for l, _ in heads})
    names = {f"blocks.{l}.attn.hook_pattern" for l in layers}
    _, cache = model.run_with_cache(tokens, names_filter=lambda name: name in names, return_type=None)
    pats = torch.stack([cache[f"blocks.{l}.attn.hook_pattern"][0, h] for l, h in heads]).float().cpu()
    toks = list(tok.str_tokens[example])
    return AttentionPatterns(pats, ("head", "dest", "src"),
                             {"head": [head_label(l, h) for l, h in heads], "dest": toks, "src": toks},
                             config={"example": example})


__all__ = ["AttentionPatterns", "attention_patterns"]
