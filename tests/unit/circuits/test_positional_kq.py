"""Key × query split of position-aware attention edges (circuits.positional_kq).

Invariants: summed over query columns a key/value edge's split is its per-key-position score, and
summed over everything EAP's / EAP-IG's; nothing flows from a key to an earlier query. Reference:
TransformerLens hooks — the key/value input of every head perturbed at every position, the gradient
let through one query row of ``hook_z`` at a time — on a tiny GPT-2 and a rotary family (Pythia).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import torch

import circuitwise as cw
from circuitwise.circuits import Circuit, graph_of, positional_kq, score_edges
from circuitwise.circuits.positional import PositionalEdgeScores, position_spec
from circuitwise.circuits.positional_kq import (
    KQEdgeScores,
    KQKeep,
    _kv_slot,
    all_flows,
    kq_edges,
    kv_edges,
    select_kq,
)
from circuitwise.circuits.select import select_kq_circuit
from circuitwise.errors import ConfigError
from circuitwise.evaluation.faithfulness import completeness, faithfulness, positional_faithfulness_of_masks
from circuitwise.evaluation.kq_faithfulness import kq_faithfulness_of_masks
from circuitwise.schema.circuit import CircuitFile
from tests.unit.circuits.hook_reference import edge_hooks, replace, sender_values
from tests.unit.circuits.test_positional import roles_task


def _seed_tok(model: Any) -> Any:
    return cw.tokenize_task(model, cw.get_task("opposites-seed"), need_corrupted=True)[0].slice(0, 4)


@pytest.fixture(scope="module")
def roles_tok(tiny_model):
    return roles_task(tiny_model)


# -- scores: invariants --------------------------------------------------------------------------


@pytest.mark.parametrize(("method", "opts"), [("eap", {"gradient": "clean"}), ("eap", {"gradient": "corrupted"}),
                                              ("eap-ig", {"steps": 3})])
def test_query_split_sums_to_the_key_position_score_and_to_eap(tiny_model, tiny_tok, method, opts):
    plain = score_edges(tiny_model, tiny_tok, method, **opts, batch_size=4)
    pos = score_edges(tiny_model, tiny_tok, method, **opts, positions="tokens", batch_size=4)
    kq = score_edges(tiny_model, tiny_tok, method, **opts, positions="tokens", kv_positions="key-query", batch_size=4)
    assert isinstance(kq, KQEdgeScores)
    g = kq.graph
    names = [g.edge_names[i] for i in kq.kv_edges.tolist()]
    assert all(n.endswith((".k", ".v")) for n in names) and len(names) == sum(
        n.endswith((".k", ".v")) for n in g.edge_names)
    P = tiny_tok.clean.shape[1]
    assert kq.by_pair.shape == (len(names), P, P)
    # The per-(edge, position) scores are the positional path's own, unchanged.
    torch.testing.assert_close(kq.by_position, pos.by_position, atol=0, rtol=0)
    pair = kq.by_pair.double()
    scale = float(pos.by_position.abs().max())
    torch.testing.assert_close(pair.sum(-1), pos.by_position.double()[kq.kv_edges], atol=1e-6 * scale, rtol=0)
    torch.testing.assert_close(pair.sum((1, 2)), plain.scores.double()[kq.kv_edges], atol=2e-6 * scale, rtol=0)
    assert pair.abs().max() > 1e-3
    # Causal attention: a key never reaches an earlier query.
    later_key = torch.ones(P, P).tril(-1).bool()  # [key, query] with key > query
    assert pair[:, later_key].abs().max() == 0
    # And the split is a real split: some key reaches several queries with different weights.
    assert (pair.abs() > 1e-4 * scale).sum(-1).max() > 1
    assert kq.config["kv_positions"] == "key-query" and "kv_positions" not in pos.config


def test_role_columns_split_on_prompts_of_different_lengths(tiny_model, roles_tok):
    pos = score_edges(tiny_model, roles_tok, "eap-ig", steps=2, positions="roles", batch_size=4)
    kq = score_edges(tiny_model, roles_tok, "eap-ig", steps=2, positions="roles", kv_positions="key-query",
                     batch_size=4)
    scale = float(pos.by_position.abs().max())
    torch.testing.assert_close(kq.by_pair.double().sum(-1), pos.by_position.double()[kq.kv_edges],
                               atol=1e-6 * scale, rtol=0)
    labels = kq.positions.labels
    s1, end = labels.index("S1"), labels.index("END")
    # S1 comes before END in every prompt: END's keys never reach S1's queries.
    assert kq.by_pair[:, end, s1].abs().max() == 0
    assert kq.by_pair[:, s1, end].abs().max() > 0


def test_the_option_needs_positions_and_a_known_value(tiny_model, tiny_tok):
    with pytest.raises(ConfigError, match="add positions=tokens or positions=roles"):
        score_edges(tiny_model, tiny_tok, "eap", kv_positions="key-query")
    with pytest.raises(ConfigError, match="kv_positions must be one of key, key-query"):
        score_edges(tiny_model, tiny_tok, "eap-ig", positions="tokens", kv_positions="query")
    from circuitwise.config import circuit_method_options

    opts = circuit_method_options("eap-ig", {"positions": "tokens", "kv_positions": "key-query"}, 3)
    assert (opts.kv_positions, opts.steps) == ("key-query", 3)
    plain = score_edges(tiny_model, tiny_tok, "eap", positions="tokens", kv_positions="key", batch_size=4)
    assert type(plain) is PositionalEdgeScores


# -- scores: TransformerLens reference -------------------------------------------------------------


def tl_kq_reference(model: Any, tok: Any, alpha: float = 1.0) -> torch.Tensor:
    """``[sender, layer, 2·Hkv, key pos, query pos]`` with TransformerLens hooks: ``Σ_n Δ_s[n, k] ·
    ∂m_q/∂ε[n, k]`` / N, where ε is added to every head's key and value input (``hook_k_input``,
    ``hook_v_input``) and ``m_q`` is the metric of a copy of the batch whose layer-l ``hook_z`` lets
    the gradient through query row ``q`` only (the other rows detached: their values unchanged).
    The input embedding runs at ``x_corr + α (x_clean − x_corr)`` (α = 1: the clean run). Under
    grouped-query attention each key/value head's entry is the sum of its query heads' (ours are per
    query head: :func:`_on_edges` sums them)."""
    g = graph_of(model)
    L = g.n_layers
    H = int(getattr(model.cfg, "n_key_value_heads", None) or g.n_heads)  # TL's k/v inputs: per key/value head
    N, P = tok.clean.shape
    clean, corr = sender_values(model, tok.clean), sender_values(model, tok.corrupted)
    delta = clean - corr  # [S, N, P, d]
    x = (corr[:1] + alpha * (clean[:1] - corr[:1])).repeat(1, P, 1, 1)  # the input, P copies
    tokens = tok.clean.repeat(P, 1)  # copy q of the batch: rows q*N … q*N+N−1
    live = torch.eye(P, dtype=torch.bool).repeat_interleave(N, 0)  # [P*N, pos]: copy q's row q
    last, answers = tok.last.repeat(P), tok.answers.repeat(P, 1)
    out = torch.zeros(len(g.senders), L, 2 * H, P, P, dtype=torch.float64)
    for l in range(L):
        eps = {kind: torch.zeros(P * N, P, H, model.cfg.d_model, requires_grad=True) for kind in "kv"}

        def add(kind: str, eps: dict = eps):
            return lambda act, hook: act + eps[kind].to(act.dtype)

        def one_row(act: torch.Tensor, hook: Any) -> torch.Tensor:
            return torch.where(live[:, :, None, None], act, act.detach())

        hooks = [("blocks.0.hook_resid_pre", replace(x)), (f"blocks.{l}.attn.hook_k_input", add("k")),
                 (f"blocks.{l}.attn.hook_v_input", add("v")), (f"blocks.{l}.attn.hook_z", one_row)]
        with edge_hooks(model), torch.enable_grad(), model.hooks(fwd_hooks=hooks):
            logits = model(tokens)
            rows = torch.arange(P * N)
            a = logits[rows, last].gather(-1, answers)
            gk, gv = torch.autograd.grad((a[:, 0] - a[:, 1]).sum(), [eps["k"], eps["v"]])
        for i, grad in enumerate((gk, gv)):
            gr = grad.double().view(P, N, P, H, -1)  # [query copy, n, key pos, head, d]
            out[:, l, i * H:(i + 1) * H] = torch.einsum("snkd,qnkhd->shkq", delta, gr) / N
    return out


def _on_edges(kq: KQEdgeScores, dense: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Ours and the reference ``[sender, layer, 2·Hkv, …]`` on the same entries: ours summed over each
    key/value head's query heads, both at our key/value edges' (sender, layer, key/value head)."""
    g = kq.graph
    s, r = g.edge_index
    layer, slot = _kv_slot(g, r[kq.kv_edges])
    H, Hkv = g.n_heads, dense.shape[2] // 2
    kv_slot = slot // H * Hkv + slot % H // (H // Hkv)  # a query head's key/value head, keys then values
    ours = torch.zeros_like(dense)
    ours.index_put_((s[kq.kv_edges], layer, kv_slot), kq.by_pair.double(), accumulate=True)
    return ours[s[kq.kv_edges], layer, kv_slot], dense[s[kq.kv_edges], layer, kv_slot]


