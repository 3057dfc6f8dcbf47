"""Which cells of two models' results stand for the same thing, and which have no counterpart.

Two different models rarely have identical axes: a rotary model has no ``pos_embed`` term in its
per-layer decomposition, a deeper model has more layers. A difference is computed only over the
cells both sides share; everything else is named, so the comparison says what it could not compare
instead of failing (or, worse, pairing cells that mean different things).

- Labels without a layer (``embed``, ``pos_embed``, ``final_post``) match by name.
- Per-layer labels (``3_attn_out``, ``3_pre``) match by name when both models have the same
  depth, else by relative depth: layer *i* of the shallower model (its centre at (i + ½)/L) is
  matched with the deeper model's layer at that depth, and the cell is labelled with both layers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_LAYERED = re.compile(r"^(\d+)_(.+)$")


@dataclass(frozen=True)
class Match:
    """Cells shared by A and B: ``cells[k]`` is A's label ``index_a[k]`` and B's ``index_b[k]``."""

    cells: list[str]
    index_a: list[int]
    index_b: list[int]
    only_a: list[str] = field(default_factory=list)
    only_b: list[str] = field(default_factory=list)
    by_depth: bool = False

    @property
    def complete(self) -> bool:
        return not self.only_a and not self.only_b and not self.by_depth

    def note(self, what: str) -> str | None:
        """One sentence on how ``what`` was matched and what it leaves out (None when every cell matched by name)."""
        if self.complete:
            return None
        if not self.cells:
            return f"{what}: the two sides share no cell, so it is shown side by side without a difference."
        parts = [f"{what}: {len(self.cells)} shared cell(s) compared"]
        if self.by_depth:
            parts.append("layers matched by relative depth (the models have different numbers of layers; "
                         "a cell is labelled 'A's layer ~ B's layer')")
        if self.only_a:
            parts.append(f"not compared, only on side A: {_some(self.only_a)}")
        if self.only_b:
            parts.append(f"not compared, only on side B: {_some(self.only_b)}")
        return "; ".join(parts) + "."


def _some(labels: list[str], limit: int = 12) -> str:
    # A 32-layer model against a 2-layer one leaves dozens unmatched: the note stays one readable line.
    more = f" and {len(labels) - limit} more" if len(labels) > limit else ""
    return ", ".join(labels[:limit]) + more


def _split(label: str) -> tuple[int | None, str]:
    m = _LAYERED.match(label)
    return (int(m.group(1)), m.group(2)) if m else (None, label)


def match_labels(labels_a: list[str], labels_b: list[str], n_layers_a: int, n_layers_b: int) -> Match:
    """Match two label lists (see the module docstring); cells stay in A's order."""
    if n_layers_a == n_layers_b:
        where_b = {lab: j for j, lab in enumerate(labels_b)}
        shared = [(i, where_b[lab]) for i, lab in enumerate(labels_a) if lab in where_b]
        in_a = set(labels_a)
        return Match([labels_a[i] for i, _ in shared], [i for i, _ in shared], [j for _, j in shared],
                     [lab for lab in labels_a if lab not in where_b], [lab for lab in labels_b if lab not in in_a])
    swap = n_layers_a > n_layers_b  # walk the shallower side: each of its layers finds a distinct deeper one
    short, deep = (labels_b, labels_a) if swap else (labels_a, labels_b)
    n_short, n_deep = (n_layers_b, n_layers_a) if swap else (n_layers_a, n_layers_b)
    where_deep = {lab: j for j, lab in enumerate(deep)}
    pairs: list[tuple[int, int, str]] = []
    for i, lab in enumerate(short):
        layer, rest = _split(lab)
        if layer is None:
            j = where_deep.get(lab)
            name = lab
        else:
            partner = f"{int((layer + 0.5) * n_deep / n_short)}_{rest}"
            j = where_deep.get(partner)
            name = f"{partner} ~ {lab}" if swap else f"{lab} ~ {partner}"
        if j is not None:
            pairs.append((i, j, name))
    used_short, used_deep = {i for i, _, _ in pairs}, {j for _, j, _ in pairs}
    left_short = [lab for i, lab in enumerate(short) if i not in used_short]
    left_deep = [lab for j, lab in enumerate(deep) if j not in used_deep]
    ia, ib = ([j for _, j, _ in pairs], [i for i, _, _ in pairs]) if swap else ([i for i, _, _ in pairs],
                                                                                  [j for _, j, _ in pairs])
    only_a, only_b = (left_deep, left_short) if swap else (left_short, left_deep)
    if swap:  # cells in A's order
        order = sorted(range(len(pairs)), key=lambda k: ia[k])
        pairs, ia, ib = [pairs[k] for k in order], [ia[k] for k in order], [ib[k] for k in order]
    return Match([name for _, _, name in pairs], ia, ib, only_a, only_b, by_depth=True)


def match_edges(names_a: list[str], names_b: list[str]) -> Match:
    """Edges of two circuit graphs matched by name (``L0H1 -> L1H2`` is the same edge wherever both have it)."""
    where_b = {n: j for j, n in enumerate(names_b)}
    in_a = set(names_a)
    shared = [(i, where_b[n]) for i, n in enumerate(names_a) if n in where_b]
    return Match([names_a[i] for i, _ in shared], [i for i, _ in shared], [j for _, j in shared],
                 [n for n in names_a if n not in where_b], [n for n in names_b if n not in in_a])


__all__ = ["Match", "match_edges", "match_labels"]
