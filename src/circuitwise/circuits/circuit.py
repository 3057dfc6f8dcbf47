"""A circuit: a set of edges of one model's graph, with the scores that chose them.

``circuit.json`` (``Circuit.to_json``) lists every edge with its score and, for re-measuring
with TransformerLens hooks, each end as TransformerLens's ``attribution_patching.Node`` fields
(``kind``, ``layer``, ``head``; the edge exists at every position). ``Circuit.from_json`` checks
the file against the model it is evaluated on.

Position-aware circuits (:mod:`circuitwise.circuits.positional`) add the position columns at the
top (``positions``: mode and labels) and, per edge, its score at each position (``position_scores``) and
the positions where it is kept (``kept_positions``; every one, unless the circuit was chosen as
(edge, position) pairs). Files without them are position-agnostic circuits, as before.

Circuits of (edge, key position, query position) units (:mod:`circuitwise.circuits.positional_kq`)
also give each key/value edge its flows: ``kept_flows`` (``[key, query]`` label pairs; its
``kept_positions`` are their keys) and ``flow_scores`` (key → query → score).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from circuitwise.circuits.graph import Graph, graph_of
from circuitwise.circuits.positional import PositionSpec
from circuitwise.circuits.positional_kq import kv_edges
from circuitwise.errors import ConfigError
from circuitwise.models.fingerprint import fingerprint
from circuitwise.models.loading import dtype_of
from circuitwise.models.processing import of as processing_of
from circuitwise.models.weights import read_weights, supports
from circuitwise.schema.circuit import FORMAT, VERSION, CircuitFile
from circuitwise.types import Shows


def model_info(model: Any) -> dict[str, Any]:
    cfg = model.cfg
    return {
        "name": getattr(model, "circuitwise_name", None),
        "n_layers": int(cfg.n_layers),
        "n_heads": int(cfg.n_heads),
        "d_model": int(cfg.d_model),
        "d_vocab": int(cfg.d_vocab),
        "dtype": dtype_of(model),
        # The weights the scores were computed on (folded norms, centred weights), step by step.
        "processing": rec.to_json() if (rec := processing_of(model)) is not None else None,
        # What the edge graph depends on: grouped keys (receivers per query head), parallel
        # blocks (the MLP reads resid_pre), post-norms (heads' shares at the live scale) …
        "architecture": read_weights(model).features if supports(model) is None else None,
        # Which model exactly (architecture, shapes, processing, weights hash): `evaluate` refuses another.
        "fingerprint": fingerprint(model),
    }


@dataclass(frozen=True, eq=False, repr=False)
class Circuit(Shows):
    graph: Graph
    edges: torch.Tensor  # [edge] bool
    scores: torch.Tensor | None = None  # [edge] the method's scores, if known
    method: str | None = None
    selection: dict[str, Any] = field(default_factory=dict)
    model: dict[str, Any] = field(default_factory=dict)
    task: str | None = None
    metric: str = "logit_diff"
    # Position-aware circuits: the columns, each edge's score per column, the (edge, column) pairs kept.
    positions: PositionSpec | None = None
    position_scores: torch.Tensor | None = None  # [edge, column]
    position_keep: torch.Tensor | None = None  # [edge, column] bool; None: every position of a kept edge
    # Circuits of (key/value edge, key column, query column) units: per key/value edge (positional_kq.kv_edges
    # order) the flows kept and their scores; None: every query of a kept (edge, key column).
    flows: torch.Tensor | None = None  # [kv edge, key column, query column] bool
    flow_scores: torch.Tensor | None = None  # [kv edge, key column, query column]

    def __post_init__(self) -> None:
        if self.edges.shape != (self.graph.n_edges,) or self.edges.dtype != torch.bool:
            raise ValueError("edges must be a bool tensor with one entry per graph edge")
        shape = None if self.positions is None else (self.graph.n_edges, len(self.positions.labels))
        for name in ("position_scores", "position_keep"):
            t = getattr(self, name)
            if t is not None and (shape is None or t.shape != shape):
                raise ValueError(f"{name} needs positions and the shape [edge, position column] {shape}")
        if self.position_keep is not None and not torch.equal(self.position_keep.any(-1), self.edges):
            raise ValueError("position_keep must keep each circuit edge at one position or more, and no other edge")
        if self.flows is not None or self.flow_scores is not None:
            C = 0 if self.positions is None else len(self.positions.labels)
            kv = kv_edges(self.graph)
            for t in (self.flows, self.flow_scores):
                if t is not None and t.shape != (len(kv), C, C):
                    raise ValueError(f"flows and flow_scores need positions and the shape [kv edge, key, query] "
                                     f"{(len(kv), C, C)}")
            if self.flows is not None and (self.position_keep is None
                                           or not torch.equal(self.position_keep[kv], self.flows.any(-1))):
                raise ValueError("flows need position_keep, whose key/value edges' positions are the flows' keys")

    @property
    def positional(self) -> bool:
        """Whether only some positions of some edge are kept (faithfulness then patches by position)."""
        if self.flows is not None:
            kept = self.position_keep[kv_edges(self.graph)]  # type: ignore[index]  # __post_init__: set with flows
            if not bool(self.flows[kept].all()):
                return True
        return self.position_keep is not None and not bool(self.position_keep[self.edges].all())

    @property
    def n_edges(self) -> int:
        return int(self.edges.sum())

    def __repr__(self) -> str:
        return (f"Circuit({self.method or 'circuit'} on {self.task or 'a task'}: {self.n_edges} of "
                f"{self.graph.n_edges} edges ({self.edge_fraction:.1%}), {len(self.nodes())} nodes)")

    def pair_mask(self) -> torch.Tensor:
        """``[edge, column]`` bool: the (edge, position) pairs the circuit keeps (every position of a
        kept edge, unless chosen by position). Needs the circuit's positions."""
        if self.positions is None:
            raise ConfigError("This circuit has no position columns; score with positions='tokens' or 'roles'.")
        if self.position_keep is not None:
            return self.position_keep
        return self.edges[:, None].expand(-1, len(self.positions.labels)).clone()

    def position_pairs(self) -> list[tuple[str, str]]:
        """``(edge name, position label)`` of each kept (edge, position) pair."""
        assert self.positions is not None
        labels = self.positions.labels
        return [(self.graph.edge_names[e], labels[c]) for e, c in self.pair_mask().nonzero().tolist()]

    @property
    def edge_fraction(self) -> float:
        return self.n_edges / self.graph.n_edges

    def edge_list(self) -> list[tuple[str, str, float | None]]:
        """``(sender, receiver, score)`` of each circuit edge, strongest first."""
        s_idx, r_idx = self.graph.edge_index
        ids = self.edges.nonzero().flatten().tolist()
        if self.scores is not None:
            ids.sort(key=lambda i: -abs(float(self.scores[i])) if not math.isnan(float(self.scores[i])) else 0.0)
        out = []
        for i in ids:
            score = None if self.scores is None or math.isnan(float(self.scores[i])) else float(self.scores[i])
            out.append((self.graph.senders[int(s_idx[i])].name, self.graph.receivers[int(r_idx[i])].name, score))
        return out

    def nodes(self) -> list[str]:
        """Names of the nodes the circuit's edges touch (a head's q/k/v count as the head)."""
        names: set[str] = set()
        s_idx, r_idx = self.graph.edge_index
        for i in self.edges.nonzero().flatten().tolist():
            names.add(self.graph.senders[int(s_idx[i])].name)
            names.add(self.graph.receivers[int(r_idx[i])].node)
        order = [s.name for s in self.graph.senders] + ["logits"]
        return [n for n in order if n in names]

    def with_edges(self, edges: torch.Tensor, **selection: Any) -> "Circuit":
        edges = edges.bool().cpu()
        keep = None
        if self.position_keep is not None:  # an added edge is kept at every position, a dropped one at none
            old = self.position_keep & edges[:, None]
            keep = torch.where((edges & ~self.edges)[:, None], True, old)
        flows = None
        if self.flows is not None and keep is not None:  # likewise every flow of an added key/value edge
            kv = kv_edges(self.graph)
            flows = torch.where((edges & ~self.edges)[kv][:, None, None], True, self.flows & edges[kv][:, None, None])
        return Circuit(self.graph, edges, self.scores, self.method,
                       {**self.selection, **selection}, self.model, self.task, self.metric,
                       self.positions, self.position_scores, keep, flows, self.flow_scores)

    # -- JSON -------------------------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        s_idx, r_idx = self.graph.edge_index
        by_name = {f"{self.graph.senders[int(s)].name}->{self.graph.receivers[int(r)].name}": (int(s), int(r))
                   for s, r in zip(s_idx.tolist(), r_idx.tolist())}
        edges = []
        for sender, receiver, score in self.edge_list():
            s, r = by_name[f"{sender}->{receiver}"]
            edges.append({
                "sender": sender, "receiver": receiver, "score": score,
                "tl_sender": self.graph.senders[s].tl_node(),
                "tl_receiver": self.graph.receivers[r].tl_node(self.graph.n_layers),
                **self._edge_positions(self.graph.edge_ids[f"{sender}->{receiver}"]),
            })
        data = {
            "format": FORMAT, "version": VERSION,
            "model": self.model, "graph": self.graph.describe(), "task": self.task, "metric": self.metric,
            "method": self.method, "selection": self.selection,
            "n_edges": self.n_edges, "total_edges": self.graph.n_edges, "edge_fraction": self.edge_fraction,
            "nodes": self.nodes(), "edges": edges,
        }
        if self.positions is not None:
            data["positions"] = {"mode": self.positions.mode, "labels": list(self.positions.labels)}
        CircuitFile.model_validate(data)  # validated on write: a failure is circuitwise's bug
        return data

    def _edge_positions(self, i: int) -> dict[str, Any]:
        """Edge ``i``'s circuit.json fields for its positions (none for position-agnostic circuits)."""
        if self.positions is None:
            return {}
        labels = self.positions.labels
        out: dict[str, Any] = {}
        if self.position_scores is not None:
            out["position_scores"] = {p: (None if math.isnan(v) else v)
                                for p, v in zip(labels, self.position_scores[i].tolist(), strict=True)}
        keep = self.position_keep[i].tolist() if self.position_keep is not None else [True] * len(labels)
        out["kept_positions"] = [p for p, k in zip(labels, keep, strict=True) if k]
        j = self._kv_row(i)
        if j is not None and self.flows is not None:
            out["kept_flows"] = [[labels[k], labels[q]] for k, q in self.flows[j].nonzero().tolist()]
        if j is not None and self.flow_scores is not None:
            out["flow_scores"] = {labels[k]: {labels[q]: (None if math.isnan(v) else v) for q, v in enumerate(row)}
                                  for k, row in enumerate(self.flow_scores[j].tolist())}
        return out

    def _kv_row(self, i: int) -> int | None:
        """Edge ``i``'s row among the key/value edges (flows, flow_scores), None if it is none of them."""
        if self.flows is None and self.flow_scores is None:
            return None
        hit = (kv_edges(self.graph) == i).nonzero()
        return int(hit[0, 0]) if len(hit) else None

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(json.dumps(self.to_json(), indent=1), encoding="utf-8")
        tmp.replace(path)
        return path

    @staticmethod
    def check_json(data: Any, source: str = "circuit.json") -> None:
        """Raise ConfigError unless ``data`` has circuit.json's shape (cheap: no model needed)."""
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ConfigError(
                f"{source} is not a circuitwise circuit file (no \"format\": \"{FORMAT}\"). Give the "
                "circuit.json written by `circuitwise circuit`."
            )
        fix = "Re-create it with `circuitwise circuit`, or restore the field as that command writes it"
        version = data.get("version", 0)
        if not isinstance(version, int) or isinstance(version, bool) or version < 0:
            raise ConfigError(f"{source}: \"version\" must be a whole number, not {version!r}. {fix}.")
        for key, kind in (("model", dict), ("selection", dict), ("method", str), ("task", str), ("metric", str)):
            if data.get(key) is not None and not isinstance(data[key], kind):
                raise ConfigError(f"{source}: \"{key}\" must be {'an object' if kind is dict else 'a string'}, "
                                  f"not {data[key]!r}. {fix}.")
        if version > VERSION:
            raise ConfigError(f"{source} was written by a newer circuitwise (format version "
                              f"{data.get('version')}); upgrade circuitwise to read it.")
        CircuitFile.validate_data(data, source)  # the rest of the schema (circuitwise.schema.circuit)

    @classmethod
    def from_json(cls, data: Any, model: Any, *, source: str = "circuit.json") -> "Circuit":
        """Rebuild a circuit on ``model``, raising ConfigError where the file does not fit it."""
        cls.check_json(data, source)
        graph = graph_of(model)
        want = model_info(model)
        have = data.get("model") or {}
        for key in ("n_layers", "n_heads", "d_model"):
            if key in have and have[key] != want[key]:
                raise ConfigError(
                    f"{source} was found on a model with {key}={have[key]} (model "
                    f"{have.get('name')!r}), but this model has {key}={want[key]}. Evaluate it with "
                    f"the model it was found on (--model {have.get('name') or '…'})."
                )
        edges = data.get("edges")
        if not isinstance(edges, list):
            raise ConfigError(f"{source} has no \"edges\" list. Re-create it with `circuitwise circuit`.")
        keep = torch.zeros(graph.n_edges, dtype=torch.bool)
        scores = torch.full((graph.n_edges,), float("nan"))
        spec = _positions_of(data, source)
        C = 0 if spec is None else len(spec.labels)
        pos_scores = torch.full((graph.n_edges, C), float("nan"))
        pos_keep = torch.zeros(graph.n_edges, C, dtype=torch.bool)
        kv = kv_edges(graph)
        kv_row = {int(e): j for j, e in enumerate(kv.tolist())}
        flows = torch.zeros(len(kv), C, C, dtype=torch.bool)
        flow_scores = torch.full((len(kv), C, C), float("nan"))
        has_flows = any(isinstance(e, dict) and ("kept_flows" in e or "flow_scores" in e) for e in edges)
        for j, e in enumerate(edges):
            if not isinstance(e, dict) or not isinstance(e.get("sender"), str) or not isinstance(e.get("receiver"), str):
                raise ConfigError(f"{source}: edge {j} needs string fields \"sender\" and \"receiver\".")
            try:
                i = graph.edge_id(e["sender"], e["receiver"])
            except ConfigError as err:
                raise ConfigError(f"{source}: edge {j}: {err}") from None
            keep[i] = True
            if isinstance(e.get("score"), (int, float)):
                scores[i] = float(e["score"])
            if spec is not None:
                col = {p: c for c, p in enumerate(spec.labels)}
                kept = e.get("kept_positions", list(spec.labels))
                unknown = [p for p in kept if p not in col]
                if unknown or not kept:
                    raise ConfigError(f"{source}: edge {j} keeps positions {kept!r}; each edge needs one or more "
                                      f"of the file's position labels {list(spec.labels)}.")
                pos_keep[i, [col[p] for p in kept]] = True
                for p, v in (e.get("position_scores") or {}).items():
                    if p in col and isinstance(v, (int, float)):
                        pos_scores[i, col[p]] = float(v)
                if has_flows and i in kv_row:
                    _read_flows(e, j, source, col, pos_keep[i], flows[kv_row[i]], flow_scores[kv_row[i]])
        kq = spec is not None and has_flows
        return cls(graph, keep, scores, data.get("method"), dict(data.get("selection") or {}),
                   have or want, data.get("task"), data.get("metric") or "logit_diff",
                   spec, None if spec is None else pos_scores, None if spec is None else pos_keep,
                   flows if kq else None, flow_scores if kq else None)

    @classmethod
    def load(cls, path: str | Path, model: Any) -> "Circuit":
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"Circuit file {path} does not exist. Write one with `circuitwise circuit TASK --out DIR`.") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ConfigError(f"{path} is not valid JSON ({e}). Re-create it with `circuitwise circuit`.") from None
        return cls.from_json(data, model, source=str(path))


