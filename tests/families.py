"""Tiny random-weight checkpoints of every dense decoder family TransformerLens 4.3 boots.

Each checkpoint is what a user would have on disk: a ``transformers`` config, random weights saved
as safetensors, and GPT-2's real tokenizer. Shapes are small (d_model 64, 4 query heads of 16,
MLP 128, 2 layers) but every architecture feature the family has is switched on, so the code paths
that matter are exercised: grouped-query attention (2 key/value heads), sliding windows shorter
than the prompts (4 tokens), partial rotary, soft-caps, and randomised norm weights and biases
(folding bugs hide behind the default all-ones / all-zeros norms).

All 15 families tried boot from a local folder on TransformerLens 4.3 with transformers 5.24
(gpt2, opt, gpt-neo, gptj, pythia, llama, mistral, qwen2, qwen3, gemma, gemma2, gemma3, phi, phi3,
olmo2), so ``NOT_BOOTING`` is empty; a family that stops booting goes there with the exact error.
TL's ``default_prepend_bos`` is False for pythia, qwen2, qwen3 and phi, True for the rest.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

D_MODEL, N_HEADS, D_HEAD, D_MLP, N_CTX, N_KV, WINDOW = 64, 4, 16, 128, 128, 2, 4
VOCAB = 50257
EOT = 50256  # GPT-2's <|endoftext|>: BOS, EOS and pad of the shared tokenizer


def _common(cfg_cls, **kw):
    return cfg_cls(vocab_size=VOCAB, bos_token_id=EOT, eos_token_id=EOT, pad_token_id=EOT, **kw)


def _gpt2(n):
    from transformers import GPT2Config

    return _common(GPT2Config, n_layer=n, n_head=N_HEADS, n_embd=D_MODEL, n_positions=N_CTX,
                   n_inner=D_MLP)


def _opt(n):
    from transformers import OPTConfig

    return _common(OPTConfig, num_hidden_layers=n, num_attention_heads=N_HEADS, hidden_size=D_MODEL,
                   ffn_dim=D_MLP, word_embed_proj_dim=D_MODEL, max_position_embeddings=N_CTX)


def _gpt_neo(n):
    from transformers import GPTNeoConfig

    # GPT-Neo alternates global and local (windowed) attention layers.
    return _common(GPTNeoConfig, num_layers=n, num_heads=N_HEADS, hidden_size=D_MODEL,
                   intermediate_size=D_MLP, max_position_embeddings=N_CTX,
                   attention_types=[[["global", "local"], max(1, n // 2)]], window_size=WINDOW)


def _gptj(n):
    from transformers import GPTJConfig

    return _common(GPTJConfig, n_layer=n, n_head=N_HEADS, n_embd=D_MODEL, n_inner=D_MLP,
                   n_positions=N_CTX, rotary_dim=8)


def _pythia(n):
    from transformers import GPTNeoXConfig

    return _common(GPTNeoXConfig, num_hidden_layers=n, num_attention_heads=N_HEADS,
                   hidden_size=D_MODEL, intermediate_size=D_MLP, max_position_embeddings=N_CTX,
                   rotary_pct=0.25, partial_rotary_factor=0.25, use_parallel_residual=True,
                   tie_word_embeddings=False)


def _llama_like(cfg_cls, n, **kw):
    return _common(cfg_cls, num_hidden_layers=n, num_attention_heads=N_HEADS, num_key_value_heads=N_KV,
                   hidden_size=D_MODEL, intermediate_size=D_MLP, max_position_embeddings=N_CTX,
                   head_dim=D_HEAD, **kw)


def _llama(n):
    from transformers import LlamaConfig

    return _llama_like(LlamaConfig, n, tie_word_embeddings=False)


def _mistral(n):
    from transformers import MistralConfig

    return _llama_like(MistralConfig, n, sliding_window=WINDOW, tie_word_embeddings=False)


def _qwen2(n):
    from transformers import Qwen2Config

    # Qwen2 windows only layers >= max_window_layers; 1 leaves layer 0 global, the rest windowed.
    return _llama_like(Qwen2Config, n, use_sliding_window=True, sliding_window=WINDOW,
                       max_window_layers=1, tie_word_embeddings=False)


def _qwen3(n):
    from transformers import Qwen3Config

    return _llama_like(Qwen3Config, n, tie_word_embeddings=False)


def _gemma(n):
    from transformers import GemmaConfig

    return _llama_like(GemmaConfig, n)


def _gemma2(n):
    from transformers import Gemma2Config

    # Soft-caps keep Gemma2Config's defaults (attention 50, final logits 30); even layers slide.
    return _llama_like(Gemma2Config, n, sliding_window=WINDOW, query_pre_attn_scalar=D_HEAD)


def _gemma3(n):
    from transformers import Gemma3TextConfig

    return _llama_like(Gemma3TextConfig, n, sliding_window=WINDOW, query_pre_attn_scalar=D_HEAD,
                       sliding_window_pattern=2)


def _phi(n):
    from transformers import PhiConfig

    return _common(PhiConfig, num_hidden_layers=n, num_attention_heads=N_HEADS, hidden_size=D_MODEL,
                   intermediate_size=D_MLP, max_position_embeddings=N_CTX, partial_rotary_factor=0.5)


def _phi3(n):
    from transformers import Phi3Config

    return _common(Phi3Config, num_hidden_layers=n, num_attention_heads=N_HEADS,
                   num_key_value_heads=N_KV, hidden_size=D_MODEL, intermediate_size=D_MLP,
                   max_position_embeddings=N_CTX, original_max_position_embeddings=N_CTX,
                   sliding_window=WINDOW, tie_word_embeddings=False)


def _olmo2(n):
    from transformers import Olmo2Config

    return _llama_like(Olmo2Config, n, tie_word_embeddings=False)


_CONFIGS: dict[str, Callable[[int], Any]] = {
    "gpt2": _gpt2, "opt": _opt, "gpt-neo": _gpt_neo, "gptj": _gptj, "pythia": _pythia,
    "llama": _llama, "mistral": _mistral, "qwen2": _qwen2, "qwen3": _qwen3, "gemma": _gemma,
    "gemma2": _gemma2, "gemma3": _gemma3, "phi": _phi, "phi3": _phi3, "olmo2": _olmo2,
}

# Families whose fixture has sliding-window (local) attention on at least one layer.
WINDOWED: frozenset[str] = frozenset({"gpt-neo", "mistral", "qwen2", "gemma2", "gemma3", "phi3"})

# family -> the exact error TransformerLens 4.3 raises booting it (none today).
NOT_BOOTING: dict[str, str] = {}

FAMILIES: tuple[str, ...] = tuple(f for f in _CONFIGS if f not in NOT_BOOTING)


def _model_class(family: str):
    from transformers import AutoModelForCausalLM, Gemma3ForCausalLM

    return Gemma3ForCausalLM if family == "gemma3" else AutoModelForCausalLM


def make_family_checkpoint(family: str, out: Path, *, seed: int = 0, n_layers: int = 2,
                           shapes: dict[str, Any] | None = None) -> Path:
    """Write a random-weight ``family`` checkpoint with GPT-2's tokenizer into ``out``.

    ``shapes`` overrides fields of the family's ``transformers`` config (``hidden_size``,
    ``num_attention_heads``, ``intermediate_size`` …; bench/ builds real models' shapes this way).
    The config is rebuilt from them, so derived fields follow; pass ``layer_types=None`` to have a
    changed window setting re-derive the per-layer attention types.
    """
    import torch

    from tests.helpers import gpt2_tokenizer_files

    if family not in _CONFIGS:
        raise ValueError(f"unknown family {family!r}; choose from {sorted(_CONFIGS)}")
    out = Path(out)
    gpt2_tokenizer_files(out)
    cfg = _CONFIGS[family](n_layers)
    if shapes:
        cfg = type(cfg).from_dict({**cfg.to_dict(), **shapes})
    torch.manual_seed(seed)
    cls = _model_class(family)
    model = cls.from_config(cfg) if hasattr(cls, "from_config") else cls(cfg)
    model = model.float()
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 1:
                # Norm gains, norm biases and linear biases: far from their identity defaults so
                # that folding them wrongly shows up in the numbers. Gemma's RMSNorm stores w-1.
                noise = 0.3 * torch.randn(p.shape, generator=gen)
                module = name.split(".")[-2]
                gain = name.endswith("weight") and ("norm" in module or module.startswith("ln"))
                p.copy_(noise + (1.0 if gain and not family.startswith("gemma") else 0.0))
            elif p.dim() == 2:
                # Random init gives near-zero logit differences; scale up so metrics are not.
                p.mul_(2.5)
    model.save_pretrained(out, safe_serialization=True)
    return out


__all__ = ["FAMILIES", "NOT_BOOTING", "WINDOWED", "make_family_checkpoint"]
