"""The benchmarks' models: random-weight checkpoints at the shapes of real small models.

Each ``--arch`` is one family fixture of ``tests/families.py`` (every architecture feature on,
norm weights and biases randomised) with the sizes of a real small model, scaled where a 2-core
CPU could not time TransformerLens on it in minutes. Every arch keeps the shared GPT-2 tokenizer
and so its real vocabulary (50257; the 50257-wide unembedding is part of every forward).

- ``gpt2``: GPT-2 small as is (12 layers, d_model 768, 12 heads of 64, MLP 3072, learned positions).
- ``pythia``: Pythia-160m as is (12 layers, d_model 768, 12 heads of 64, MLP 3072, rotary on a
  quarter of each head, parallel attention + MLP, untied unembedding).
- ``llama-gqa``: Llama-3.2-1B at half depth and width: 8 layers (of 16), d_model 1024 (2048),
  16 query heads (32) of 64 sharing 4 key/value heads (8), SwiGLU MLP 4096 (8192), RMSNorm, rotary.
- ``qwen2``: Qwen2.5-0.5B at half depth: 12 layers (of 24), otherwise its shapes — d_model 896,
  14 query heads of 64 sharing 2 key/value heads, biases on q/k/v, SwiGLU MLP 4864, RMSNorm,
  rotary, no sliding window (as the real model).
- ``gemma2``: Gemma-2-2b at about half width and a third of the depth: 8 layers (of 26), d_model
  1152 (2304), 8 query heads sharing 4 key/value heads, head dim 128 (256), GeGLU MLP 4608 (9216),
  RMSNorm before and after each sublayer, attention/final soft-caps 50/30, a sliding window on
  alternate layers — 8 tokens (4096) so that it is shorter than the seed's prompts and does work.

Set CIRCUITWISE_BENCH_CKPT to a folder to keep the checkpoints between runs (one subfolder per arch).
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Arch:
    family: str  # a family of tests/families.py
    n_layers: int
    shapes: dict[str, Any]  # config fields over the family fixture's tiny ones
    title: str


ARCHS: dict[str, Arch] = {
    "gpt2": Arch("gpt2", 12, dict(n_embd=768, n_head=12, n_inner=3072, n_positions=1024),
                 "GPT-2 small shapes (12 layers, d_model 768, 12 heads, MLP 3072)"),
    "pythia": Arch("pythia", 12, dict(hidden_size=768, num_attention_heads=12, intermediate_size=3072,
                                      max_position_embeddings=2048),
                   "Pythia-160m shapes (12 layers, d_model 768, 12 heads, MLP 3072, rotary 1/4, parallel)"),
    "llama-gqa": Arch("llama", 8, dict(hidden_size=1024, num_attention_heads=16, num_key_value_heads=4,
                                       head_dim=64, intermediate_size=4096, max_position_embeddings=2048),
                      "Llama-3.2-1B scaled (8 layers, d_model 1024, 16 heads / 4 kv heads, SwiGLU 4096)"),
    "qwen2": Arch("qwen2", 12, dict(hidden_size=896, num_attention_heads=14, num_key_value_heads=2,
                                    head_dim=64, intermediate_size=4864, max_position_embeddings=2048,
                                    use_sliding_window=False, layer_types=None),
                  "Qwen2.5-0.5B scaled (12 layers, d_model 896, 14 heads / 2 kv heads, q/k/v biases, SwiGLU 4864)"),
    "gemma2": Arch("gemma2", 8, dict(hidden_size=1152, num_attention_heads=8, num_key_value_heads=4,
                                     head_dim=128, query_pre_attn_scalar=128, intermediate_size=4608,
                                     max_position_embeddings=2048, sliding_window=8, layer_types=None),
                   "Gemma-2-2b scaled (8 layers, d_model 1152, 8 heads / 4 kv heads of 128, GeGLU 4608, "
                   "post-norms, soft-caps, window 8 on alternate layers)"),
}


def build_checkpoint(arch: str, out: Path, seed: int = 0) -> Path:
    """Write ``arch``'s random-weight checkpoint into ``out`` (with GPT-2's tokenizer)."""
    from tests.families import make_family_checkpoint

    a = ARCHS[arch]
    return make_family_checkpoint(a.family, out, seed=seed, n_layers=a.n_layers, shapes=a.shapes)


class BenchModel:
    """``with BenchModel(arch) as model:`` — the arch's checkpoint (built once), loaded by circuitwise."""

    def __init__(self, arch: str):
        self.arch = arch
        self._tmp: tempfile.TemporaryDirectory | None = None

    def __enter__(self) -> Any:
        import circuitwise as cw

        keep = os.environ.get("CIRCUITWISE_BENCH_CKPT")
        if keep is None:
            self._tmp = tempfile.TemporaryDirectory()
            ckpt = Path(self._tmp.name)
        else:
            ckpt = Path(keep) / self.arch
        if not (ckpt / "config.json").exists():
            build_checkpoint(self.arch, ckpt)
        return cw.load_model(str(ckpt), device="cpu")

    def __exit__(self, *exc: Any) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()


__all__ = ["ARCHS", "Arch", "BenchModel", "build_checkpoint"]
