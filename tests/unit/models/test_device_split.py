"""A model split over devices (issue 21 item 4): the engines follow each block's device.

This machine has one CPU device, so a split is a device *table* whose entries differ while every
tensor stays in memory: to the engines ``cpu:0`` is another device than ``cpu`` (an entry unlike
the one before it is a block boundary), but ``t.to("cpu:0")`` is ``t`` itself, so the numbers must
be exactly the unsplit model's. Every move goes through ``models.placement.move``, which the tests
record. ``meta`` stands in for a real second device where values do not matter: an operation that
mixes it with a CPU tensor raises, so a missed move would be caught. The device check
(bench/device_check.py) runs the same comparison across a real CPU/GPU split.
"""

from __future__ import annotations

import dataclasses
from contextlib import contextmanager
from itertools import groupby

import pytest
import torch

import circuitwise as cw
from circuitwise.circuits import eap_ig
from circuitwise.circuits import forward as fwd
from circuitwise.circuits.graph import graph_of
from circuitwise.evaluation.faithfulness import faithfulness_of_masks
from circuitwise.metrics import targets_of
from circuitwise.models import placement
from circuitwise.models.weights import Layer, Norm, Weights, read_weights

CPU, CPU0, META = torch.device("cpu"), torch.device("cpu", 0), torch.device("meta")


@pytest.fixture(scope="module")
def model():
    return cw.load_model("bundled", device="cpu")  # this module's own: its cached weights are re-tabled


@pytest.fixture(scope="module")
def tok(model):
    tok, _ = cw.tokenize_task(model, cw.get_task("opposites-seed").subset((1, 2, 5)), need_corrupted=True)
    return tok


@contextmanager
def tabled(w: Weights, devices: tuple[torch.device, ...], out: torch.device):
    """The engines' device table of ``w`` (the cached weights every engine reads) set for a while;
    patched metrics remembered from runs before are forgotten, so every number is recomputed."""
    old = w.devices, w.out_device
    w.devices, w.out_device = devices, out
    model = w.model
    fwd.graph_model(model).memo.clear()
    try:
        yield w
    finally:
        w.devices, w.out_device = old
        fwd.graph_model(model).memo.clear()


@pytest.fixture
def moves(monkeypatch):
    """Every call of placement.move: (target device, whether it returned its input unchanged)."""
    calls: list[tuple[torch.device, bool]] = []
    real = placement.move

    def record(t, device):
        out = real(t, device)
        calls.append((device, out is t))
        return out

    monkeypatch.setattr(placement, "move", record)
    return calls


def crossings(calls) -> list[torch.device]:
    """The target devices of consecutive runs of moves: one entry per boundary crossed."""
    return [d for d, _ in groupby(d for d, _ in calls)]


def test_each_block_is_read_where_it_lives_and_equals_the_stacked_weights(model):
    w = read_weights(model)
    assert w.devices == (CPU,) * w.n_layers and w.out_device == CPU and not w.split
    d, H, dh = w.d_model, w.n_heads, w.d_head
    for l, lw in enumerate(w.layers):
        for f in dataclasses.fields(Layer):
            t = getattr(lw, f.name)
            if isinstance(t, torch.Tensor):
                assert t.device == w.devices[l], f.name
        # Read block by block, the same numbers as TransformerLens's stacked accessors.
        assert torch.equal(lw.w_q, model.W_Q[l].permute(1, 0, 2).reshape(d, -1))
        assert torch.equal(lw.w_v, model.W_V[l].permute(1, 0, 2).reshape(d, -1))
        assert torch.equal(lw.w_o, model.W_O[l].reshape(H * dh, d))
        assert torch.equal(lw.w_in, model.W_in[l]) and torch.equal(lw.w_out, model.W_out[l])
        assert torch.equal(lw.b_q, model.b_Q[l].reshape(-1)) and torch.equal(lw.b_out, model.b_out[l])


def _graph_forward(model, tok):
    gm = fwd.graph_model(model)
    x0 = gm.embed(tok.clean)
    run = fwd.run_graph(gm, x0, tok.last, targets_of(tok), record=True)
    rep = fwd.run_graph(gm, gm.embed(tok.corrupted), tok.last, targets_of(tok), record=True).outputs
    gen = torch.Generator().manual_seed(0)
    keep = torch.rand(2, len(gm.graph.senders), len(gm.graph.receivers), generator=gen) < 0.5
    patched = fwd.run_graph(gm, x0, tok.last, targets_of(tok), keep=keep.float(), replacement=rep)
    return run.answer_logits, run.outputs, patched.answer_logits


