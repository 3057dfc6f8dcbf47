"""Edge sets run pruned and at most once: the numbers are those of the unpruned, fresh runs."""

from __future__ import annotations

import torch

import circuitwise.circuits.patch as patch
from circuitwise.circuits.forward import run_graph
from circuitwise.circuits.patch import patched_metrics
from circuitwise.circuits.prune import prune_dangling, prune_rows
from circuitwise.circuits.scores import prepare


def _random_masks(n_edges: int, k: int, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    sizes = [1, 3, 10, n_edges // 8, n_edges // 3, n_edges - 2]
    masks = torch.zeros(k, n_edges, dtype=torch.bool)
    for i in range(k):
        masks[i, torch.randperm(n_edges, generator=gen)[: sizes[i % len(sizes)]]] = True
    return masks


def test_prune_rows_is_prune_dangling_per_row(tiny_model, tiny_tok):
    g = prepare(tiny_model, tiny_tok).gm.graph
    masks = _random_masks(g.n_edges, 12, 0)
    assert torch.equal(prune_rows(g, masks), torch.stack([prune_dangling(g, m) for m in masks]))


def test_pruned_edge_sets_give_the_unpruned_metric(tiny_model, tiny_tok):
    """Dangling edges carry their corrupted value anyway: the full forward agrees, set by set."""
    prep = prepare(tiny_model, tiny_tok)
    gm, tok, g = prep.gm, prep.tok, prep.gm.graph
    masks = _random_masks(g.n_edges, 12, 1)
    assert not torch.equal(prune_rows(g, masks), masks)  # the test prunes something
    x_c, x_k = gm.embed(tok.clean), gm.embed(tok.corrupted)
    rep = run_graph(gm, x_k, tok.last, tok.answers, record=True).outputs

    def metric(m: torch.Tensor) -> torch.Tensor:
        keep = g.to_dense(m.to(gm.dtype), fill=1.0)
        return prep.metric(run_graph(gm, x_c, tok.last, tok.answers, keep=keep, replacement=rep).answer_logits)

    unpruned = metric(masks)
    pruned = metric(prune_rows(g, masks))
    torch.testing.assert_close(pruned, unpruned, atol=1e-5, rtol=1e-5)
    gm.memo.clear()
    got = patched_metrics(prep, masks).patched
    torch.testing.assert_close(got, unpruned.float(), atol=1e-5, rtol=1e-5)


def test_a_measured_edge_set_runs_once(tiny_model, tiny_tok, monkeypatch):
    prep = prepare(tiny_model, tiny_tok)
    prep.gm.memo.clear()
    masks = _random_masks(prep.gm.graph.n_edges, 8, 2)
    first = patched_metrics(prep, masks)
    runs: list[int] = []
    real = patch.run_graph
    monkeypatch.setattr(patch, "run_graph", lambda *a, **k: runs.append(1) or real(*a, **k))
    again = patched_metrics(prep, masks[[3, 1]])
    assert runs == []  # every set remembered: no forward at all
    assert torch.equal(again.patched, first.patched[[3, 1]])
    assert torch.equal(again.clean, first.clean) and torch.equal(again.corrupted, first.corrupted)
    # Another task (here: fewer examples) is measured afresh, and equals the first task's rows.
    other = patched_metrics(prepare(tiny_model, tiny_tok.slice(0, 3)), masks[:2])
    assert runs
    torch.testing.assert_close(other.patched, first.patched[:2, :3], atol=1e-5, rtol=1e-5)
    # Mean ablation is remembered apart from corrupted ablation.
    mean = patched_metrics(prep, masks[:2], ablation="mean")
    assert not torch.allclose(mean.patched, first.patched[:2])
