"""Attention patterns of chosen heads on one example (what circuitsvis draws)."""

from __future__ import annotations

from typing import Any, Sequence

import torch

from circuitwise.attribution.dla import head_label
from circuitwise.errors import ConfigError
from circuitwise.models import placement
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
    _, cache = model.run_with_cache(tokens, names_filter=lambda name: name in names, return_type=None,
                                    device=placement.cache_device(model))
    pats = torch.stack([cache[f"blocks.{l}.attn.hook_pattern"][0, h] for l, h in heads]).float().cpu()
    toks = list(tok.str_tokens[example])
    return AttentionPatterns(pats, ("head", "dest", "src"),
                             {"head": [head_label(l, h) for l, h in heads], "dest": toks, "src": toks},
                             config={"example": example})


@torch.inference_mode()
def answer_attention(model: Any, tok: TokenizedTask, heads: Sequence[tuple[int, int]], *,
                     max_prompts: int, batch_size: int = 32) -> dict[str, Any]:
    """What ``heads`` attend to from the answer position on the first ``max_prompts`` prompts (the circuit
    explorer's attention panel): ``rows[head][prompt][key]``. Prompts of one length run together, unpadded
    (so each row is its prompt's own forward's), ``batch_size`` at a time."""
    examples = list(range(min(max_prompts, len(tok))))
    found: dict[int, list[list[float]]] = {}
    layers = sorted({l for l, _ in heads})
    names = {f"blocks.{l}.attn.hook_pattern" for l in layers}
    by_length: dict[int, list[int]] = {}
    for i in examples if heads else []:
        by_length.setdefault(int(tok.last[i]) + 1, []).append(i)
    for n, ids in by_length.items():
        for start in range(0, len(ids), batch_size):
            chunk = ids[start:start + batch_size]
            _, cache = model.run_with_cache(tok.clean[chunk, :n], names_filter=lambda name: name in names,
                                            return_type=None, device=placement.cache_device(model))
            # [head, prompt, key]: each head's answer-position row.
            last = torch.stack([cache[f"blocks.{l}.attn.hook_pattern"][:, h, n - 1] for l, h in heads]).float()
            for k, i in enumerate(chunk):
                found[i] = last[:, k].cpu().tolist()
    rows: list[list[list[float]]] = [[found[i][j] for i in examples] for j in range(len(heads))]
    return {"examples": examples, "heads": [head_label(l, h) for l, h in heads], "rows": rows, "of": len(tok)}


__all__ = ["AttentionPatterns", "answer_attention", "attention_patterns"]
