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


@torch.inference_mode()
def answer_attention(model: Any, tok: TokenizedTask, heads: Sequence[tuple[int, int]], *,
                     max_prompts: int) -> dict[str, Any]:
    """What ``heads`` attend to from the answer position on the first ``max_prompts`` prompts, one
    unpadded forward each (the circuit explorer's attention panel): ``rows[head][prompt][key]``."""
    examples = list(range(min(max_prompts, len(tok))))
    rows: list[list[list[float]]] = [[] for _ in heads]
    for i in examples:
        if not heads:
            break
        pats = attention_patterns(model, tok, heads, example=i)
        for j, last_row in enumerate(pats.values[:, -1].tolist()):
            rows[j].append(last_row)
    return {"examples": examples, "heads": [head_label(l, h) for l, h in heads], "rows": rows, "of": len(tok)}


__all__ = ["AttentionPatterns", "answer_attention", "attention_patterns"]
