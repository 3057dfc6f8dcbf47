"""The edge count MIB prints: its pinned EAP-IG (7af394a) prunes one pass only. Checked against that
loop written out as EAP-IG has it (nodes with and without edges, compared before the edges are
dropped), and against our full prune."""

from __future__ import annotations

import pytest
import torch

from circuitwise.circuits.graph import Graph
from circuitwise.circuits.prune import one_pass_prune, prune_rows, receiver_nodes


def pinned_prune(graph: Graph, keep: torch.Tensor) -> torch.Tensor:
    """EAP-IG 7af394a's apply_topn(reset=True) + prune(), edge level, on one edge set."""
    S = len(graph.senders)
    s_idx, r_idx = graph.edge_index
    t_idx = receiver_nodes(graph)[r_idx]
    in_graph = keep.clone()

    def node_state(edges):
        has_out = torch.zeros(S + 1, dtype=torch.bool)
        has_in = torch.zeros(S + 1, dtype=torch.bool)
        has_out[s_idx[edges]] = True
        has_in[t_idx[edges]] = True
        has_in[0] = True  # the input is treated as having incoming edges
        return has_out & has_in

    nodes = node_state(in_graph)  # apply_topn, reset=True: nodes with both kinds of edges
    same = False
    while not same:
        new = node_state(in_graph)
        same = bool(torch.equal(new, nodes))  # compared before the edges are dropped: the pinned bug
        nodes = new
        alive = nodes.clone()
        alive[S] = True  # the logits are always present
        in_graph = in_graph & alive[s_idx] & alive[t_idx]
    return in_graph


@pytest.mark.parametrize("seed", range(6))
def test_one_pass_is_the_pinned_loop_and_lies_between_the_set_and_the_full_prune(seed):
    g = Graph(n_layers=3, n_heads=2, has_mlp=True, parallel_attn_mlp=False)
    gen = torch.Generator().manual_seed(seed)
    keep = torch.rand(40, g.n_edges, generator=gen) < 0.15
    ours = one_pass_prune(g, keep)
    full = prune_rows(g, keep)
    for k in range(keep.shape[0]):
        assert torch.equal(ours[k], pinned_prune(g, keep[k]))
    assert bool((full <= ours).all() and (ours <= keep).all())
    # Repeated, the one pass reaches the full prune (what EAP-IG computes since 55a2be2).
    again = ours
    for _ in range(2 * g.n_layers + 2):
        again = one_pass_prune(g, again)
    assert torch.equal(again, full)


def test_a_chain_cut_at_its_end_keeps_its_first_edge_in_mibs_count():
    g = Graph(n_layers=2, n_heads=1, has_mlp=False, parallel_attn_mlp=False)
    names = g.edge_ids
    keep = torch.zeros(g.n_edges, dtype=torch.bool)
    # input -> L0H0.v -> (L0H0 -> L1H0.v) but L1H0 never reaches the logits: the whole chain dangles.
    keep[[names["input->L0H0.v"], names["L0H0->L1H0.v"]]] = True
    one, full = one_pass_prune(g, keep[None])[0], prune_rows(g, keep[None])[0]
    assert int(full.sum()) == 0
    assert one.tolist() == (keep & torch.tensor([n == "input->L0H0.v" for n in g.edge_names])).tolist()