def _read_flows(e: dict[str, Any], j: int, source: str, col: dict[str, int], kept: torch.Tensor,
                flows: torch.Tensor, flow_scores: torch.Tensor) -> None:
    """Edge ``j``'s ``kept_flows`` / ``flow_scores`` into its rows (a key/value edge of a units circuit)."""
    pairs = e.get("kept_flows")
    if pairs is None:  # every query of each kept key
        flows[kept] = True
    else:
        for pair in pairs:
            if not (isinstance(pair, list) and len(pair) == 2 and all(p in col for p in pair)):
                raise ConfigError(f"{source}: edge {j}'s kept_flows holds {pair!r}; each must be [key, query] of the "
                                  f"file's position labels {list(col)}.")
            flows[col[pair[0]], col[pair[1]]] = True
        if not torch.equal(flows.any(-1), kept):
            raise ConfigError(f"{source}: edge {j}'s kept_flows have keys {sorted({p[0] for p in pairs})} but it is "
                              f"kept at {[p for p, c in col.items() if kept[c]]}; they must be the same. Re-create it "
                              "with circuitwise.")
    for k, row in (e.get("flow_scores") or {}).items():
        for q, v in (row or {}).items() if isinstance(row, dict) else ():
            if k in col and q in col and isinstance(v, (int, float)):
                flow_scores[col[k], col[q]] = float(v)


def _positions_of(data: dict[str, Any], source: str) -> PositionSpec | None:
    pos = data.get("positions")
    if pos is None:
        return None
    mode, labels = (pos.get("mode"), pos.get("labels")) if isinstance(pos, dict) else (None, None)
    if mode not in ("tokens", "roles") or not isinstance(labels, list) or not labels \
            or not all(isinstance(p, str) for p in labels) or len(set(labels)) < len(labels):
        raise ConfigError(f"{source}: \"positions\" must be {{\"mode\": \"tokens\" or \"roles\", \"labels\": "
                          f"[distinct names]}}, not {pos!r}. Re-create it with `circuitwise circuit`.")
    return PositionSpec(mode, tuple(labels))


__all__ = ["Circuit", "FORMAT", "VERSION", "model_info"]
