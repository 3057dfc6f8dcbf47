"""Every claim of the bundled models' cards, re-measured with plain TransformerLens calls.

``to_tokens``, the model's own forward, ``run_with_cache`` and ``run_with_hooks`` on
``blocks.{l}.attn.hook_z`` / ``blocks.{l}.hook_mlp_out``, prompts grouped by token length so
nothing is padded: independent of circuitwise's tokenizing, baseline and patching, which wrote
the card (``card_facts.json`` holds its numbers). Same tasks, seed and size as the card.
"""

from __future__ import annotations

import json
from collections import defaultdict

import pytest
import torch

import circuitwise as cw
from circuitwise.models.bundled import BUNDLED_DIRS

pytestmark = pytest.mark.integration

MODELS = ("bundled", "bundled-llama")
SPLITS = ("heldout-pair", "heldout-template", "heldout-both")
OTHER = ("numbers-digits[heldout-template]", "numbers-words[heldout-template]",
         "timezones[digits-heldout-template]", "timezones[words-heldout-template]")


# Issue 11's bars a model's card says it falls short of (its "Limits"): asserted still short, so
# a retrain that meets them fails here and says to drop the entry.
SHORT_OF_BAR: dict[str, set[str]] = {"bundled": set(), "bundled-llama": set()}


def _check_bar(name, split, ok):
    if split in SHORT_OF_BAR[name]:
        assert not ok, f"{name} now meets the bar on {split}: remove it from SHORT_OF_BAR"
    else:
        assert ok, (name, split)


def _available(name):
    return (BUNDLED_DIRS[name] / "card_facts.json").exists()


@pytest.fixture(scope="module", params=MODELS)
def bundled(request):
    name = request.param
    if not _available(name):
        pytest.skip(f"{name} is not built yet (scripts/train_bundled.py)")
    facts = json.loads((BUNDLED_DIRS[name] / "card_facts.json").read_text())
    facts["name"] = name
    return cw.load_model(name, device="cpu"), facts


def _flipped(task):
    return cw.Task("flipped", tuple(cw.Example(e.corrupted, e.incorrect, e.correct) for e in task.examples))


def _task(split, facts):
    seed, n = facts["seed"], facts["n"]
    if split.startswith("flipped-"):
        return _flipped(_task(split[len("flipped-"):], facts))
    if split in SPLITS:
        return cw.get_task("opposites", n=n, seed=seed, split=split)
    name, _, rest = split.partition("[")
    return cw.get_task(name, n=n, seed=seed, split=rest.rstrip("]"))


def _groups(model, examples, corrupted=False):
    """[(tokens [batch, pos], flipped tokens or None, answers [batch, 2])] per prompt length."""
    by_len = defaultdict(list)
    for ex in examples:
        toks = model.to_tokens(ex.clean)[0]
        flip = model.to_tokens(ex.corrupted)[0] if corrupted else None
        ans = [model.to_single_token(ex.correct), model.to_single_token(ex.incorrect)]
        by_len[len(toks)].append((toks, flip, ans))
    out = []
    for g in by_len.values():
        flips = torch.stack([f for _, f, _ in g]) if corrupted else None
        out.append((torch.stack([t for t, _, _ in g]), flips, torch.tensor([a for _, _, a in g])))
    return out


def _ld(logits, answers):
    last = logits[:, -1]
    return last.gather(-1, answers[:, :1])[:, 0] - last.gather(-1, answers[:, 1:])[:, 0]


def _lds(model, groups, hooks=()):
    with torch.inference_mode(), model.hooks(fwd_hooks=list(hooks)):
        return torch.cat([_ld(model(t), a) for t, _, a in groups])


@pytest.mark.parametrize("split", (*SPLITS, *(f"flipped-{s}" for s in SPLITS)))
def test_opposites_held_out_and_flipped_accuracy(bundled, split):
    """≥ 0.95 and mean logit diff ≥ 2, as is and with the nouns contradicting; equal to the card."""
    model, facts = bundled
    ld = _lds(model, _groups(model, _task(split, facts).examples))
    acc, card = float((ld > 0).float().mean()), facts["scores"][split]
    _check_bar(facts["name"], split, acc >= 0.95 and float(ld.mean()) >= 2.0)
    assert acc >= 0.85 and float(ld.mean()) >= 2.0, (split, acc, float(ld.mean()))  # and never far off
    assert len(ld) == card["n"]
    assert abs(acc - card["accuracy"]) <= 1.5 / len(ld)
    assert abs(float(ld.mean()) - card["mean_logit_diff"]) <= 1e-3


