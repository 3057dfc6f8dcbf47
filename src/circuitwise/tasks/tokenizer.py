"""A tokenizer standing in for a model, so tasks can be built and checked without loading weights.

:func:`circuitwise.tasks.tokenize_task` needs only ``to_tokens``, ``tokenizer`` and ``cfg``
(``n_ctx``, ``device``) from a model; :class:`TokenizerModel` provides them around a Hugging
Face tokenizer, prepending BOS where the TransformerLens model would (its ``default_prepend_bos``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from circuitwise.errors import TaskError


@dataclass(frozen=True)
class _Cfg:
    n_ctx: int
    device: str = "cpu"


class TokenizerModel:
    """The tokenization side of a model: ``to_tokens`` with BOS, ``tokenizer``, ``cfg.n_ctx``."""

    def __init__(self, tokenizer: Any, *, prepend_bos: bool = True, n_ctx: int | None = None):
        self.tokenizer = tokenizer
        self.prepend_bos = prepend_bos and tokenizer.bos_token_id is not None
        limit = getattr(tokenizer, "model_max_length", None)
        # Tokenizers without a limit report a huge sentinel; a large context checks nothing wrongly.
        self.cfg = _Cfg(n_ctx=n_ctx or (int(limit) if limit and limit < 1_000_000 else 1_000_000))

    def to_tokens(self, text: str, prepend_bos: bool | None = None) -> torch.Tensor:
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        bos = self.prepend_bos if prepend_bos is None else prepend_bos
        if bos and self.tokenizer.bos_token_id is not None:
            ids = [self.tokenizer.bos_token_id, *ids]
        return torch.tensor([ids], dtype=torch.long)


def load_tokenizer(name_or_path: str) -> TokenizerModel:
    """The tokenizer of a model (``bundled``, a local checkpoint folder or a Hub name), offline first."""
    from circuitwise.models.bundled import BUNDLED_NAMES, bundled_path
    from circuitwise.models.hub import check_hub, hub_offline

    source: str | Path = name_or_path
    if name_or_path in BUNDLED_NAMES:
        source = bundled_path(name_or_path)
    # A hub name is checked once against the Hub before transformers would retry it for a minute:
    # unreachable, a cached tokenizer loads offline and anything else fails now with the options.
    hub = not Path(source).expanduser().exists() and not name_or_path.startswith((".", "/", "~"))
    offline = hub and check_hub(name_or_path, error=TaskError)
    from transformers import AutoTokenizer  # after the check: an offline failure need not wait for its import

    try:
        with hub_offline(offline):
            tok = AutoTokenizer.from_pretrained(str(source))
    except Exception as e:  # transformers raises OSError, ValueError, HTTP errors … for a bad source
        raise TaskError(
            f"Could not load the tokenizer of {name_or_path!r} ({type(e).__name__}: {e}). Give a "
            "local checkpoint folder, 'bundled', or a Hugging Face Hub name when online."
        ) from None
    from circuitwise.models.bos import default_prepend_bos

    with hub_offline(offline):  # it reads the model's config.json, from the cache when offline
        prepend = default_prepend_bos(name_or_path)
    return TokenizerModel(tok, prepend_bos=prepend)


__all__ = ["TokenizerModel", "load_tokenizer"]