def _everything(model, tok):
    logits, outputs, patched = _graph_forward(model, tok)
    heads = cw.activation_patching(model, tok, "heads", normalize=False)
    by_pos = cw.activation_patching(model, tok, "heads_by_pos", normalize=False, align="end")
    ig = eap_ig(model, tok, steps=3)
    assert heads.config["engine"] == by_pos.config["engine"] == "cone"
    masks = torch.rand(3, graph_of(model).n_edges, generator=torch.Generator().manual_seed(1)) < torch.tensor(
        [[0.1], [0.5], [0.9]])
    faith = torch.stack([f.per_example for f in faithfulness_of_masks(model, tok, masks)])
    return {"baseline logits": logits, "sender outputs": outputs, "patched logits": patched,
            "patching heads": heads.raw, "patching heads_by_pos": by_pos.raw, "eap_ig": ig.scores,
            "faithfulness": faith}


def test_one_device_moves_and_copies_nothing(model, tok, moves):
    _everything(model, tok)
    assert moves and all(same for _, same in moves)  # every call handed its tensor back


def test_a_split_gives_the_unsplit_numbers_exactly(model, tok, moves):
    w = read_weights(model)
    plain = _everything(model, tok)
    assert all(same for _, same in moves)
    moves.clear()
    with tabled(w, (CPU0, CPU), CPU0):
        split = _everything(model, tok)
    assert CPU0 in {d for d, _ in moves}  # the split was followed, not bypassed
    for k, v in plain.items():
        assert torch.equal(split[k], v), k


def test_the_graph_forward_moves_at_block_boundaries_only(model, tok, moves):
    w = read_weights(model)
    gm = fwd.graph_model(model)
    x0 = gm.embed(tok.clean)
    plain = fwd.run_graph(gm, x0, tok.last, targets_of(tok)).answer_logits
    moves.clear()
    # embedding on cpu → block 0 on cpu:0 → block 1 on cpu → unembedding on cpu:0 → the caller's cpu.
    with tabled(w, (CPU0, CPU), CPU0):
        got = fwd.run_graph(gm, x0, tok.last, targets_of(tok)).answer_logits
    assert crossings(moves) == [CPU0, CPU, CPU0, CPU]
    assert torch.equal(got, plain)
    moves.clear()
    # Two blocks on one device: one crossing into them, none between them.
    with tabled(w, (CPU0, CPU0), CPU):
        fwd.run_graph(gm, x0, tok.last, targets_of(tok))
    assert crossings(moves) == [CPU0, CPU]
    n_carried = sum(d == CPU0 for d, _ in moves)
    assert n_carried == 5  # the input, residual, last positions and their rows: once, not per block


def test_the_cone_moves_at_block_boundaries_only(model, tok, moves):
    from circuitwise.metrics import get_metric
    from circuitwise.patching.cone import Cone

    w = read_weights(model)
    _, cache = model.run_with_cache(tok.clean, names_filter=lambda n: n.endswith("hook_resid_pre"))
    resid = [cache[f"blocks.{l}.hook_resid_pre"] for l in range(w.n_layers)]
    metric = get_metric("logit_diff").fn
    ex = torch.arange(len(tok))
    plain = Cone(w, resid, tok.last, targets_of(tok), metric).run(0, 0, resid[0], ex)
    with tabled(w, (CPU0, CPU), CPU0):
        cone = Cone(w, resid, tok.last, targets_of(tok), metric)
        moves.clear()
        got = cone.run(0, 0, resid[0], ex)
    # Into block 0, into block 1, the final rows to the unembedding, the metric back to the caller.
    assert crossings(moves) == [CPU0, CPU, CPU0, CPU]
    assert torch.equal(got, plain)


def _on(t: torch.Tensor | None, dev: torch.device) -> torch.Tensor | None:
    return None if t is None else t.to(dev)


def _norm_on(n: Norm | None, dev: torch.device) -> Norm | None:
    return None if n is None else Norm(n.kind, _on(n.weight, dev), _on(n.bias, dev), n.eps)


def _block_on(lw: Layer, dev: torch.device) -> Layer:
    tensors = {f.name: _on(getattr(lw, f.name), dev) for f in dataclasses.fields(Layer)
               if f.init and isinstance(getattr(lw, f.name), torch.Tensor)}
    norms = {n: _norm_on(getattr(lw, n), dev) for n in ("ln1", "ln2", "post_attn", "post_mlp", "q_norm", "k_norm")}
    return dataclasses.replace(lw, **tensors, **norms)


def _meta_split(w: Weights) -> Weights:
    """``w`` with block 1, the final norm and the unembedding really on ``meta``."""
    return dataclasses.replace(w, layers=(w.layers[0], _block_on(w.layers[1], META)),
                               ln_final=_norm_on(w.ln_final, META), W_U=w.W_U.to(META), b_U=_on(w.b_U, META),
                               devices=(CPU, META), out_device=META, _rotary={})


