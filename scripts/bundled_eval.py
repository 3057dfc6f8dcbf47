"""Held-out scores and the circuit check of a saved bundled model, through circuitwise itself.

The numbers come from the same functions the report uses (``cw.load_model``,
``cw.tokenize_task``, ``baseline``, ``direct_logit_attribution``), so the model card and
``circuitwise run opposites --model bundled`` agree.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch


@dataclass(frozen=True)
class Scores:
    n: int
    accuracy: float
    mean_logit_diff: float
    min_logit_diff: float


@dataclass(frozen=True)
class Ablation:
    heads: tuple[tuple[int, int], ...]  # (layer, head), top by DLA
    head_dla: tuple[float, ...]
    clean: float  # mean logit diff
    ablated_all_pos: float  # every position's z -> mean over all prompts' real tokens
    ablated_last_pos: float  # the last token's z -> mean over prompts' last tokens

    @property
    def drop_all_pos(self) -> float:
        return 1 - self.ablated_all_pos / self.clean

    @property
    def drop_last_pos(self) -> float:
        return 1 - self.ablated_last_pos / self.clean


def scores(model: Any, task: Any) -> Scores:
    import circuitwise as cw
    from circuitwise.attribution import baseline

    tok, _ = cw.tokenize_task(model, task)
    ld = baseline(model, tok).logit_diff
    return Scores(len(ld), float((ld > 0).float().mean()), float(ld.mean()), float(ld.min()))


def components(model: Any, task: Any) -> dict[str, float]:
    """Mean direct logit attribution of embed, pos_embed and each layer's attn_out / mlp_out."""
    import circuitwise as cw
    from circuitwise.attribution import direct_logit_attribution

    tok, _ = cw.tokenize_task(model, task)
    layers = direct_logit_attribution(model, tok).layers
    return dict(zip(layers.labels["component"], (float(v) for v in layers.values)))


ROLES = ("N1", "ADJ", "BUT", "N2")


def attention_by_role(model: Any, task: Any) -> dict[tuple[int, int], dict[str, float]]:
    """Each head's mean attention from the final token to the task's roles (N1, ADJ, BUT, N2)."""
    import circuitwise as cw

    tok, _ = cw.tokenize_task(model, task)
    rows = torch.arange(len(tok))
    out: dict[tuple[int, int], dict[str, float]] = {}
    with torch.inference_mode():
        _, cache = model.run_with_cache(tok.clean, names_filter=lambda n: n.endswith("hook_pattern"))
    for l in range(model.cfg.n_layers):
        pat = cache[f"blocks.{l}.attn.hook_pattern"][rows, :, tok.last]  # [batch, head, key]
        for role in ROLES:
            at = torch.tensor([r[role] for r in tok.roles], device=pat.device)
            means = pat[rows, :, at].mean(0)
            for h in range(model.cfg.n_heads):
                out.setdefault((l, h), {})[role] = float(means[h])
    return out


def _mean_ld(model: Any, tok: Any, hooks: list) -> float:
    from circuitwise.metrics import answer_logits, logit_diff

    with torch.inference_mode():
        logits = model.run_with_hooks(tok.clean, fwd_hooks=hooks)
    return float(logit_diff(answer_logits(logits, tok.last, tok.answers)).mean())


def ablation(model: Any, task: Any, k: int = 3) -> Ablation:
    """Mean-ablate the top-k heads by DLA (hook_z) and re-measure the mean logit difference."""
    import circuitwise as cw
    from circuitwise.attribution import direct_logit_attribution, top_heads

    tok, _ = cw.tokenize_task(model, task)
    dla = direct_logit_attribution(model, tok)
    heads, _ = top_heads(dla.heads.values, k)
    real = torch.arange(tok.clean.shape[1])[None, :] <= tok.last[:, None]  # [batch, pos]
    layers = sorted({l for l, _ in heads})
    names = [f"blocks.{l}.attn.hook_z" for l in layers]
    with torch.inference_mode():
        _, cache = model.run_with_cache(tok.clean, names_filter=lambda n: n in names)
    rows = torch.arange(len(tok))
    mean_all, mean_last = {}, {}
    for l, name in zip(layers, names):
        z = cache[name]  # [batch, pos, head, d_head]
        mean_all[l] = z[real].mean(0)  # [head, d_head]
        mean_last[l] = z[rows, tok.last].mean(0)

    def hook_all(z, hook):
        l = hook.layer()
        for lh, h in heads:
            if lh == l:
                z[:, :, h] = mean_all[l][h]
        return z

    def hook_last(z, hook):
        l = hook.layer()
        for lh, h in heads:
            if lh == l:
                z[rows, tok.last, h] = mean_last[l][h]
        return z

    clean = _mean_ld(model, tok, [])
    return Ablation(
        heads=tuple(heads),
        head_dla=tuple(float(dla.heads.values[l, h]) for l, h in heads),
        clean=clean,
        ablated_all_pos=_mean_ld(model, tok, [(n, hook_all) for n in names]),
        ablated_last_pos=_mean_ld(model, tok, [(n, hook_last) for n in names]),
    )


__all__ = ["ROLES", "Ablation", "Scores", "ablation", "attention_by_role", "components", "scores"]