@pytest.mark.parametrize("family", ["gpt2", "pythia", "llama"])
def test_eap_split_equals_transformerlens_hooks(family, tiny_model, family_model_for):
    """GPT-2, Pythia (partial rotary, parallel blocks) and Llama (rotary, grouped-query keys)."""
    model = tiny_model if family == "gpt2" else family_model_for(family)
    tok = _seed_tok(model)
    kq = score_edges(model, tok, "eap", positions="tokens", kv_positions="key-query", batch_size=4)
    ours, ref = _on_edges(kq, tl_kq_reference(model, tok))
    scale = float(ref.abs().max())
    assert scale > 1e-4
    torch.testing.assert_close(ours, ref, atol=2e-5 * scale, rtol=1e-4)


def test_eap_ig_split_equals_transformerlens_hooks(tiny_model):
    tok = _seed_tok(tiny_model)
    kq = score_edges(tiny_model, tok, "eap-ig", steps=2, quadrature="midpoint", positions="tokens",
                     kv_positions="key-query", batch_size=4)
    ours, ref = _on_edges(kq, 0.5 * (tl_kq_reference(tiny_model, tok, 0.25) + tl_kq_reference(tiny_model, tok, 0.75)))
    torch.testing.assert_close(ours, ref, atol=2e-5 * float(ref.abs().max()), rtol=1e-4)


