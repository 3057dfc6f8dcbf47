"""EAP-IG's graph files (MIB's submission format): export scores and circuits, import them back.

EAP-IG (hannamw/EAP-IG, ``eap.graph.Graph``) writes a graph two ways:

- JSON (``to_json``): ``{"cfg": {n_layers, n_heads, parallel_attn_mlp, d_model},
  "nodes": {name: {"in_graph": bool[, "score": float]}}, "edges": {name: {"score": float,
  "in_graph": bool}}}``. Nodes are ``input``, ``a{l}.h{h}``, ``m{l}`` and ``logits``; an edge is
  ``PARENT->CHILD``, with ``<q>``/``<k>``/``<v>`` after a head child (``input->a0.h1<q>``,
  ``a0.h1->m2``, ``m1->logits``).
- ``.pt`` (``to_pt``): a dict of ``cfg``, ``src_nodes`` (every node but the logits, in forward
  order), ``dst_nodes`` (per layer ``a{l}.h{h}<q>`` for every head, then ``<k>``, ``<v>``, then
  ``m{l}``; last ``logits``), ``edges_scores`` and ``edges_in_graph`` ``[src, dst]`` and
  ``nodes_in_graph`` ``[src]``; optionally node and neuron scores.

EAP-IG's forward (sender) and backward (receiver) orders are ours (:mod:`circuitwise.circuits.graph`),
so its ``[src, dst]`` matrices are our dense ``[sender, receiver]`` layout; with grouped-query
attention both are the ungrouped graph (a key/value receiver per query head). A ``.pt`` is read
with ``torch.load(weights_only=True)``: tensors, lists, dicts and numbers only, never a pickle of
arbitrary objects. Node and neuron scores are not read (circuitwise scores edges); edges a JSON
file leaves out are unscored and not in the circuit (EAP-IG's own loader would score them 0).
"""

from __future__ import annotations

import json
import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch

from circuitwise.circuits.circuit import Circuit, model_info
from circuitwise.circuits.graph import Graph, Receiver, Sender, graph_of
from circuitwise.circuits.prune import receiver_nodes
from circuitwise.circuits.scores import eap_ig_sign
from circuitwise.errors import ConfigError

EAPIGFormat = Literal["json", "pt"]

#: An EAP-IG score is ``EAP_IG_SIGN ×`` ours: MIB runs EAP-IG on the loss ``−logit diff``, which
#: gives our sign (+1); decided once, in :func:`circuitwise.circuits.scores.eap_ig_sign`.
EAP_IG_SIGN = float(eap_ig_sign())

FIX = "Give an EAP-IG graph file (Graph.to_json / Graph.to_pt) or a circuitwise circuit.json"


def node_name(sender: Sender) -> str:
    if sender.kind == "input":
        return "input"
    return f"a{sender.layer}.h{sender.head}" if sender.kind == "head" else f"m{sender.layer}"


def receiver_name(receiver: Receiver) -> str:
    """The receiver as EAP-IG names its backward node: ``a1.h0<q>``, ``m1``, ``logits``."""
    if receiver.kind in ("q", "k", "v"):
        return f"a{receiver.layer}.h{receiver.head}<{receiver.kind}>"
    return "logits" if receiver.kind == "logits" else f"m{receiver.layer}"


def edge_names(graph: Graph) -> list[str]:
    """EAP-IG's name of each of our edges, in our edge order: ``a0.h1->a1.h0<q>`` …"""
    s_idx, r_idx = graph.edge_index
    return [f"{node_name(graph.senders[s])}->{receiver_name(graph.receivers[r])}"
            for s, r in zip(s_idx.tolist(), r_idx.tolist())]


def check_exportable(graph: Graph) -> None:
    if not graph.has_mlp:
        raise ConfigError("EAP-IG's graph always has an MLP per layer; an attention-only model's circuit "
                          "cannot be written in its format. Keep circuit.json for this model.")


