"""Which token position each column of a ``[layer, pos]`` sweep patches, per example.

Prompts of equal length are swept position by position, labelled with their tokens. Prompts of
different lengths have no common position axis; they are aligned by the task's roles (``N1``,
``ADJ``, ``END`` …), one column per role, each example patched at its own token for that role,
or (``align="end"``) by position counted from each prompt's last token, labelled ``-k`` … ``-2``,
``END`` — never by a token string, since the tokens at one such offset differ between prompts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from circuitwise.errors import ConfigError, TaskError
from circuitwise.tasks.tokenize import TokenizedTask

Align = Literal["auto", "token", "role", "end"]
ALIGNMENTS: tuple[str, ...] = ("auto", "token", "role", "end")


@dataclass(frozen=True)
class Positions:
    """``index[example, column]`` is the token position patched; ``labels[column]`` names it."""

    index: torch.Tensor
    labels: list[str]
    mode: Literal["token", "role", "end"]

    def slice(self, start: int, stop: int) -> "Positions":
        return Positions(self.index[start:stop], self.labels, self.mode)


def token_labels(str_tokens: tuple[str, ...]) -> list[str]:
    """``"tok_i"`` labels: the tokens of the first prompt, made unique by their position."""
    return [f"{t}_{i}" for i, t in enumerate(str_tokens)]


def sweep_positions(tok: TokenizedTask, align: str = "auto") -> Positions:
    if align not in ALIGNMENTS:
        raise ConfigError(f"Unknown alignment {align!r}. Use 'auto', 'token', 'role' or 'end'.")
    if align == "end":
        return end_positions(tok)
    if align == "token" or (align == "auto" and tok.same_length):
        if not tok.same_length:
            lengths = sorted(set(int(n) for n in tok.lengths))
            raise TaskError(
                f"The prompts of task {tok.task.name!r} have different token lengths ({lengths}), so "
                "a [layer, pos] sweep has no common position axis. Give the examples roles (so "
                "positions are aligned by role, e.g. N1, ADJ, END), use prompts of one token length, "
                "sweep positions counted from the end (--align end), or sweep something without "
                "positions (heads, head_q, head_k, head_v, head_pattern)."
            )
        n = tok.clean.shape[1]
        index = torch.arange(n).expand(len(tok), n).clone()
        return Positions(index, token_labels(tok.str_tokens[0]), "token")
    if tok.roles is None or not any(tok.roles):
        raise TaskError(
            f"The prompts of task {tok.task.name!r} have different token lengths "
            f"({sorted(set(int(n) for n in tok.lengths))}) and define no roles, so a [layer, pos] "
            "sweep cannot line their positions up. Add roles to the examples (character offsets of "
            "N1, ADJ, END …), use prompts of one token length, sweep positions counted from the "
            "end (--align end), or sweep something without positions (heads, head_q, head_k, "
            "head_v, head_pattern)."
        )
    names = sorted(set().union(*(r.keys() for r in tok.roles)))
    missing = [(i, n) for i, r in enumerate(tok.roles) for n in names if n not in r]
    if missing:
        i, n = missing[0]
        raise TaskError(
            f"Example {i} of task {tok.task.name!r} has no role {n!r} ({len(missing)} role(s) missing "
            "in all). Aligning prompts by role needs every role in every example: add it, or drop "
            "the examples that lack it."
        )
    index = torch.tensor([[r[n] for n in names] for r in tok.roles], dtype=torch.long)
    # Columns in reading order, so a heatmap's x axis follows the sentence.
    order = sorted(range(len(names)), key=lambda j: (float(index[:, j].float().median()), names[j]))
    index = index[:, order]
    if bool((index > tok.last[:, None].cpu()).any()):
        raise TaskError("A role points past its prompt's last token; check the task's role offsets.")
    return Positions(index, [names[j] for j in order], "role")


def end_positions(tok: TokenizedTask) -> Positions:
    """The last ``n`` tokens of every prompt, ``n`` the shortest prompt's length."""
    n = int(tok.lengths.min())
    last = tok.last.cpu().long()
    index = last[:, None] - torch.arange(n - 1, -1, -1)[None, :]
    labels = [f"-{n - j}" for j in range(n - 1)] + ["END"]
    return Positions(index, labels, "end")


__all__ = ["ALIGNMENTS", "Align", "Positions", "end_positions", "sweep_positions", "token_labels"]
