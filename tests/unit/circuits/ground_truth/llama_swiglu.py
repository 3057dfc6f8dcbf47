"""A Llama whose planted path runs through a SwiGLU MLP: RMSNorm, rotary, grouped-query attention, gated MLP.

Task (as :mod:`mlp_hop`): " C and then" → the letter three on (" F"), corrupted with another
letter. L0H0 (key/value head 0, shared with L0H1) attends to the letter and copies it into space
A, as in :mod:`tests.unit.circuits.known_circuit_llama` (its query and key in the lowest-frequency
rotary pair, so the rotation over a prompt is negligible). MLP1's hidden unit ``i`` is
``silu(gate · A_i) · (up · A_i)``: RMSNorm does not centre, so an absent A dim is exactly 0 and
the unit is silent; a present one fires. It writes letter ``i + 3`` into B, the only space the
unembedding reads.

    input ──▶ L0H0.v     L0H0 ──▶ MLP1     MLP1 ──▶ logits

Every other head and MLP0 read everything and write small random vectors into the scratch space;
every RMSNorm has a learned gain in [0.6, 1.4] that loading folds into the next weights.
"""

from __future__ import annotations

from pathlib import Path

from tests.unit.circuits.ground_truth.mlp_hop import SHIFT, task
from tests.unit.circuits.known_circuit import tokenizer_ids

PLANTED = frozenset({("input", "L0H0.v"), ("L0H0", "MLP1"), ("MLP1", "logits")})
HEAD, MLP = (0, 0), 1
N_HEADS, N_KV, D_HEAD, D_MODEL, D_MLP = 4, 2, 16, 64, 128
ROPE_THETA = 1e7


def build(out: Path, seed: int = 0, noise: float = 0.3, write: float = 0.05) -> Path:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM
    from transformers.initialization import no_init_weights

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
    with no_init_weights():  # every weight is set below
        model = LlamaForCausalLM(cfg).float()
    g = torch.Generator().manual_seed(seed)

    def rnd(*shape: int, scale: float = noise) -> torch.Tensor:
        return torch.randn(*shape, generator=g) * scale

    def rows(h: int) -> slice:  # a head's rows in q/k/v_proj.weight ([out, in]) = its cols of o_proj
        return slice(h * dh, (h + 1) * dh)

    A, B, scratch = 32, 40, slice(48, 64)
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        m = model.model
        E = m.embed_tokens.weight
        for i, t in enumerate(letter_ids):
            E[t, i] = E[t, 8] = 1.0
        for t in filler_ids:
            E[t, 9] = 1.0
        E[bos, 10] = 1.0
        E[[*letter_ids, *filler_ids, bos], 11] = 1.0
        for norm in [n for layer in m.layers for n in (layer.input_layernorm, layer.post_attention_layernorm)] + [m.norm]:
            norm.weight.copy_(0.6 + 0.8 * torch.rand(d, generator=g))

        a0 = m.layers[0].self_attn  # L0H0 on kv head 0: constant query meets the letter flag
        a0.q_proj.weight[7, 11] = 1.5
        a0.k_proj.weight[7, 8] = 1.5
        for i in range(8):
            a0.v_proj.weight[i, i] = 1.0
            a0.o_proj.weight[A + i, i] = 1.0
        mlp = m.layers[MLP].mlp
        for i in range(8):
            mlp.gate_proj.weight[i, A + i] = 1.0
            mlp.up_proj.weight[i, A + i] = 1.0
            mlp.down_proj.weight[B + (i + SHIFT) % 8, i] = 0.25
        for i, t in enumerate(letter_ids):
            model.lm_head.weight[t, B + i] = 2.0

        for l, layer in enumerate(m.layers):
            at = layer.self_attn
            for h in range(N_HEADS):
                if (l, h) != HEAD:
                    at.q_proj.weight[rows(h)] = rnd(dh, d)
                    at.o_proj.weight[scratch, rows(h)] = rnd(16, dh, scale=write)
            for kv in range(N_KV):
                planted = l == 0 and kv == 0  # keeps L0H0's key dim 7 and value dims 0-7
                k_free = [i for i in range(dh) if not (planted and i in (7, 15))]
                v_free = list(range(8, dh)) if planted else list(range(dh))
                at.k_proj.weight[rows(kv)][k_free] = rnd(len(k_free), d)
                at.v_proj.weight[rows(kv)][v_free] = rnd(len(v_free), d)
            if l != MLP:
                layer.mlp.gate_proj.weight.copy_(rnd(D_MLP, d))
                layer.mlp.up_proj.weight.copy_(rnd(D_MLP, d))
                layer.mlp.down_proj.weight[scratch] = rnd(16, D_MLP, scale=write)
    model.save_pretrained(out, safe_serialization=True)
    return out


__all__ = ["HEAD", "MLP", "PLANTED", "build", "task"]