def nodes_in_graph(graph: Graph, edges: torch.Tensor) -> torch.Tensor:
    """EAP-IG's node rule: a node is in the graph with an outgoing and (the input aside) an incoming edge."""
    s_idx, r_idx = graph.edge_index
    S = len(graph.senders)
    out = torch.zeros(S, dtype=torch.bool)
    inc = torch.zeros(S + 1, dtype=torch.bool)
    out[s_idx[edges]] = True
    inc[receiver_nodes(graph)[r_idx[edges]]] = True
    inc[0] = True
    return out & inc[:S]


def _cfg(circuit: Circuit) -> dict[str, Any]:
    g = circuit.graph
    d_model = circuit.model.get("d_model")
    cfg: dict[str, Any] = {"n_layers": g.n_layers, "n_heads": g.n_heads, "parallel_attn_mlp": g.parallel_attn_mlp}
    if isinstance(d_model, int):
        cfg["d_model"] = d_model
    return cfg


def _scores(circuit: Circuit) -> torch.Tensor:
    if circuit.scores is None:
        return torch.zeros(circuit.graph.n_edges)
    missing = int(circuit.scores.isnan().sum())
    if missing:
        raise ConfigError(f"{missing} of the circuit's {circuit.graph.n_edges} edges have no score, and an EAP-IG "
                          "file scores every edge. Export the circuit from `circuitwise circuit` (which scores "
                          "the whole graph) rather than from a circuit.json that lists only its own edges.")
    return circuit.scores.float() * EAP_IG_SIGN


def to_eap_ig_json(circuit: Circuit) -> dict[str, Any]:
    """The circuit (its edges in_graph) and every edge's score as EAP-IG's ``Graph.to_json`` writes them."""
    g = circuit.graph
    check_exportable(g)
    scores = _scores(circuit)
    nodes = nodes_in_graph(g, circuit.edges)
    node_dict = {node_name(s): {"in_graph": bool(nodes[i])} for i, s in enumerate(g.senders)}
    node_dict["logits"] = {"in_graph": True}  # EAP-IG's logits node is always in the graph
    edge_dict = {name: {"score": float(scores[i]), "in_graph": bool(circuit.edges[i])}
                 for i, name in enumerate(edge_names(g))}
    return {"cfg": _cfg(circuit), "nodes": node_dict, "edges": edge_dict}


def to_eap_ig_pt(circuit: Circuit) -> dict[str, Any]:
    """The same as EAP-IG's ``Graph.to_pt`` dict: ``[src, dst]`` matrices over its node lists."""
    g = circuit.graph
    check_exportable(g)
    return {
        "cfg": _cfg(circuit),
        "src_nodes": [node_name(s) for s in g.senders],
        "dst_nodes": [receiver_name(r) for r in g.receivers],
        "edges_scores": g.to_dense(_scores(circuit), fill=0.0),
        "edges_in_graph": g.to_dense(circuit.edges, fill=False),
        "nodes_in_graph": nodes_in_graph(g, circuit.edges),
    }


