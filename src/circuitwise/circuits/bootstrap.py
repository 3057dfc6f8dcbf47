"""Bootstrapped selection: edges ranked by how often a base method puts them in its top, over prompt resamples.

A single method's ranking can hinge on a few prompts. Bootstrapped selection (the ensemble MIB
reports beside single methods) scores the prompts in ``groups`` contiguous blocks with a base
method whose score is a mean of per-prompt terms (so a resample's score is the size-weighted mean
of its blocks' scores, exactly), draws ``resamples`` block resamples (seeded), and counts, per edge,
the share of resamples whose top ``top`` edges by ``|score|`` hold it. The edge's score is that
frequency, signed as the base method's whole-task score, with ties broken by the base score's
magnitude (a term below one resample's worth, so it never overrides a frequency):

    score(e) = sign(m_e) · (freq_e + |m_e| / (max|m| · (resamples + 1)))

Selection then works on these scores as on any method's (``--selection target`` grows the most
stable edges first). The cost is the base method's over the whole task (the blocks together are the
same prompts), in smaller batches.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Literal, get_args

import torch

from circuitwise.circuits.registry import DiscoveryMethod, check_choice, options_config
from circuitwise.circuits.scores import EdgeScores, Progress, no_progress, prepare
from circuitwise.errors import ConfigError
from circuitwise.tasks.tokenize import TokenizedTask

# Methods whose edge score is a mean of per-prompt terms (gradient attribution), so that scoring
# blocks of prompts and averaging them gives the whole task's score. Edge pruning learns one mask for
# all prompts and exact patching costs a forward per edge per block: neither is resampled.
AdditiveName = Literal["eap", "eap-ig", "eap-ig-activations", "relp"]
ADDITIVE_METHODS: tuple[str, ...] = get_args(AdditiveName)

# Top edges per resample when `top` is not given: this share of the graph's edges (at least one).
DEFAULT_TOP_SHARE = 0.05


@dataclass(frozen=True)
class BootstrapOptions:
    """``base``: the method each block is scored with (its defaults); ``resamples`` block resamples of
    ``groups`` blocks, seeded by ``seed``; ``top``: the edges counted per resample (default 5%)."""

    base: AdditiveName = "eap-ig"
    resamples: int = 100
    groups: int = 20
    top: int | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        check_choice("bootstrap", "base", self.base, AdditiveName)
        for name in ("resamples", "groups"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"bootstrap's {name} is a positive whole number, not {value!r}.")
        if self.top is not None and (not isinstance(self.top, int) or isinstance(self.top, bool) or self.top < 1):
            raise ConfigError(f"bootstrap's top is a positive whole number of edges, not {self.top!r}.")


def group_bounds(n: int, groups: int) -> list[int]:
    """Where ``groups`` contiguous blocks of ``n`` prompts start and end (``G + 1`` bounds, G ≤ n)."""
    G = max(1, min(groups, n))
    return torch.linspace(0, n, G + 1).round().long().tolist()


def group_scores(model: Any, tok: TokenizedTask, method: str, options: Any, groups: int, *,
                 metric: str = "logit_diff", batch_size: int | None = None,
                 progress: Progress = no_progress, what: str = "edge stability") -> tuple[torch.Tensor, torch.Tensor]:
    """``[groups, edge]`` mean scores of contiguous blocks of prompts, and ``[groups]`` their sizes."""
    from circuitwise.circuits.methods import score_edges  # the registry imports this module

    bounds = group_bounds(len(tok), groups)
    G = len(bounds) - 1
    rows, sizes = [], []
    for g in range(G):
        part = tok.slice(bounds[g], bounds[g + 1])
        s = score_edges(model, part, method, options, batch_size=batch_size, metric=metric, check=False)
        rows.append(s.scores.float())
        sizes.append(bounds[g + 1] - bounds[g])
        progress(g + 1, G, what)
    return torch.stack(rows), torch.tensor(sizes, dtype=torch.float64)


def block_resamples(groups: int, resamples: int, seed: int) -> torch.Tensor:
    """``[resamples, groups]`` float64: how often each block is drawn in each resample (seeded)."""
    gen = torch.Generator().manual_seed(seed)
    idx = torch.randint(0, groups, (resamples, groups), generator=gen)
    counts = torch.zeros(resamples, groups, dtype=torch.float64)
    return counts.scatter_add_(1, idx, torch.ones_like(idx, dtype=torch.float64))


def bootstrap_scores(S: torch.Tensor, sizes: torch.Tensor, *, resamples: int, top: int, seed: int
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """From block scores ``S`` ``[G, edge]``: (score as in the module docstring, frequency, whole-task mean)."""
    S = torch.nan_to_num(S.double())
    mean = (sizes @ S) / sizes.sum()
    w = block_resamples(S.shape[0], resamples, seed) * sizes[None]
    resampled = (w @ S) / w.sum(1, keepdim=True)
    keep = torch.zeros_like(resampled, dtype=torch.bool)
    keep.scatter_(1, resampled.abs().topk(min(top, S.shape[1]), dim=1).indices, True)
    freq = keep.double().mean(0)
    peak = float(mean.abs().max())
    tie = mean.abs() / (peak * (resamples + 1)) if peak > 0 else torch.zeros_like(mean)
    return torch.where(mean < 0, -1.0, 1.0) * (freq + tie), freq, mean


def score_bootstrap(model: Any, tok: TokenizedTask, options: BootstrapOptions, *, batch_size: int | None = None,
                    metric: str = "logit_diff", progress: Progress = no_progress, check: bool = True) -> EdgeScores:
    from circuitwise.circuits.graph import graph_of
    from circuitwise.circuits.methods import check_metric, get_method

    base = get_method(options.base)
    check_metric(options.base, base.options(), metric)
    start = time.perf_counter()
    if check:  # the engine against the bridge once, before the blocks (which skip it): no scoring pass
        prepare(model, tok, metric, check=True, batch_size=batch_size)
    S, sizes = group_scores(model, tok, options.base, None, options.groups, metric=metric, batch_size=batch_size,
                            progress=progress, what=f"bootstrap ({options.base} by block)")
    graph = graph_of(model)
    top = options.top or max(1, round(DEFAULT_TOP_SHARE * graph.n_edges))
    score, freq, mean = bootstrap_scores(S, sizes, resamples=options.resamples, top=top, seed=options.seed)
    config = {**options_config(options), "top": top, "groups": int(S.shape[0])}
    return EdgeScores(graph, score.float(), "bootstrap", metric, config, n_examples=len(tok),
                      seconds=time.perf_counter() - start)


METHOD = DiscoveryMethod(
    "bootstrap", "Bootstrapped selection: edges ranked by how often a base method (eap-ig) puts them in its top "
    "over prompt resamples.", BootstrapOptions, score_bootstrap,
)

__all__ = ["ADDITIVE_METHODS", "METHOD", "BootstrapOptions", "block_resamples", "bootstrap_scores", "group_bounds",
           "group_scores", "score_bootstrap"]
