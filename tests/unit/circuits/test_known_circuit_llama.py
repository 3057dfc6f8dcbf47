"""Ground truth on a Llama: discovery recovers a circuit planted by hand through RMSNorm, rotary, GQA.

The model (:mod:`tests.unit.circuits.known_circuit_llama`) copies the prompt's letter with L0H0's
value path into a subspace that L1H2 copies on to the only subspace the unembedding reads. EAP-IG
and EAP must rank those three edges first, the circuit they give must reproduce the clean model and
its complement the corrupted one; plain TransformerLens hooks must agree that these two heads, and
no others, carry the answer.
"""

from __future__ import annotations

import pytest
import torch

import circuitwise as cw
from circuitwise.attribution import baseline
from circuitwise.circuits import find_circuit, score_edges
from circuitwise.evaluation import completeness, faithfulness
from tests.unit.circuits.known_circuit_llama import (
    N_HEADS, N_KV, PLANTED, PLANTED_HEADS, known_circuit_task, make_known_llama_checkpoint,
)


@pytest.fixture(scope="module")
def llama_ckpt(tmp_path_factory):
    return make_known_llama_checkpoint(tmp_path_factory.mktemp("known-llama"))


@pytest.fixture(scope="module")
def llama_model(llama_ckpt):
    return cw.load_model(str(llama_ckpt), device="cpu")


@pytest.fixture(scope="module")
def llama_tok(llama_model):
    return cw.tokenize_task(llama_model, known_circuit_task(), need_corrupted=True)[0]


@pytest.fixture(scope="module")
def discovery(llama_model, llama_tok):
    return find_circuit(llama_model, llama_tok, method="eap-ig", steps=5, selection="target", target=0.9)


def _logit_diff(model, tok, tokens, fwd_hooks=()) -> torch.Tensor:
    """Plain TransformerLens: the mean correct − incorrect logit at each prompt's last token."""
    with torch.no_grad(), model.hooks(fwd_hooks=list(fwd_hooks)):
        logits = model(tokens)
    rows = torch.arange(len(tok))
    last = logits[rows, tok.last]
    return (last[rows, tok.answers[:, 0]] - last[rows, tok.answers[:, 1]]).mean()


def test_the_model_is_a_llama_with_rmsnorm_rotary_gqa_and_a_gated_mlp(llama_model):
    cfg = llama_model.cfg
    assert cfg.architecture == type(llama_model.original_model).__name__ == "LlamaForCausalLM"
    assert cfg.normalization_type == "RMS" and cfg.final_rms
    assert cfg.positional_embedding_type == "rotary"
    assert cfg.n_heads == N_HEADS and cfg.n_key_value_heads == N_KV < cfg.n_heads
    assert llama_model.W_K.shape[1] == llama_model.W_V.shape[1] == N_KV  # [layer, kv head, d, d_head]
    assert cfg.gated_mlp and cfg.act_fn == "silu"


def test_the_learned_rmsnorm_gains_are_folded_and_the_function_survives(llama_model, llama_ckpt, llama_tok):
    from safetensors.torch import load_file
    from transformers import LlamaForCausalLM

    gains = {k: v for k, v in load_file(llama_ckpt / "model.safetensors").items() if "norm" in k}
    assert len(gains) == 5 and all(float(g.std()) > 0.1 for g in gains.values())  # non-trivial
    steps = {s.name: s.applied for s in llama_model.circuitwise_processing.steps}
    assert steps["fold_ln"] and not steps["refactor_factored_attn_matrices"]
    norms = [n for b in llama_model.blocks for n in (b.ln1, b.ln2)] + [llama_model.ln_final]
    for norm in norms:  # each gain now lives in the weights that read the norm
        assert torch.allclose(norm.weight, torch.ones_like(norm.weight))
    # The processed model computes the checkpoint's logit differences (centring moves no difference).
    hf = LlamaForCausalLM.from_pretrained(llama_ckpt).eval()
    with torch.no_grad():
        raw = hf(llama_tok.clean).logits
    rows = torch.arange(len(llama_tok))
    last = raw[rows, llama_tok.last]
    raw_ld = last[rows, llama_tok.answers[:, 0]] - last[rows, llama_tok.answers[:, 1]]
    assert torch.allclose(baseline(llama_model, llama_tok).logit_diff, raw_ld, atol=1e-4)