def export_eap_ig(circuit: Circuit, path: str | Path) -> Path:
    """Write ``path`` (``.json`` or ``.pt``, by its suffix) atomically."""
    path = Path(path)
    fmt = format_for(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    if fmt == "json":
        tmp.write_text(json.dumps(to_eap_ig_json(circuit)), encoding="utf-8")
    else:
        torch.save(to_eap_ig_pt(circuit), tmp)
    tmp.replace(path)
    return path


def format_for(path: str | Path) -> EAPIGFormat:
    suffix = Path(path).suffix.lower()
    if suffix not in (".json", ".pt"):
        raise ConfigError(f"An EAP-IG graph file is .json or .pt, not {Path(path).name!r}: name the file "
                          "with one of those suffixes.")
    return "json" if suffix == ".json" else "pt"


# -- import --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EAPIGGraph:
    """An EAP-IG graph file as read: its config and our edge-ordered scores and membership."""

    cfg: dict[str, Any]
    scores: torch.Tensor  # [edge] in our order and sign; NaN where the file gives none
    in_graph: torch.Tensor  # [edge] bool
    format: EAPIGFormat


def is_eap_ig_json(data: Any) -> bool:
    return isinstance(data, dict) and "format" not in data and {"cfg", "nodes", "edges"} <= set(data)


def _graph_of_cfg(cfg: Any, source: str) -> Graph:
    if not isinstance(cfg, dict):
        raise ConfigError(f"{source}: \"cfg\" must be an object with n_layers and n_heads. {FIX}.")
    try:
        L, H = cfg["n_layers"], cfg["n_heads"]
    except KeyError as e:
        raise ConfigError(f"{source}: \"cfg\" has no {e.args[0]!r}. {FIX}.") from None
    for key, v in (("n_layers", L), ("n_heads", H)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ConfigError(f"{source}: cfg {key} must be a positive whole number, not {v!r}. {FIX}.")
    parallel = cfg.get("parallel_attn_mlp", False)
    if not isinstance(parallel, bool):
        raise ConfigError(f"{source}: cfg parallel_attn_mlp must be true or false, not {parallel!r}. {FIX}.")
    return Graph(n_layers=L, n_heads=H, has_mlp=True, parallel_attn_mlp=parallel)


def _number(v: Any, what: str, source: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ConfigError(f"{source}: {what} must be a number, not {v!r}. {FIX}.")
    return float(v)


def read_eap_ig_json(data: dict[str, Any], source: str = "graph.json") -> EAPIGGraph:
    g = _graph_of_cfg(data.get("cfg"), source)
    edges = data.get("edges")
    if not isinstance(data.get("nodes"), dict):
        raise ConfigError(f"{source}: \"nodes\" must map node names to {{in_graph[, score]}}. {FIX}.")
    if not isinstance(edges, dict):
        raise ConfigError(f"{source}: \"edges\" must map edge names to {{score, in_graph}}. {FIX}.")
    ids = {name: i for i, name in enumerate(edge_names(g))}
    scores = torch.full((g.n_edges,), float("nan"))
    keep = torch.zeros(g.n_edges, dtype=torch.bool)
    for name, info in edges.items():
        if name not in ids:
            raise ConfigError(
                f"{source}: {name!r} is not an edge of a {g.n_layers}-layer, {g.n_heads}-head EAP-IG graph "
                "(edges are PARENT->CHILD over input, a{l}.h{h}, m{l}, logits, with <q>/<k>/<v> after a head "
                f"child, and a parent feeds only later nodes). {FIX}.")
        if not isinstance(info, dict):
            raise ConfigError(f"{source}: edge {name!r} must be an object with \"score\" and \"in_graph\". {FIX}.")
        if info.get("score") is not None:
            scores[ids[name]] = _number(info["score"], f"edge {name!r} score", source)
        in_graph = info.get("in_graph", False)
        if not isinstance(in_graph, bool):
            raise ConfigError(f"{source}: edge {name!r} in_graph must be true or false, not {in_graph!r}. {FIX}.")
        keep[ids[name]] = in_graph
    return EAPIGGraph(dict(data["cfg"]), scores * EAP_IG_SIGN, keep, "json")


PT_KEYS = ("cfg", "src_nodes", "dst_nodes", "edges_scores", "edges_in_graph", "nodes_in_graph")


def read_eap_ig_pt(data: Any, source: str = "graph.pt") -> EAPIGGraph:
    if not isinstance(data, dict) or any(k not in data for k in PT_KEYS):
        have = sorted(data) if isinstance(data, dict) else type(data).__name__
        raise ConfigError(f"{source} is not an EAP-IG graph .pt: it needs the keys {', '.join(PT_KEYS)} "
                          f"(found {have}). {FIX}.")
    g = _graph_of_cfg(data["cfg"], source)
    want_src = [node_name(s) for s in g.senders]
    want_dst = [receiver_name(r) for r in g.receivers]
    if list(data["src_nodes"]) != want_src or list(data["dst_nodes"]) != want_dst:
        raise ConfigError(f"{source}: src_nodes/dst_nodes are not EAP-IG's node order for "
                          f"{g.n_layers} layers × {g.n_heads} heads. {FIX}.")
    shape = (len(g.senders), len(g.receivers))
    sc, ig = data["edges_scores"], data["edges_in_graph"]
    for key, t in (("edges_scores", sc), ("edges_in_graph", ig)):
        if not isinstance(t, torch.Tensor) or tuple(t.shape) != shape:
            raise ConfigError(f"{source}: {key} must be a [{shape[0]}, {shape[1]}] tensor (src × dst nodes), "
                              f"not {getattr(t, 'shape', type(t).__name__)}. {FIX}.")
    ig = ig.bool()
    if bool((ig & ~g.adjacency).any()):
        raise ConfigError(f"{source}: edges_in_graph marks pairs that are not edges (a node feeding an "
                          f"earlier one). {FIX}.")
    scores = g.from_dense(sc.detach().float().cpu()) * EAP_IG_SIGN
    return EAPIGGraph(dict(data["cfg"]), scores, g.from_dense(ig.cpu()), "pt")


def load_pt(path: Path) -> Any:
    """``torch.load`` with ``weights_only=True``: a file holding any other object is refused, not run."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise ConfigError(f"{path} holds objects other than tensors, lists, dicts and numbers, which "
                          f"circuitwise never unpickles ({str(e).splitlines()[0]}). {FIX}.") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError) as e:
        raise ConfigError(f"{path} is neither JSON nor a readable torch file ({str(e).splitlines()[0]}). {FIX}.") from None


def read_graph_file(path: str | Path) -> tuple[str, Any]:
    """Read a circuit file, detected by content: ``("circuitwise", json)``, ``("eap-ig", EAPIGGraph)``."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"Circuit file {path} does not exist. Write one with `circuitwise circuit TASK --out DIR`.") from None
    except OSError as e:
        raise ConfigError(f"Cannot read the circuit file {path}: {e.strerror or e}. {FIX}.") from None
    if raw[:2] == b"PK" or raw[:1] == b"\x80":  # torch.save: a zip archive (or the legacy pickle)
        pt = load_pt(path)
        return "eap-ig", _edge_level(read_eap_ig_pt(pt, str(path)), pt, path)
    try:
        data = json.loads(raw.decode("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as e:
        raise ConfigError(f"{path} is not valid JSON ({e}) nor a torch .pt file. {FIX}.") from None
    if is_eap_ig_json(data):
        return "eap-ig", _edge_level(read_eap_ig_json(data, str(path)), data, path)
    if isinstance(data, dict) and "format" in data:
        Circuit.check_json(data, str(path))
        return "circuitwise", data
    raise ConfigError(f"{path} is neither a circuitwise circuit.json (\"format\": \"circuitwise.circuit\") nor "
                      f"an EAP-IG graph (keys cfg, nodes, edges). {FIX}.")


def _edge_level(graph: EAPIGGraph, data: Any, path: Path) -> EAPIGGraph:
    """``graph`` as an edge circuit. A neuron-level file is refused: its circuit is its neurons, which
    edge patching would ignore. A node-level file's edges (every edge between its nodes) are its circuit
    exactly, but its edge scores are EAP-IG's unset 0s: they are read as no scores, so nothing ranks by them."""
    if isinstance(data, dict) and "src_nodes" in data:
        neuron = data.get("neurons_in_graph") is not None or data.get("neurons_scores") is not None
        node = data.get("nodes_scores") is not None
    else:
        entries = [e for e in data.get("nodes", {}).values() if isinstance(e, dict)]
        neuron = any("neurons" in e or "neurons_scores" in e for e in entries)
        node = any(e.get("score") is not None for e in entries)
    if neuron:
        raise ConfigError(f"{path} is a neuron-level EAP-IG graph (MIB's --level neuron): its circuit is a set of "
                          "output dimensions, which `evaluate` (edge circuits) cannot patch. Evaluate it in Python: "
                          "circuitwise.circuits.interop.load_eap_ig_units, then circuits.neurons.unit_faithfulness "
                          "or evaluation.mib_units.mib_unit_metrics.")
    if node and not bool(graph.scores.nan_to_num(0.0).any()):
        return EAPIGGraph(graph.cfg, torch.full_like(graph.scores, float("nan")), graph.in_graph, graph.format)
    return graph


def circuit_from_eap_ig(graph: EAPIGGraph, model: Any, *, source: str = "graph") -> Circuit:
    """The file's circuit on ``model``: its in_graph edges, its scores; the model must match its cfg."""
    g = graph_of(model)
    have = (graph.cfg.get("n_layers"), graph.cfg.get("n_heads"), bool(graph.cfg.get("parallel_attn_mlp", False)))
    want = (g.n_layers, g.n_heads, g.parallel_attn_mlp)
    if have != want or not g.has_mlp:
        raise ConfigError(
            f"{source} is an EAP-IG graph of {have[0]} layers × {have[1]} heads (parallel_attn_mlp {have[2]}), "
            f"but this model's graph is {want[0]} × {want[1]} (parallel {want[2]}, MLPs {g.has_mlp}). Evaluate "
            "it with the model it was made on (--model …).")
    d_model = graph.cfg.get("d_model")
    if isinstance(d_model, int) and d_model != int(model.cfg.d_model):
        raise ConfigError(f"{source} was made on a model with d_model {d_model}, this one has {model.cfg.d_model}. "
                          "Evaluate it with the model it was made on (--model …).")
    scores = graph.scores.clone()
    scored = not bool(scores.isnan().all())
    return Circuit(g, graph.in_graph.clone(), scores if scored else None, "eap-ig-file",
                   {"kind": "imported", "format": f"eap-ig-{graph.format}", "source": source,
                    "eap_ig_sign": EAP_IG_SIGN},
                   model_info(model), None, "logit_diff")



# -- node- and neuron-level graphs (circuits.neurons) ------------------------------------------------


@dataclass(frozen=True)
class EAPIGUnits:
    """An EAP-IG graph file's node- and neuron-level content, in our sender order and sign: what
    ``Graph.nodes_scores``, ``neurons_scores``, ``neurons_in_graph`` and ``nodes_in_graph`` hold."""

    cfg: dict[str, Any]
    graph: Graph
    node_scores: torch.Tensor | None  # [sender]; NaN where unscored
    neuron_scores: torch.Tensor | None  # [sender, d_model]; NaN where unscored
    neurons: torch.Tensor | None  # [sender, d_model] bool
    nodes: torch.Tensor  # [sender] bool


def _units_cfg(graph: Graph, d_model: int) -> dict[str, Any]:
    check_exportable(graph)
    return {"n_layers": graph.n_layers, "n_heads": graph.n_heads, "parallel_attn_mlp": graph.parallel_attn_mlp,
            "d_model": int(d_model)}


def _unit_edges(graph: Graph, nodes: torch.Tensor) -> torch.Tensor:
    """``[edge]`` bool: EAP-IG's edges after a node- or neuron-level ``apply_topn``: every edge out of a
    kept node into a kept node (or the logits, always in the graph)."""
    s_idx, r_idx = graph.edge_index
    into = torch.cat([nodes, torch.ones(1, dtype=torch.bool)])[receiver_nodes(graph)[r_idx]]
    return nodes[s_idx] & into


def to_eap_ig_units_json(graph: Graph, d_model: int, *, node_scores: torch.Tensor | None = None,
                         neuron_scores: torch.Tensor | None = None, neurons: torch.Tensor | None = None
                         ) -> dict[str, Any]:
    """Node scores (``[sender]``), neuron scores (``[sender, d]``) and a neuron-level circuit (``[sender, d]``
    bool; a node-level one is whole rows) as EAP-IG's ``Graph.to_json`` would write them. A neuron-level
    file always carries ``"neurons"`` (all false without a circuit, as after ``attribute_node``): EAP-IG's
    neuron-level ``apply_topn`` needs it. Edge scores are EAP-IG's initial 0 (node-level attribution never
    sets them); its loaders need the key."""
    S = len(graph.senders)
    nodes = torch.zeros(S, dtype=torch.bool) if neurons is None else neurons.bool().any(1).cpu()
    if neuron_scores is not None and neurons is None:
        neurons = torch.zeros(S, int(d_model), dtype=torch.bool)
    node_dict: dict[str, Any] = {}
    for i, s in enumerate(graph.senders):
        entry: dict[str, Any] = {"in_graph": bool(nodes[i])}
        if node_scores is not None:
            entry["score"] = float(node_scores[i]) * EAP_IG_SIGN
        if neuron_scores is not None:
            assert neurons is not None
            entry["neurons"] = neurons[i].bool().tolist()
            entry["neurons_scores"] = (neuron_scores[i].float() * EAP_IG_SIGN).tolist()
        node_dict[node_name(s)] = entry
    node_dict["logits"] = {"in_graph": True}
    in_graph = _unit_edges(graph, nodes)
    edges = {name: {"score": 0.0, "in_graph": bool(in_graph[i])} for i, name in enumerate(edge_names(graph))}
    return {"cfg": _units_cfg(graph, d_model), "nodes": node_dict, "edges": edges}


def to_eap_ig_units_pt(graph: Graph, d_model: int, *, node_scores: torch.Tensor | None = None,
                       neuron_scores: torch.Tensor | None = None, neurons: torch.Tensor | None = None
                       ) -> dict[str, Any]:
    """The same as EAP-IG's ``Graph.to_pt`` dict (``nodes_scores``, ``neurons_in_graph``, ``neurons_scores``)."""
    S = len(graph.senders)
    nodes = torch.zeros(S, dtype=torch.bool) if neurons is None else neurons.bool().any(1).cpu()
    out: dict[str, Any] = {
        "cfg": _units_cfg(graph, d_model),
        "src_nodes": [node_name(s) for s in graph.senders],
        "dst_nodes": [receiver_name(r) for r in graph.receivers],
        "edges_scores": torch.zeros(S, len(graph.receivers)),
        "edges_in_graph": graph.to_dense(_unit_edges(graph, nodes), fill=False),
        "nodes_in_graph": nodes,
    }
    if node_scores is not None:
        out["nodes_scores"] = node_scores.float().cpu() * EAP_IG_SIGN
    if neuron_scores is not None:
        out["neurons_in_graph"] = (torch.zeros(S, int(d_model), dtype=torch.bool) if neurons is None
                                   else neurons.bool().cpu())
        out["neurons_scores"] = neuron_scores.float().cpu() * EAP_IG_SIGN
    return out


def export_eap_ig_units(path: str | Path, graph: Graph, d_model: int, **content: torch.Tensor | None) -> Path:
    """Write ``path`` (``.json`` or ``.pt``, by its suffix) atomically; ``content`` as
    :func:`to_eap_ig_units_json` takes it."""
    path = Path(path)
    fmt = format_for(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    if fmt == "json":
        tmp.write_text(json.dumps(to_eap_ig_units_json(graph, d_model, **content)), encoding="utf-8")
    else:
        torch.save(to_eap_ig_units_pt(graph, d_model, **content), tmp)
    tmp.replace(path)
    return path


def _unit_rows(values: Any, width: int, what: str, source: str) -> torch.Tensor:
    if not isinstance(values, list) or len(values) != width:
        raise ConfigError(f"{source}: {what} must be a list of {width} values (one per d_model dimension). {FIX}.")
    return torch.tensor([float("nan") if v is None else v for v in values], dtype=torch.float32)


def read_eap_ig_units(data: Any, source: str = "graph") -> EAPIGUnits:
    """The node- and neuron-level content of an EAP-IG graph (its JSON dict or its ``.pt`` dict)."""
    if isinstance(data, dict) and "src_nodes" in data:
        read_eap_ig_pt(data, source)  # the edge part is checked as any EAP-IG .pt
        g = _graph_of_cfg(data["cfg"], source)
        S = len(g.senders)

        def tensor(key: str, shape: tuple[int, ...]) -> torch.Tensor | None:
            t = data.get(key)
            if t is None:
                return None
            if not isinstance(t, torch.Tensor) or tuple(t.shape[: len(shape)]) != shape or t.dim() != len(shape):
                raise ConfigError(f"{source}: {key} must be a tensor with {S} rows (one per src node). {FIX}.")
            return t.detach().cpu()

        ns = tensor("nodes_scores", (S,))
        nr = data.get("neurons_scores")
        d = int(nr.shape[1]) if isinstance(nr, torch.Tensor) and nr.dim() == 2 else 0
        neuron_scores = tensor("neurons_scores", (S, d)) if nr is not None else None
        neurons = tensor("neurons_in_graph", (S, d)) if data.get("neurons_in_graph") is not None else None
        nodes = tensor("nodes_in_graph", (S,))
        assert nodes is not None
        return EAPIGUnits(dict(data["cfg"]), g, None if ns is None else ns.float() * EAP_IG_SIGN,
                          None if neuron_scores is None else neuron_scores.float() * EAP_IG_SIGN,
                          None if neurons is None else neurons.bool(), nodes.bool())
    if not is_eap_ig_json(data):
        raise ConfigError(f"{source} is not an EAP-IG graph (keys cfg, nodes, edges). {FIX}.")
    read_eap_ig_json(data, source)  # the edge part is checked as any EAP-IG JSON
    g = _graph_of_cfg(data["cfg"], source)
    d_model = data["cfg"].get("d_model")
    index = {node_name(s): i for i, s in enumerate(g.senders)}
    S = len(g.senders)
    nodes = torch.zeros(S, dtype=torch.bool)
    node_scores = torch.full((S,), float("nan"))
    neuron_scores = neurons = None
    any_score = False
    for name, entry in data["nodes"].items():
        if name == "logits":
            continue
        if name not in index or not isinstance(entry, dict):
            raise ConfigError(f"{source}: {name!r} is not a node of a {g.n_layers}-layer, {g.n_heads}-head EAP-IG "
                              f"graph with an object value (nodes are input, a{{l}}.h{{h}}, m{{l}}). {FIX}.")
        i = index[name]
        nodes[i] = bool(entry.get("in_graph", False))
        if entry.get("score") is not None:
            node_scores[i] = _number(entry["score"], f"node {name!r} score", source)
            any_score = True
        for key in ("neurons", "neurons_scores"):
            if key not in entry:
                continue
            if not isinstance(d_model, int):
                raise ConfigError(f"{source}: a neuron-level graph needs cfg d_model. {FIX}.")
            row = _unit_rows(entry[key], d_model, f"node {name!r} {key}", source)
            if key == "neurons":
                neurons = torch.zeros(S, d_model, dtype=torch.bool) if neurons is None else neurons
                neurons[i] = row.bool()
            else:
                neuron_scores = torch.full((S, d_model), float("nan")) if neuron_scores is None else neuron_scores
                neuron_scores[i] = row
    return EAPIGUnits(dict(data["cfg"]), g, node_scores * EAP_IG_SIGN if any_score else None,
                      None if neuron_scores is None else neuron_scores * EAP_IG_SIGN, neurons, nodes)


def load_eap_ig_units(path: str | Path) -> EAPIGUnits:
    """:func:`read_eap_ig_units` of a ``.json`` or ``.pt`` EAP-IG graph file (detected by content)."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise ConfigError(f"Cannot read the graph file {path}: {e.strerror or e}. {FIX}.") from None
    if raw[:2] == b"PK" or raw[:1] == b"\x80":
        return read_eap_ig_units(load_pt(path), str(path))
    try:
        data = json.loads(raw.decode("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as e:
        raise ConfigError(f"{path} is not valid JSON ({e}) nor a torch .pt file. {FIX}.") from None
    return read_eap_ig_units(data, str(path))

__all__ = ["EAPIGFormat", "EAPIGGraph", "EAPIGUnits", "EAP_IG_SIGN", "check_exportable", "circuit_from_eap_ig", "edge_names", "export_eap_ig",
           "format_for", "is_eap_ig_json", "load_pt", "node_name", "read_eap_ig_json", "read_eap_ig_pt",
           "read_eap_ig_units", "read_graph_file", "receiver_name", "to_eap_ig_json", "to_eap_ig_pt",
           "export_eap_ig_units", "load_eap_ig_units", "to_eap_ig_units_json", "to_eap_ig_units_pt"]
