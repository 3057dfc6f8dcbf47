"""Each construction does what it claims, checked with plain TransformerLens hooks only.

No circuitwise code but the loader and the tokenized task: the metric is read off the bridge's
logits, the interventions are ``model.hooks`` on ``hook_z`` / ``hook_q|k|v`` / ``hook_mlp_out``.
The last test ties the hooks to our graph's names: the planted edges alone, as a circuitwise
circuit, reproduce the clean model and their complement the corrupted one.
"""

from __future__ import annotations

import torch

from circuitwise.circuits import Circuit, graph_of
from circuitwise.evaluation import completeness, faithfulness

TOL = 0.1  # of the clean − corrupted gap


def logit_diff(model, tok, tokens, fwd_hooks=()) -> float:
    with torch.no_grad(), model.hooks(fwd_hooks=list(fwd_hooks)):
        logits = model(tokens)
    rows = torch.arange(len(tok))
    last = logits[rows, tok.last]
    return float((last[rows, tok.answers[:, 0]] - last[rows, tok.answers[:, 1]]).mean())


def _replace(name: str, head: int | None, source):
    """A hook replacing ``head``'s slice (or the whole activation) by ``source(act)``."""

    def hook(act, hook):
        act = act.clone()
        if head is None:
            act[:] = source(act)
        else:
            act[:, :, head] = source(act)[:, :, head]
        return act

    return (name, hook)


def all_nodes(model) -> list[tuple[str, int | None]]:
    heads = [(f"blocks.{l}.attn.hook_z", h) for l in range(model.cfg.n_layers) for h in range(model.cfg.n_heads)]
    return heads + [(f"blocks.{l}.hook_mlp_out", None) for l in range(model.cfg.n_layers)]


def test_the_model_does_the_task(booted, case_name):
    _, model, tok = booted(case_name)
    clean, corr = logit_diff(model, tok, tok.clean), logit_diff(model, tok, tok.corrupted)
    assert clean > 0.5 and corr < -0.5  # the corrupted prompt's answer is the clean one's wrong answer


def test_patching_the_carriers_gives_the_corrupted_answer_and_the_inert_hooks_nothing(booted, case_name):
    case, model, tok = booted(case_name)
    clean, corr = logit_diff(model, tok, tok.clean), logit_diff(model, tok, tok.corrupted)
    _, cache = model.run_with_cache(tok.corrupted)
    for name, head in case.carriers + case.inert:
        moved = logit_diff(model, tok, tok.clean, [_replace(name, head, lambda a, n=name: cache[n])])
        frac = (moved - corr) / (clean - corr)  # 1: still clean, 0: corrupted
        if (name, head) in case.carriers:
            assert abs(frac) < TOL, (name, head, frac)
        else:
            assert abs(frac - 1) < TOL, (name, head, frac)


def test_zeroing_a_planted_node_kills_the_answer_and_resampling_any_other_changes_nothing(booted, case_name):
    """Planted heads and MLPs zeroed leave no answer (logit difference about 0). Any other node,
    alone or all of them at once, read from the corrupted run leaves the clean answer. Others are
    resampled rather than zeroed or mean-ablated: the distractors' writes set the norms' scale, so
    removing one (or averaging its output, which shrinks it) rescales everything read after it by
    up to half the gap, an effect on the norm that carries no information about the answer."""
    case, model, tok = booted(case_name)
    clean, corr = logit_diff(model, tok, tok.clean), logit_diff(model, tok, tok.corrupted)
    gap = clean - corr
    _, cache = model.run_with_cache(tok.corrupted)
    others = []
    for name, head in all_nodes(model):
        if (name, head) in case.planted_nodes:
            zeroed = logit_diff(model, tok, tok.clean, [_replace(name, head, torch.zeros_like)])
            assert abs(zeroed) < TOL * gap, (name, head, zeroed)
            continue
        others.append(_replace(name, head, lambda a, n=name: cache[n]))
        resampled = logit_diff(model, tok, tok.clean, others[-1:])
        assert abs(resampled - clean) < TOL * gap, (name, head, resampled)
    everything_else = logit_diff(model, tok, tok.clean, others)
    assert abs(everything_else - clean) < 2 * TOL * gap, everything_else


def test_the_planted_edges_named_in_our_graph_are_the_circuit(booted, case_name):
    case, model, tok = booted(case_name)
    g = graph_of(model)
    keep = torch.zeros(g.n_edges, dtype=torch.bool)
    for sender, receiver in case.planted:
        keep[g.edge_id(sender, receiver)] = True
    circuit = Circuit(g, keep)
    f = faithfulness(model, tok, circuit)
    assert abs(f.faithfulness - 1) < TOL, f.faithfulness
    assert completeness(model, tok, circuit).completeness > 1 - TOL
    # Each planted edge is needed: without it the rest of the planted circuit is the corrupted model.
    for sender, receiver in case.planted:
        without = keep.clone()
        without[g.edge_id(sender, receiver)] = False
        assert abs(faithfulness(model, tok, Circuit(g, without)).faithfulness) < TOL, (sender, receiver)