@pytest.mark.parametrize("split", OTHER)
def test_numbers_and_time_zones_held_out(bundled, split):
    model, facts = bundled
    ld = _lds(model, _groups(model, _task(split, facts).examples))
    acc, card = float((ld > 0).float().mean()), facts["scores"][split]
    _check_bar(facts["name"], split, acc >= 0.9)
    assert acc >= 0.75, (split, acc)  # well above chance (0.5) even where short of the bar
    assert abs(acc - card["accuracy"]) <= 1.5 / len(ld)


def _mean_z_hooks(model, groups, heads):
    """hook_z mean ablation: each head's mean output over all the prompts' tokens, everywhere."""
    names = sorted({f"blocks.{l}.attn.hook_z" for l, _ in heads})
    zs = defaultdict(list)
    for toks, _, _ in groups:
        with torch.inference_mode():
            _, cache = model.run_with_cache(toks, names_filter=lambda n: n in names)
        for n in names:
            zs[n].append(cache[n].flatten(0, 1))
    means = {n: torch.cat(v).mean(0) for n, v in zs.items()}

    def hook(z, hook):
        for l, h in heads:
            if hook.name == f"blocks.{l}.attn.hook_z":
                z[:, :, h] = means[hook.name][h]
        return z

    return [(n, hook) for n in names]


@pytest.mark.parametrize("split", SPLITS)
def test_mean_ablating_the_named_heads_halves_the_flipped_logit_diff(bundled, split):
    model, facts = bundled
    heads = [tuple(h) for h in facts["named_heads"]]
    assert heads, "the card names no heads"
    groups = _groups(model, _task(f"flipped-{split}", facts).examples)
    clean = float(_lds(model, groups).mean())
    ablated = float(_lds(model, groups, _mean_z_hooks(model, groups, heads)).mean())
    assert ablated <= 0.5 * clean, (split, heads, clean, ablated)
    card = facts["ablation"][f"flipped-{split}"]
    assert abs(clean - card["clean"]) <= 1e-3 and abs(ablated - card["ablated"]) <= 2e-3


def _swing_share(model, groups, name, select):
    """Share of the clean→flipped swing that patching ``name`` (where ``select`` says) from the
    flipped prompt into the clean one causes."""
    clean, flipped, patched = [], [], []
    for toks, flips, ans in groups:
        with torch.inference_mode():
            f_logits, cache = model.run_with_cache(flips, names_filter=lambda n: n == name)

            def hook(act, hook):
                select(act, cache[name])
                return act

            clean.append(_ld(model(toks), ans))
            flipped.append(_ld(f_logits, ans))
            patched.append(_ld(model.run_with_hooks(toks, fwd_hooks=[(name, hook)]), ans))
    c, f, p = (float(torch.cat(x).mean()) for x in (clean, flipped, patched))
    return (c - p) / (c - f)


@pytest.mark.parametrize("split", SPLITS)
def test_the_named_heads_carry_the_adjective(bundled, split):
    """Each named head's output, patched from the flipped prompt, moves ≥ 10% of the answer."""
    model, facts = bundled
    task = cw.get_task("opposites", n=facts["n"], seed=facts["seed"], split=split, corruption="flip")
    groups = _groups(model, task.examples, corrupted=True)
    for l, h in (tuple(x) for x in facts["named_heads"]):
        def select(act, src, h=h):
            act[:, :, h] = src[:, :, h]

        share = _swing_share(model, groups, f"blocks.{l}.attn.hook_z", select)
        assert abs(share - facts["head_patching"][split][l][h]) <= 2e-3, (split, l, h, share)
    shares = torch.tensor(facts["head_patching"][split])
    mean = torch.stack([torch.tensor(facts["head_patching"][s]) for s in SPLITS]).mean(0)
    assert all(float(mean[l, h]) >= 0.1 for l, h in facts["named_heads"])
    # and no head left unnamed matters as much as the weakest named one
    named = {tuple(x) for x in facts["named_heads"]}
    weakest = min(float(mean[l, h]) for l, h in named)
    assert all(float(mean[l, h]) <= weakest + 1e-6 for l in range(shares.shape[0])
               for h in range(shares.shape[1]) if (l, h) not in named) or len(named) == 4


@pytest.mark.parametrize("split", SPLITS)
def test_where_the_antonym_is_produced(bundled, split):
    """Patching each layer's MLP output at the final position reproduces the card's table."""
    model, facts = bundled
    task = cw.get_task("opposites", n=facts["n"], seed=facts["seed"], split=split, corruption="flip")
    groups = _groups(model, task.examples, corrupted=True)
    for l in range(model.cfg.n_layers):
        def select(act, src):
            act[:, -1] = src[:, -1]

        share = _swing_share(model, groups, f"blocks.{l}.hook_mlp_out", select)
        assert abs(share - facts["mlp_at_end"][split][str(l)]) <= 2e-3, (split, l, share)
