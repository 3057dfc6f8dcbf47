"""Held-out scores and the circuit of a saved bundled model, measured through circuitwise.

Scores, direct logit attribution and head patching come from the functions the report uses
(``cw.load_model``, ``cw.tokenize_task``, ``baseline``, ``direct_logit_attribution``,
``activation_patching``), so the model card and ``circuitwise run opposites --model bundled``
agree. Mean ablations and the MLP patching are plain TransformerLens hooks on the bridge
(``run_with_hooks`` on ``hook_z`` / ``hook_mlp_out``); the tests re-measure every claim that way.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

ROLES = ("N1", "ADJ", "BUT", "N2")
HELDOUT_SPLITS = ("heldout-pair", "heldout-template", "heldout-both")
# A head "reads the adjective" when patching its output from the flipped prompt into the clean
# one (every position) moves at least this share of the clean-to-flipped logit-difference swing.
HEAD_EFFECT = 0.1
MAX_NAMED_HEADS = 4


@dataclass(frozen=True)
class Scores:
    n: int
    accuracy: float
    mean_logit_diff: float
    min_logit_diff: float


def _tok(model: Any, task: Any, corrupted: bool = False):
    import circuitwise as cw

    tok, _ = cw.tokenize_task(model, task, need_corrupted=corrupted, on_invalid="drop")
    return tok


def scores(model: Any, task: Any) -> Scores:
    from circuitwise.attribution import baseline

    ld = baseline(model, _tok(model, task)).logit_diff
    return Scores(len(ld), float((ld > 0).float().mean()), float(ld.mean()), float(ld.min()))


def components(model: Any, task: Any) -> dict[str, float]:
    """Mean direct logit attribution of embed, pos_embed and each layer's attn_out / mlp_out."""
    from circuitwise.attribution import direct_logit_attribution

    layers = direct_logit_attribution(model, _tok(model, task)).layers
    return dict(zip(layers.labels["component"], (float(v) for v in layers.values)))


def attention_by_role(model: Any, task: Any) -> dict[tuple[int, int], dict[str, float]]:
    """Each head's mean attention from the final token to the task's roles (N1, ADJ, BUT, N2)."""
    tok = _tok(model, task)
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


def head_patching(model: Any, task: Any) -> torch.Tensor:
    """[layer, head]: share of the clean→flipped swing one head's flipped output causes (noising)."""
    import circuitwise as cw

    r = cw.activation_patching(model, task, "heads", direction="noise", normalize=True)
    # noising reports (patched − flipped) / (clean − flipped): 1 = no effect, 0 = the whole swing.
    return 1 - r.values.float()


def _mean_ld(model: Any, tok: Any, hooks: list) -> float:
    from circuitwise.metrics import answer_logits, logit_diff

    with torch.inference_mode():
        logits = model.run_with_hooks(tok.clean, fwd_hooks=hooks)
    return float(logit_diff(answer_logits(logits, tok.last, tok.answers)).mean())


def mean_ablate_heads(model: Any, task: Any, heads: list[tuple[int, int]]) -> tuple[float, float]:
    """(clean, ablated) mean logit diff with ``heads``' hook_z at every position replaced by the
    head's mean over all real tokens of all the task's prompts."""
    tok = _tok(model, task)
    real = torch.arange(tok.clean.shape[1])[None, :] <= tok.last[:, None]
    names = sorted({f"blocks.{l}.attn.hook_z" for l, _ in heads})
    with torch.inference_mode():
        _, cache = model.run_with_cache(tok.clean, names_filter=lambda n: n in names)
    means = {n: cache[n][real].mean(0) for n in names}  # [head, d_head]

    def hook(z, hook):
        for l, h in heads:
            if hook.name == f"blocks.{l}.attn.hook_z":
                z[:, :, h] = means[hook.name][h]
        return z

    return _mean_ld(model, tok, []), _mean_ld(model, tok, [(n, hook) for n in names])


def mlp_at_end(model: Any, task: Any) -> dict[int, float]:
    """{layer: share of the clean→flipped swing moved by patching that layer's MLP output at
    the final position from the flipped prompt into the clean one}. Prompts and their flips
    tokenize to the same positions (one adjective for another, each one token)."""
    tok = _tok(model, task, corrupted=True)
    rows = torch.arange(len(tok))
    names = [f"blocks.{l}.hook_mlp_out" for l in range(model.cfg.n_layers)]
    with torch.inference_mode():
        _, cache = model.run_with_cache(tok.corrupted, names_filter=lambda n: n in names)
    clean = _mean_ld(model, tok, [])
    from circuitwise.metrics import answer_logits, logit_diff

    with torch.inference_mode():
        corr = float(logit_diff(answer_logits(model(tok.corrupted), tok.last, tok.answers)).mean())
    out = {}
    for l, n in enumerate(names):
        def hook(act, hook, n=n):
            act[rows, tok.last] = cache[n][rows, tok.last]
            return act

        out[l] = (clean - _mean_ld(model, tok, [(n, hook)])) / (clean - corr)
    return out


def name_heads(patch: dict[str, torch.Tensor]) -> list[tuple[int, int]]:
    """The heads whose mean effect over the held-out splits reaches HEAD_EFFECT, largest first."""
    mean = torch.stack([patch[s] for s in HELDOUT_SPLITS]).mean(0)
    order = sorted(((float(mean[l, h]), (l, h)) for l in range(mean.shape[0]) for h in range(mean.shape[1])),
                   reverse=True)
    return [lh for v, lh in order[:MAX_NAMED_HEADS] if v >= HEAD_EFFECT]


def evaluate(model: Any, probes: dict, seed: int, n: int) -> dict:
    """Everything the card reports, on the saved folder loaded as a bridge."""
    import circuitwise as cw

    res: dict[str, Any] = {}
    studied = {**probes, "all": cw.get_task("opposites", n=n, seed=seed)}
    res["scores"] = {name: scores(model, task) for name, task in studied.items()}
    flip_tasks = {s: cw.get_task("opposites", n=n, seed=seed, split=s, corruption="flip") for s in HELDOUT_SPLITS}
    res["components"] = {s: components(model, probes[s]) for s in HELDOUT_SPLITS}
    res["attention"] = {s: attention_by_role(model, probes[s]) for s in ("heldout-pair", "heldout-template")}
    res["head_patching"] = {s: head_patching(model, t) for s, t in flip_tasks.items()}
    heads = name_heads(res["head_patching"])
    res["named_heads"] = heads
    res["ablation"] = {s: mean_ablate_heads(model, probes[s], heads)
                       for s in (*HELDOUT_SPLITS, *(f"flipped-{x}" for x in HELDOUT_SPLITS))}
    res["mlp_at_end"] = {s: mlp_at_end(model, t) for s, t in flip_tasks.items()}
    return res


__all__ = ["HEAD_EFFECT", "HELDOUT_SPLITS", "ROLES", "Scores", "attention_by_role", "components", "evaluate",
           "head_patching", "mean_ablate_heads", "mlp_at_end", "name_heads", "scores"]
