"""Each graph feature's top activating contexts: where, in the task's prompts or a corpus, it fires most.

A context is one text's tokens, the position of the feature's largest activation in it, and its
activation at every token (for shading). Activations are the transcoders' own, on the model's clean
run (:func:`~circuitwise.features.replacement.clean_run`: the BOS position is not a feature's), so
a context's peak equals the activation a graph of that text would give the feature there.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any, Literal

import torch

from circuitwise.features.replacement import check_model, clean_run
from circuitwise.features.transcoder import TranscoderSet
from circuitwise.schema.graph import Context

DEFAULT_CONTEXTS = 5
# Where contexts are looked for, by default: a task's first prompts and a corpus's first lines (one
# clean run each: a built-in task may have thousands of prompts).
DEFAULT_TASK_TEXTS = 200
DEFAULT_CORPUS_LINES = 500
# Longer texts are cut to their first tokens: a context is read at a glance.
MAX_CONTEXT_TOKENS = 64


def feature_contexts(model: Any, transcoders: TranscoderSet, texts: Sequence[str],
                     features: Iterable[tuple[int, int]], *, source: Literal["task", "corpus"] = "task",
                     k: int = DEFAULT_CONTEXTS, max_tokens: int = MAX_CONTEXT_TOKENS,
                     progress: Callable[[int, int], None] | None = None) -> dict[tuple[int, int], list[Context]]:
    """The ``k`` texts of ``texts`` where each ``(layer, feature)`` peaks highest, best first.

    A feature that never fires (activation ≤ 0) in a text gets no context from it. One clean run per
    text; only the asked features' activations are kept.
    """
    wanted = sorted(set(features))
    if not wanted or not texts or k <= 0:
        return {f: [] for f in wanted}
    w = check_model(model, transcoders)
    tcs = transcoders.to(w.device, w.dtype)
    by_layer: dict[int, list[int]] = {}
    for layer, f in wanted:
        by_layer.setdefault(layer, []).append(f)
    found: dict[tuple[int, int], list[Context]] = {f: [] for f in wanted}
    tokenizer = getattr(model, "tokenizer", None)
    for index, text in enumerate(texts):
        tokens = model.to_tokens(text)[0][:max_tokens]
        run = clean_run(model, tcs, tokens, w)
        strs = [tokenizer.decode([int(t)]) if tokenizer is not None else str(int(t)) for t in tokens.tolist()]
        for layer, feats in by_layer.items():
            acts = run.acts[layer][:, feats].float().cpu()  # [T, len(feats)]
            for j, f in enumerate(feats):
                column = acts[:, j]
                peak = int(torch.argmax(column))
                value = float(column[peak])
                if value <= 0:
                    continue
                found[(layer, f)].append(Context(source=source, tokens=strs, pos=peak, activation=value, index=index,
                                                 activations=[round(float(a), 6) for a in column.tolist()]))
        if progress is not None:
            progress(index + 1, len(texts))
    return {f: sorted(cs, key=lambda c: -c.activation)[:k] for f, cs in found.items()}


def merge_contexts(*parts: dict[tuple[int, int], list[Context]]) -> dict[tuple[int, int], list[Context]]:
    """Contexts of several sources together: each source's own best, in the order the sources are given."""
    out: dict[tuple[int, int], list[Context]] = {}
    for part in parts:
        for f, cs in part.items():
            out.setdefault(f, []).extend(cs)
    return out


__all__ = ["DEFAULT_CONTEXTS", "DEFAULT_CORPUS_LINES", "DEFAULT_TASK_TEXTS", "MAX_CONTEXT_TOKENS", "feature_contexts",
           "merge_contexts"]