# -- circuits of units: faithfulness -------------------------------------------------------------


def _everything(g: Any, C: int, value: bool) -> KQKeep:
    return KQKeep(torch.full((g.n_edges, C), value), torch.full((len(kv_edges(g)), C, C), value))


@pytest.mark.parametrize("tok_name", ["tiny_tok", "roles_tok"])
def test_all_units_kept_is_clean_none_is_corrupted_and_all_flows_are_the_pairs(tiny_model, tok_name, request):
    tok = request.getfixturevalue(tok_name)
    spec = position_spec(tok, "roles" if tok.roles else "tokens")
    g, C = graph_of(tiny_model), len(spec.labels)
    full, empty = kq_faithfulness_of_masks(tiny_model, tok, [_everything(g, C, True), _everything(g, C, False)], spec,
                                           batch_size=4)
    torch.testing.assert_close(full.per_example, full.clean_per_example, atol=1e-5, rtol=0)
    torch.testing.assert_close(empty.per_example, empty.corrupted_per_example, atol=1e-5, rtol=0)
    assert full.total_edges == (g.n_edges - len(kv_edges(g))) * C + len(kv_edges(g)) * C * C
    # A pair set given as units (each kept key/value pair at every query) patches what the pair set does.
    gen = torch.Generator().manual_seed(2)
    pairs = torch.rand(3, g.n_edges, C, generator=gen) < torch.tensor([0.1, 0.4, 0.8])[:, None, None]
    ours = kq_faithfulness_of_masks(tiny_model, tok, [all_flows(p, g) for p in pairs], spec, batch_size=4)
    ref = positional_faithfulness_of_masks(tiny_model, tok, pairs, spec, batch_size=4)
    for a, b in zip(ours, ref, strict=True):
        torch.testing.assert_close(a.per_example, b.per_example, atol=1e-5, rtol=0)


def tl_drop_flow(model: Any, tok: Any, sender: int, layer: int, kind: str, head: int, key: int, query: int
                 ) -> torch.Tensor:
    """Per-example metric of the clean run with one flow corrupted, by TransformerLens hooks: the
    sender's clean − corrupted difference taken out of head ``head``'s ``kind`` input at ``key``,
    and every ``hook_z`` row of the layer but ``query`` restored from the clean run."""
    delta = (sender_values(model, tok.clean) - sender_values(model, tok.corrupted))[sender]  # [N, P, d]
    name = f"blocks.{layer}.attn.hook_z"
    with edge_hooks(model), torch.no_grad():
        _, cache = model.run_with_cache(tok.clean, names_filter=lambda n: n == name)

        def minus(act: torch.Tensor, hook: Any) -> torch.Tensor:
            act = act.clone()
            act[:, key, head] -= delta[:, key].to(act.dtype)
            return act

        def one_row(act: torch.Tensor, hook: Any) -> torch.Tensor:
            out = cache[name].clone()
            out[:, query] = act[:, query]
            return out

        with model.hooks(fwd_hooks=[(f"blocks.{layer}.attn.hook_{kind}_input", minus), (name, one_row)]):
            logits = model(tok.clean)
    rows = torch.arange(len(tok))
    a = logits[rows, tok.last].gather(-1, tok.answers)
    return (a[:, 0] - a[:, 1]).double()