def test_the_planted_model_does_the_task_and_l0h0_attends_to_the_letter(llama_model, llama_tok):
    ld = baseline(llama_model, llama_tok).logit_diff
    assert (ld > 0.3).all()
    _, cache = llama_model.run_with_cache(llama_tok.clean)
    pattern = cache["blocks.0.attn.hook_pattern"][:, 0]  # [batch, query, key] of L0H0
    # Rotary leaves L0H0's content match alone: every query after BOS attends to the letter (pos 1).
    assert (pattern[:, 1:, 1] > 0.99).all()
    # L1H2's query is zero, so its pattern is uniform over the prefix whatever the rotation.
    last = cache["blocks.1.attn.hook_pattern"][:, 2, -1]
    assert torch.allclose(last, torch.full_like(last, 1 / last.shape[-1]), atol=1e-5)


# EAP linearises through the final RMSNorm's shared scale, so it overrates the MLPs' norm-only
# writes (MLP1 -> logits: -1.5 by EAP, -0.7 by EAP-IG); the margin it leaves is smaller, still clear.
@pytest.mark.parametrize(("method", "margin"), [("eap-ig", 5.0), ("eap", 2.0)])
def test_eap_ig_and_eap_rank_the_planted_edges_first(llama_model, llama_tok, discovery, method, margin):
    scores = discovery.scores if method == "eap-ig" else score_edges(llama_model, llama_tok, method)
    ranked = [(tuple(n.split("->")), s) for n, s in scores.top(scores.graph.n_edges)]
    assert len(ranked) == scores.graph.n_edges
    assert {i for i, (e, _) in enumerate(ranked) if e in PLANTED} == {0, 1, 2}
    planted = [s for e, s in ranked if e in PLANTED]
    others = [abs(s) for e, s in ranked if e not in PLANTED]
    assert min(planted) > margin * max(others)  # positive (they carry the clean answer) and clearly first


def test_discovery_returns_the_planted_circuit_faithful_and_complete(llama_model, llama_tok, discovery):
    c = discovery.circuit
    assert {(s, r) for s, r, _ in c.edge_list()} == PLANTED
    assert c.nodes() == ["input", "L0H0", "L1H2", "logits"]
    assert c.selection["reached"] and c.selection["faithfulness"] >= 0.9
    f = faithfulness(llama_model, llama_tok, c)
    assert 0.9 <= f.faithfulness <= 1.2 and f.n_edges == 3
    comp = completeness(llama_model, llama_tok, c)
    gap = f.clean_metric - f.corrupted_metric
    # The complement alone (the three planted edges read from the corrupted run) is the corrupted model.
    assert abs(comp.complement.circuit_metric - f.corrupted_metric) < 0.1 * abs(gap)
    assert comp.completeness >= 0.9


def test_plain_tl_hooks_agree_only_the_planted_heads_carry_the_answer(llama_model, llama_tok):
    model, tok = llama_model, llama_tok
    clean, corr = _logit_diff(model, tok, tok.clean), _logit_diff(model, tok, tok.corrupted)
    _, cache = model.run_with_cache(tok.corrupted)

    def patched(layer: int, head: int, how: str) -> float:
        """The head's output at every position from the corrupted run, or zero."""
        def hook(z, hook):
            z = z.clone()
            z[:, :, head] = cache[hook.name][:, :, head] if how == "corrupted" else 0.0
            return z

        return float(_logit_diff(model, tok, tok.clean, [(f"blocks.{layer}.attn.hook_z", hook)]))

    gap = float(clean - corr)
    for layer in range(model.cfg.n_layers):
        for head in range(model.cfg.n_heads):
            moved = (patched(layer, head, "corrupted") - float(corr)) / gap  # 1 clean, 0 corrupted
            zeroed = patched(layer, head, "zero")
            if (layer, head) in PLANTED_HEADS:
                assert abs(moved) < 0.1, (layer, head, moved)  # the answer flips to the corrupted one
                assert abs(zeroed) < 0.1 * gap, (layer, head, zeroed)  # no letter left to answer with
            else:  # the answer stays, whether the head is patched or silenced
                assert abs(moved - 1) < 0.1, (layer, head, moved)
                assert abs(zeroed - float(clean)) < 0.1 * gap, (layer, head, zeroed)
