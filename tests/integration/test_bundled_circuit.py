"""The bundled model answers held-out opposites, and the answer runs through a few heads.

Everything here is measured with plain TransformerLens calls (``to_tokens``, ``run_with_cache``,
``stack_head_results``, ``run_with_hooks`` on ``blocks.{l}.attn.hook_z``), prompts grouped by
token length so nothing is padded: an independent re-measure of what the model card and the
report (through circuitwise's own pipeline) claim. The top-3 heads are also checked to be the
ones circuitwise's ``direct_logit_attribution`` names. The flipped held-out splits and the model
card's own claims are re-measured in ``test_bundled_models.py`` (both bundled models).
"""

from __future__ import annotations

from collections import defaultdict

import pytest
import torch

import circuitwise as cw

pytestmark = pytest.mark.integration

SPLITS = ("heldout-pair", "heldout-template", "heldout-both")
N = 200


@pytest.fixture(scope="module")
def model():
    return cw.load_model("bundled", device="cpu")


def _groups(model, task):
    """[(tokens [batch, pos], answers [batch, 2])], one group per prompt length."""
    by_len = defaultdict(list)
    for ex in task.examples:
        toks = model.to_tokens(ex.clean)[0]
        ans = [model.to_single_token(ex.correct), model.to_single_token(ex.incorrect)]
        by_len[len(toks)].append((toks, ans))
    return [(torch.stack([t for t, _ in g]), torch.tensor([a for _, a in g])) for g in by_len.values()]


def _logit_diff(logits, answers):
    last = logits[:, -1]
    return last.gather(-1, answers[:, :1])[:, 0] - last.gather(-1, answers[:, 1:])[:, 0]


def _task(split):
    return cw.get_task("opposites", n=N, seed=1, split=split)


@pytest.fixture(scope="module")
def heldout(model):
    return {s: _groups(model, _task(s)) for s in (*SPLITS, "all")}


def _flip_groups(model, split):
    """The flip corruption (the first adjective swapped for its opposite), answers swapped too."""
    task = cw.get_task("opposites", n=N, seed=2, split=split, corruption="flip")
    flipped = type(task)("flipped", tuple(
        type(ex)(clean=ex.corrupted, correct=ex.incorrect, incorrect=ex.correct) for ex in task.examples))
    return _groups(model, task), _groups(model, flipped)


def test_the_first_adjective_decides_on_training_templates(model):
    """Reads the context: "A grandfather is young, but a kitten is" -> " old"."""
    _, flipped = _flip_groups(model, "train")
    with torch.inference_mode():
        ld = torch.cat([_logit_diff(model(t), a) for t, a in flipped])
    assert float((ld > 0).float().mean()) >= 0.95
    assert float(ld.mean()) >= 2.0


def _head_dla(model, groups):
    """Mean DLA [layer, head] of each head's output on the logit-difference direction (TL's way)."""
    total, count = 0.0, 0
    for toks, ans in groups:
        with torch.inference_mode():
            _, cache = model.run_with_cache(toks)
            dirs = model.tokens_to_residual_directions(ans)
            dirs = dirs[:, 0] - dirs[:, 1]
            heads = cache.stack_head_results(layer=-1, pos_slice=-1, apply_ln=True)  # [lh, batch, d]
        total = total + (heads * dirs).sum(-1).sum(-1)
        count += len(toks)
    return (total / count).reshape(model.cfg.n_layers, model.cfg.n_heads)


def _top3(dla):
    H = dla.shape[1]
    return sorted(divmod(int(i), H) for i in dla.flatten().topk(3).indices)


def _mean_ld_ablated(model, groups, heads, where):
    """Mean logit diff with ``heads`` mean-ablated at hook_z.

    ``where="all"``: every position gets the head's mean over all prompts and positions.
    ``where="last"``: the final position gets the head's mean over the prompts' final positions.
    """
    names = sorted({f"blocks.{l}.attn.hook_z" for l, _ in heads})
    zs = defaultdict(list)
    for toks, _ in groups:
        with torch.inference_mode():
            _, cache = model.run_with_cache(toks, names_filter=lambda n: n in names)
        for n in names:
            z = cache[n]  # [batch, pos, head, d_head]
            zs[n].append(z.flatten(0, 1) if where == "all" else z[:, -1])
    means = {n: torch.cat(v).mean(0) for n, v in zs.items()}  # [head, d_head]

    def hook(z, hook):
        for l, h in heads:
            if hook.name == f"blocks.{l}.attn.hook_z":
                if where == "all":
                    z[:, :, h] = means[hook.name][h]
                else:
                    z[:, -1, h] = means[hook.name][h]
        return z

    lds = []
    for toks, ans in groups:
        with torch.inference_mode(), model.hooks(fwd_hooks=[(n, hook) for n in names]):
            lds.append(_logit_diff(model(toks), ans))
    return float(torch.cat(lds).mean())


@pytest.mark.parametrize("split", (*SPLITS, "all"))
def test_mean_ablating_the_top3_dla_heads_halves_the_logit_diff(model, heldout, split):
    groups = heldout[split]
    dla = _head_dla(model, groups)
    heads = _top3(dla)

    from circuitwise.attribution import direct_logit_attribution

    tok, _ = cw.tokenize_task(model, _task(split))
    assert _top3(direct_logit_attribution(model, tok).heads.values) == heads

    with torch.inference_mode():
        clean = float(torch.cat([_logit_diff(model(t), a) for t, a in groups]).mean())
    for where in ("all", "last"):
        ablated = _mean_ld_ablated(model, groups, heads, where)
        assert ablated <= 0.5 * clean, (split, where, heads, clean, ablated)