@pytest.mark.parametrize(("sender", "receiver", "key", "query"),
                         [("input", "L1H2.v", 4, 10), ("L0H1", "L1H0.k", 6, 10), ("input", "L0H3.k", 5, 7)])
def test_one_flow_dropped_equals_transformerlens_hooks(tiny_model, sender, receiver, key, query):
    tok = _seed_tok(tiny_model)
    spec = position_spec(tok, "tokens")
    g, C = graph_of(tiny_model), len(spec.labels)
    keep = _everything(g, C, True)
    row = int((kv_edges(g) == g.edge_id(sender, receiver)).nonzero())
    keep.triples[row, key, query] = False
    ours = kq_faithfulness_of_masks(tiny_model, tok, keep, spec, batch_size=4)[0]
    rec = next(r for r in g.receivers if r.name == receiver)
    s = next(i for i, x in enumerate(g.senders) if x.name == sender)
    ref = tl_drop_flow(tiny_model, tok, s, rec.layer, rec.kind, rec.head, key, query)
    assert float((ref - ours.clean_per_example.double()).abs().max()) > 1e-4  # the flow matters
    torch.testing.assert_close(ours.per_example.double(), ref, atol=2e-5, rtol=0)


# -- ground truth: the known-circuit model -----------------------------------------------------------


def test_planted_flows_are_recovered_with_their_key_and_query_positions(known_model, known_tok, record_property):
    """On " X and then" (BOS, letter, two fillers) the letter moves as: the input at the letter into
    L0H0's value, read from every query from the letter on (L0H0 attends there from everywhere, and
    L1H0 averages all of L0H0's outputs); L0H0's outputs at every key from the letter on into L1H0's
    value, read by the last query only (the only L1H0 output the logits read); L1H0 at the last
    token into the logits. The fewest strongest units reaching faithfulness 0.9 are exactly these."""
    scores = score_edges(known_model, known_tok, "eap-ig", steps=5, positions="tokens", kv_positions="key-query")
    labels = scores.positions.labels
    letter, end = labels[1], labels[3]
    planted = ({("input->L0H0.v", letter, q) for q in labels[1:]}
               | {("L0H0->L1H0.v", k, end) for k in labels[1:]} | {("L1H0->logits", end, None)})
    spec = scores.positions
    for n in range(1, 30):
        keep = select_kq(scores, n)
        f = kq_faithfulness_of_masks(known_model, known_tok, keep, spec)[0]
        if f.faithfulness >= 0.9:
            break
    else:
        raise AssertionError("no circuit of up to 30 units reaches faithfulness 0.9")
    found = set(scores.units(scores.ranking_units()[:n]))
    hit = len(found & planted)
    recall, precision = hit / len(planted), hit / len(found)
    record_property("kq_recall_precision_faithfulness", (recall, precision, f.faithfulness))
    assert (recall, precision) == (1.0, 1.0)
    assert kq_edges(scores.graph, keep).sum() == 3
    # The same flows read by the wrong queries carry nothing: L1H0 at earlier queries never reaches the logits.
    rest = KQKeep(keep.pairs.clone(), keep.triples.clone())
    row = int((scores.kv_edges == scores.graph.edge_id("L0H0", "L1H0.v")).nonzero())
    rest.triples[row] = False
    rest.triples[row, 1:, 2] = True  # keys from the letter on, read by the second-last query instead
    wrong = kq_faithfulness_of_masks(known_model, known_tok, rest, spec)[0]
    assert wrong.faithfulness < 0.1 < f.faithfulness


def test_units_need_key_query_scores(tiny_model, tiny_tok, monkeypatch):
    pos = score_edges(tiny_model, tiny_tok, "eap", positions="tokens", batch_size=4)
    with pytest.raises(ConfigError, match="kv_positions=key-query"):
        select_kq(pos, 3)
    kq = score_edges(tiny_model, tiny_tok, "eap", positions="tokens", kv_positions="key-query", batch_size=4)
    with pytest.raises(ConfigError, match="positive number"):
        select_kq(kq, 0)
    keep = select_kq(kq, 5)
    assert int(keep.pairs.sum() + keep.triples.sum()) == 5
    every = select_kq(kq, 10**9)  # all units, and no key/value edge's unused pair slot
    assert not every.pairs[kq.kv_edges].any() and bool(every.triples.all())
    top = kq.top_units(5)
    strongest = torch.nan_to_num(kq.unit_scores().abs(), nan=0).max()
    assert abs(top[0][3]) == pytest.approx(float(strongest))
    data = kq.to_json(all_edges=False)
    assert all(t["query_position"] is not None for t in data["top_kq"])
    assert len(kq.to_json()["by_pair"]) == len(kq.kv_edges)
    monkeypatch.setattr(positional_kq, "MAX_JSON_PAIRS", 10)
    big = kq.to_json()
    assert "by_pair" not in big and "positions=roles" in big["by_pair_note"]