def _stand_in_moves(monkeypatch) -> None:
    """placement.move, except meta → cpu (no values to copy): a stand-in of the same shape."""
    real = placement.move

    def move(t, device):
        if t.is_meta and device.type == "cpu":
            return torch.zeros(t.shape, dtype=t.dtype, device=device)
        return real(t, device)

    monkeypatch.setattr(placement, "move", move)


def test_a_block_on_another_device_is_handed_every_input_there(model, tok, monkeypatch):
    """Block 1 and the unembedding really on ``meta``: the run goes through with no device error
    (meta has no values, so the result handed back to the CPU is a stand-in of the right shape)."""
    gm = fwd._layout(graph_of(model), _meta_split(read_weights(model)))
    x0 = fwd.graph_model(model).embed(tok.clean)
    _stand_in_moves(monkeypatch)
    got = fwd.run_graph(gm, x0, tok.last, targets_of(tok)).answer_logits
    assert got.device == CPU and got.shape[:2] == (1, len(tok))
    # Without the moves the block reads a CPU residual with meta weights, and torch refuses.
    monkeypatch.setattr(placement, "move", lambda t, device: t)
    with pytest.raises(RuntimeError, match="device"):
        fwd.run_graph(gm, x0, tok.last, targets_of(tok))


def test_hook_caches_of_a_split_model_go_to_the_embeddings_device(model):
    """The hook-based stages (DLA, attribution patching, the hook engine) ask TransformerLens for
    their caches on the embedding's device when the model is split, and leave them alone otherwise."""

    class Split:  # parameters on two devices (meta: no memory, no GPU needed)
        cfg = model.cfg

        def parameters(self):
            yield torch.zeros(1)
            yield torch.zeros(1, device=META)

    assert placement.cache_device(model) is None
    assert placement.cache_device(Split()) == torch.device(model.cfg.device)


def test_attribution_graphs_refuse_a_split_before_any_work(model):
    from circuitwise.errors import ConfigError
    from circuitwise.features.replacement import check_model, compute_dtype

    w = read_weights(model, compute_dtype(model))  # the replacement model's own read (cached)
    old = w.devices
    w.devices = (CPU0, CPU)
    try:
        with pytest.raises(ConfigError, match="one device.*--device"):
            check_model(model, None)  # refused before the transcoders are looked at
    finally:
        w.devices = old


def test_an_explicit_device_map_loads_and_the_engines_run_it(model, tok):
    mapped = cw.load_model("bundled", device_map={"": "cpu"})  # Hugging Face's {module: device}
    w = read_weights(mapped)
    assert w.devices == (CPU,) * w.n_layers and not w.split
    gm, gm_plain = fwd.graph_model(mapped), fwd.graph_model(model)
    got = fwd.run_graph(gm, gm.embed(tok.clean), tok.last, targets_of(tok)).answer_logits
    want = fwd.run_graph(gm_plain, gm_plain.embed(tok.clean), tok.last, targets_of(tok)).answer_logits
    torch.testing.assert_close(got, want, rtol=0, atol=1e-5)


def test_position_resolved_and_key_query_scores_are_the_unsplit_ones(model, moves):
    from circuitwise.circuits import score_edges

    one_length, _ = cw.tokenize_task(model, cw.get_task("opposites-seed").subset((1, 3, 4, 5)), need_corrupted=True)
    def scores():
        return [score_edges(model, one_length, "eap-ig", steps=2, positions="tokens", kv_positions=kv,
                            batch_size=4).scores for kv in ("key", "key-query")]

    plain = scores()
    with tabled(read_weights(model), (CPU0, CPU), CPU0):
        split = scores()
    assert CPU0 in {d for d, _ in moves}
    for a, b in zip(plain, split, strict=True):
        assert torch.equal(a, b)


def test_the_cone_hands_a_block_on_another_device_every_input_there(model, tok, monkeypatch):
    """As above, for the causal cone: block 1 and the unembedding on ``meta``."""
    from circuitwise.metrics import get_metric
    from circuitwise.patching.cone import Cone

    meta_w = _meta_split(read_weights(model))
    _, cache = model.run_with_cache(tok.clean, names_filter=lambda n: n.endswith("hook_resid_pre"))
    resid = [cache[f"blocks.{l}.hook_resid_pre"] for l in range(meta_w.n_layers)]
    _stand_in_moves(monkeypatch)
    cone = Cone(meta_w, resid, tok.last, targets_of(tok), get_metric("logit_diff").fn)
    ex = torch.arange(len(tok))
    got = cone.run(0, 0, resid[0], ex)
    assert got.device == CPU and got.shape == (len(tok),)
    monkeypatch.setattr(placement, "move", lambda t, device: t)
    with pytest.raises(RuntimeError, match="device"):
        Cone(meta_w, resid, tok.last, targets_of(tok), get_metric("logit_diff").fn).run(0, 0, resid[0], ex)
