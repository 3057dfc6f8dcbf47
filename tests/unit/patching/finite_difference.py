"""A finite difference of one patching cell, through plain TransformerLens hooks.

The cell moves a small step from its corrupted towards its clean value. An attention pattern is
moved through the head's output z = pattern @ v: on OPT, GPT-Neo and GPT-J TransformerLens 4.3
discards edits to hook_pattern.
"""

from __future__ import annotations

from circuitwise.metrics import answer_logits
from circuitwise.patching import SWEEPS

EPS = 1e-2


def finite_difference(model, tok, what, layer, cell, metric=None):
    """d/dα metric(corrupted with the cell moved α of the way to clean) at α = 0, per example.

    ``metric(logits) -> [batch]`` (default: the logit difference at each last token)."""
    sweep = SWEEPS[what]
    name = sweep.hook_name(layer)
    z_name, v_name = f"blocks.{layer}.attn.hook_z", f"blocks.{layer}.attn.hook_v"
    _, src_cache = model.run_with_cache(tok.clean, names_filter=lambda n: n == name)
    src = src_cache[name]
    _, base_cache = model.run_with_cache(tok.corrupted, names_filter=lambda n: n in (name, v_name))

    def metric_at(alpha):
        def hook(act, hook):
            act = act.clone()
            if sweep.site == "pos":
                (p,) = cell
                act[:, p] += alpha * (src[:, p] - act[:, p])
            elif sweep.site == "pos_head":
                p, h = cell
                act[:, p, h] += alpha * (src[:, p, h] - act[:, p, h])
            elif sweep.act == "pattern":  # act is z [b, pos, head, d]
                (h,) = cell
                base_p = base_cache[name][:, h]
                v = base_cache[v_name]
                v_h = v[:, :, h // (act.shape[2] // v.shape[2])]
                act[:, :, h] = (base_p + alpha * (src[:, h] - base_p)) @ v_h
            else:
                (h,) = cell
                act[:, :, h] += alpha * (src[:, :, h] - act[:, :, h])
            return act

        target = z_name if sweep.act == "pattern" else name
        logits = model.run_with_hooks(tok.corrupted, fwd_hooks=[(target, hook)])
        if metric is not None:
            return metric(logits).double()
        a = answer_logits(logits, tok.last, tok.answers).double()
        return a[:, 0] - a[:, 1]

    return (metric_at(EPS) - metric_at(-EPS)) / (2 * EPS)