def test_circuit_json_records_the_flows_and_reloads(known_model, known_tok, tmp_path):
    scores = score_edges(known_model, known_tok, "eap-ig", steps=3, positions="tokens", kv_positions="key-query")
    c = select_kq_circuit(scores, n=7, model=known_model, tok=known_tok)
    assert c.positional and c.n_edges == 3
    labels = scores.positions.labels
    data = c.to_json()
    CircuitFile.model_validate(data)
    by_edge = {f"{e['sender']}->{e['receiver']}": e for e in data["edges"]}
    assert by_edge["L0H0->L1H0.v"]["kept_flows"] == [[k, labels[3]] for k in labels[1:]]
    assert by_edge["L0H0->L1H0.v"]["kept_positions"] == list(labels[1:])
    assert by_edge["input->L0H0.v"]["kept_flows"] == [[labels[1], q] for q in labels[1:]]
    assert "kept_flows" not in by_edge["L1H0->logits"] and by_edge["L1H0->logits"]["kept_positions"] == [labels[3]]
    row = int((scores.kv_edges == scores.graph.edge_id("L0H0", "L1H0.v")).nonzero())
    assert by_edge["L0H0->L1H0.v"]["flow_scores"][labels[2]][labels[3]] == pytest.approx(
        float(scores.by_pair[row, 2, 3]))
    f = faithfulness(known_model, known_tok, c)
    keep = select_kq(scores, 7)
    ref = kq_faithfulness_of_masks(known_model, known_tok, keep, scores.positions)[0]
    assert f.faithfulness == pytest.approx(ref.faithfulness) and f.faithfulness > 0.9
    back = Circuit.load(c.save(tmp_path / "circuit.json"), known_model)
    assert back.flows is not None and torch.equal(back.flows, c.flows) and torch.equal(back.pair_mask(), c.pair_mask())
    assert faithfulness(known_model, known_tok, back).faithfulness == pytest.approx(f.faithfulness)
    # The complement: every other unit alone does next to nothing.
    assert abs(completeness(known_model, known_tok, back).complement.faithfulness) < 0.1
    # A flow whose key is not among the edge's kept positions is refused, with the fix.
    bad = json.loads((tmp_path / "circuit.json").read_text())
    for e in bad["edges"]:
        if e["receiver"] == "L1H0.v":
            e["kept_flows"] = [[labels[0], labels[3]]]
    with pytest.raises(ConfigError, match="must be the same"):
        Circuit.from_json(bad, known_model)


@pytest.mark.parametrize("family", ["llama", "gemma2", "olmo2", "qwen3"])
def test_split_sums_up_on_grouped_capped_windowed_and_coupled_families(family, family_model_for):
    """Grouped-query keys (llama), soft-capped windowed attention (gemma2), query/key norms over all
    heads (olmo2) and per head (qwen3): the split still sums over queries to the per-key-position scores, and all kept /
    none kept are the clean / corrupted runs."""
    model = family_model_for(family)
    tok = _seed_tok(model)
    pos = score_edges(model, tok, "eap", positions="tokens", batch_size=4)
    kq = score_edges(model, tok, "eap", positions="tokens", kv_positions="key-query", batch_size=4)
    scale = float(pos.by_position.abs().max())
    assert float(kq.by_pair.abs().max()) > 1e-4 * scale
    torch.testing.assert_close(kq.by_pair.double().sum(-1), pos.by_position.double()[kq.kv_edges],
                               atol=1e-5 * scale, rtol=0)
    C = len(kq.positions.labels)
    assert kq.by_pair[:, torch.ones(C, C).tril(-1).bool()].abs().max() == 0
    both = [_everything(kq.graph, C, True), _everything(kq.graph, C, False)]
    full, empty = kq_faithfulness_of_masks(model, tok, both, kq.positions, batch_size=4)
    torch.testing.assert_close(full.per_example, full.clean_per_example, atol=1e-4, rtol=0)
    torch.testing.assert_close(empty.per_example, empty.corrupted_per_example, atol=1e-4, rtol=0)
