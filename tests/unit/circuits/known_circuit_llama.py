"""A Llama (RMSNorm, rotary, grouped-query attention, SwiGLU) whose circuit is known by construction.

The Llama twin of :mod:`tests.unit.circuits.known_circuit`, on the same task (" C and then" → " C",
corrupted with another letter). Four query heads share two key/value heads (heads 0, 1 read kv
head 0; heads 2, 3 read kv head 1). The planted circuit:

    input ──▶ L0H0.v     L0H0 attends from every position to the letter and copies it into A
    L0H0  ──▶ L1H2.v     L1H2 attends uniformly and copies A into B
    L1H2  ──▶ logits     the unembedding reads only B

Residual dims: 0–7 letter identity, 8 "is a letter", 9 filler, 10 BOS, 11 a constant every token
carries (L0H0's query), 32–39 A (L0H0's write), 40–47 B (L1H2's write), 48–63 a scratch space.

Rotary. Llama rotates every query/key dim pair by an angle proportional to the position, so a
hand-set QK score is in general position-dependent. L0H0's query and key live only in the head's
lowest-frequency pair (dims 7 and 15), and ``rope_theta`` is large, so over a prompt that pair turns
by under 1e-5 rad and the score is the content match alone: the letter is the only key that
matches. L1H2 has a zero query, so its scores are 0 whatever rotary does: uniform attention.

Grouped-query attention. kv head 0's value carries the letter to L0H0 *and* L0H1; kv head 1's value
carries A to L1H2 *and* L1H3. The unplanted sharers write only into the scratch space, so in the
ungrouped edge graph (a k and a v receiver per query head) ``input → L0H1.v`` and ``L0H0 → L1H3.v``
are real edges that carry the letter but not to the answer.

Every other head and both SwiGLU MLPs have random weights that read everything but write only into
the scratch space: through the RMSNorms' shared scale they change every later read a little (so
every edge has some effect) without carrying the letter to the answer directly. Every RMSNorm has
a learned, non-trivial gain (uniform in [0.6, 1.4]), which loading folds into the next weights.
"""

from __future__ import annotations

from pathlib import Path

from tests.unit.circuits.known_circuit import known_circuit_task, tokenizer_ids

PLANTED = {("input", "L0H0.v"), ("L0H0", "L1H2.v"), ("L1H2", "logits")}
PLANTED_HEADS = ((0, 0), (1, 2))  # (layer, query head)
N_HEADS, N_KV, D_HEAD, D_MODEL, D_MLP = 4, 2, 16, 64, 128
ROPE_THETA = 1e7


def make_known_llama_checkpoint(out: Path, seed: int = 0, noise: float = 0.3, write: float = 0.05) -> Path:
    import torch
    from transformers.initialization import no_init_weights
    from transformers import LlamaConfig, LlamaForCausalLM

    out = Path(out)
    letter_ids, filler_ids, bos = tokenizer_ids(out)
    d, dh = D_MODEL, D_HEAD
    cfg = LlamaConfig(
        vocab_size=50257, bos_token_id=bos, eos_token_id=bos, pad_token_id=bos, num_hidden_layers=2,
        hidden_size=d, num_attention_heads=N_HEADS, num_key_value_heads=N_KV, head_dim=dh,
        intermediate_size=D_MLP, hidden_act="silu", max_position_embeddings=64, rms_norm_eps=1e-6,
        rope_theta=ROPE_THETA, tie_word_embeddings=False, attention_bias=False, mlp_bias=False,
    )
    if getattr(cfg, "rope_parameters", None) is not None:  # transformers 5 keeps theta here
        cfg.rope_parameters["rope_theta"] = ROPE_THETA
    with no_init_weights():  # every weight is set below; random init costs seconds
        model = LlamaForCausalLM(cfg).float()
    g = torch.Generator().manual_seed(seed)

    def rnd(*shape: int, scale: float = noise) -> torch.Tensor:
        return torch.randn(*shape, generator=g) * scale

    def gains() -> torch.Tensor:
        return 0.6 + 0.8 * torch.rand(d, generator=g)

    def rows(h: int) -> slice:  # a head's rows in q/k/v_proj.weight ([out, in]) = cols of o_proj
        return slice(h * dh, (h + 1) * dh)

    A, B, scratch = 32, 40, slice(48, 64)  # where A and B start; the scratch space
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        m = model.model
        E = m.embed_tokens.weight
        for i, t in enumerate(letter_ids):
            E[t, i] = 1.0
            E[t, 8] = 1.0
        for t in filler_ids:
            E[t, 9] = 1.0
        E[bos, 10] = 1.0
        E[[*letter_ids, *filler_ids, bos], 11] = 1.0
        for layer in m.layers:
            layer.input_layernorm.weight.copy_(gains())
            layer.post_attention_layernorm.weight.copy_(gains())
        m.norm.weight.copy_(gains())

        # L0H0 (kv head 0): constant query, letter key, in the lowest-frequency rotary pair (7, 15).
        a0 = m.layers[0].self_attn
        a0.q_proj.weight[0 * dh + 7, 11] = 1.5
        a0.k_proj.weight[0 * dh + 7, 8] = 1.5
        for i in range(8):
            a0.v_proj.weight[0 * dh + i, i] = 1.0
            a0.o_proj.weight[A + i, 0 * dh + i] = 1.0
        # L1H2 (kv head 1): zero query (uniform attention), copies A into B.
        a1 = m.layers[1].self_attn
        for i in range(8):
            a1.v_proj.weight[1 * dh + i, A + i] = 1.0
            a1.o_proj.weight[B + i, 2 * dh + i] = 1.0
        for i, t in enumerate(letter_ids):
            model.lm_head.weight[t, B + i] = 2.0

        # Distractors: everything else reads everything and writes only into the scratch space.
        planted_q = dict(PLANTED_HEADS)  # layer -> its planted query head
        for l, layer in enumerate(m.layers):
            at = layer.self_attn
            for h in range(N_HEADS):
                if h != planted_q[l]:
                    at.q_proj.weight[rows(h)] = rnd(dh, d)
                    at.o_proj.weight[scratch, rows(h)] = rnd(16, dh, scale=write)
            for kv in range(N_KV):
                k, v = at.k_proj.weight[rows(kv)], at.v_proj.weight[rows(kv)]
                planted_kv = kv == planted_q[l] // (N_HEADS // N_KV)
                # The planted kv head keeps its planted dims (L0H0's key pair 7/15; values 0–7)
                # and is random elsewhere, which only its unplanted sharer reads.
                k_free = [i for i in range(dh) if not (planted_kv and l == 0 and i in (7, 15))]
                v_free = list(range(8, dh)) if planted_kv else list(range(dh))
                k[k_free] = rnd(len(k_free), d)
                v[v_free] = rnd(len(v_free), d)
            mlp = layer.mlp
            mlp.gate_proj.weight.copy_(rnd(D_MLP, d))
            mlp.up_proj.weight.copy_(rnd(D_MLP, d))
            mlp.down_proj.weight[scratch] = rnd(16, D_MLP, scale=write)
    model.save_pretrained(out, safe_serialization=True)
    return out


__all__ = ["PLANTED", "PLANTED_HEADS", "known_circuit_task", "make_known_llama_checkpoint"]
