"""An attribution graph out: circuitwise's ``graph.json`` and Neuronpedia's graph JSON (schema 1.0.0).

Node ids are circuit-tracer's, so a graph opens in Neuronpedia as its own do, and they never
collide (the error node once took ``{layer}_{pos}_{pos}``, the id of feature ``pos`` at the same
place):

- feature ``i`` of layer ``l`` at position ``p``: ``{l}_{i}_{p}`` (a feature index is ≥ 0),
- layer ``l``'s MLP reconstruction error at ``p``: ``{l}_-1_{p}`` (−1 is never a feature),
- the embedding of token ``t`` at ``p``: ``E_{t}_{p}``,
- the logit of token ``t`` at ``p``: ``{n_layers + 1}_{t}_{p}`` (no feature sits past the last layer).

Neuronpedia's ``feature`` of a feature node is the Cantor pairing of (layer, index), as circuit-
tracer writes it when no Neuronpedia source set is named: one integer per feature, decodable.
"""

from __future__ import annotations

import ast
import re
import time
from collections.abc import Mapping, Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from circuitwise.errors import ConfigError, SchemaError
from circuitwise.features.checks import GraphCheckResult
from circuitwise.features.graph import AttributionGraph
from circuitwise.runfolder import atomic_write_text
from circuitwise.schema.graph import (
    FEATURE_TYPE,
    CircuitHeads,
    Context,
    FeatureAblation,
    GraphChecks,
    GraphEdge,
    GraphFile,
    GraphModel,
    GraphNode,
    GraphScores,
    GraphSettings,
    GraphTarget,
    GraphTranscoders,
    HeadShare,
    HeadTotal,
    NeuronpediaGraph,
    NodeKind,
    NPFeatureDetail,
    TargetMode,
    validate_neuronpedia,
)

GENERATOR_URL = "https://github.com/circuitwise/circuitwise"


# ---- node ids ------------------------------------------------------------------------------------

def feature_id(layer: int, feature: int, pos: int) -> str:
    return f"{layer}_{feature}_{pos}"


def error_id(layer: int, pos: int) -> str:
    return f"{layer}_-1_{pos}"


def embedding_id(token_id: int, pos: int) -> str:
    return f"E_{token_id}_{pos}"


def logit_id(token_id: int, pos: int, n_layers: int) -> str:
    return f"{n_layers + 1}_{token_id}_{pos}"


def node_id(kind: str, *, layer: int | None, pos: int, feature: int | None, n_layers: int) -> str:
    """The id of a node of ``kind`` (see the module's docstring)."""
    if kind == "feature" and layer is not None and feature is not None:
        return feature_id(layer, feature, pos)
    if kind == "error" and layer is not None:
        return error_id(layer, pos)
    if kind == "embedding" and feature is not None:
        return embedding_id(feature, pos)
    if kind == "logit" and feature is not None:
        return logit_id(feature, pos, n_layers)
    raise ValueError(f"a {kind} node with layer={layer}, feature={feature} has no id")


def cantor(x: int, y: int) -> int:
    """Cantor's pairing: one natural number per pair of natural numbers, decodable (:func:`uncantor`)."""
    return (x + y) * (x + y + 1) // 2 + y


def uncantor(z: int) -> tuple[int, int]:
    w = int(((8 * z + 1) ** 0.5 - 1) // 2)
    # Float square roots of large z can be one off: step to the exact w.
    while (w + 1) * (w + 2) // 2 <= z:
        w += 1
    while w * (w + 1) // 2 > z:
        w -= 1
    y = z - w * (w + 1) // 2
    return w - y, y


# ---- graph.json ----------------------------------------------------------------------------------

_KIND: dict[str, NodeKind] = {"feature": "feature", "error": "error", "token": "embedding", "target": "logit"}
_TARGET_MODE: dict[str, TargetMode] = {"salient": "salient", "tokens": "token", "token": "token", "metric": "metric"}


def _layout(graph: AttributionGraph) -> tuple[list[str], list[int], list[int], list[str]]:
    """The columns shown (their text and token ids), each node's column, and notes.

    A prompt's graph shows its own tokens. A task's graph has positions relative to the answer
    (0 the read-out position, −1 the one before …): it shows its longest prompt's tokens, ending at
    the read-out position (a column that prompt does not reach is blank). A task graph aligned by
    role (``meta["position_labels"]`` such as ``ADJ+1``) has one column per label, in the order of
    their positions, named by the label.
    """
    longest = max(range(len(graph.tokens)), key=lambda i: len(graph.tokens[i]))
    strs, ids = list(graph.token_strs[longest]), list(graph.tokens[longest])
    if graph.positions == "absolute":
        return strs, ids, [x.position for x in graph.nodes], []
    n = len(graph.prompts)
    labels = graph.meta.get("position_labels")
    if isinstance(labels, list) and len(labels) != len(graph.nodes) and not all(_is_int(x) for x in labels):
        raise ConfigError(f"the graph's meta['position_labels'] has {len(labels)} labels for its {len(graph.nodes)} "
                          "nodes (a pruned task graph keeps the full graph's list): give the kept nodes' labels, "
                          "in node order, before writing it")
    if isinstance(labels, list) and len(labels) == len(graph.nodes) and not all(_is_int(x) for x in labels):
        where: dict[str, list[int]] = {}
        for x, label in zip(graph.nodes, labels, strict=True):
            where.setdefault(str(label), []).append(x.position)
        names = sorted(where, key=lambda k: (sum(where[k]) / len(where[k]), k))
        column = {k: i for i, k in enumerate(names)}
        notes = [f"a graph over {n} prompts, aligned by role: each column is a role's word or an offset from it"]
        return names, [-1] * len(names), [column[str(label)] for label in labels], notes
    first = min((x.position for x in graph.nodes), default=0)
    offset = max(len(strs) - 1, -first)
    pad = offset + 1 - len(strs)
    notes = [f"a graph over {n} prompts: positions are relative to the read-out position; "
             f"the tokens shown are prompt {longest + 1}'s"]
    return [""] * pad + strs, [-1] * pad + ids, [x.position + offset for x in graph.nodes], notes


def _is_int(text: Any) -> bool:
    try:
        int(str(text))
    except ValueError:
        return False
    return True


def _transcoders(info: dict[str, Any], source: str | None) -> GraphTranscoders:
    cross = bool(info.get("cross_layer")) or "cross" in str(info.get("kind", ""))
    widths = info.get("n_features", info.get("widths", []))
    widths = [int(w) for w in widths] if isinstance(widths, (list, tuple)) else []
    extra = {k: v for k, v in info.items() if k not in ("kind", "cross_layer", "n_features", "widths", "activation",
                                                         "source") and isinstance(v, (str, int, float, bool))}
    return GraphTranscoders(source=source or str(info.get("source", "unknown")),
                            kind="cross-layer" if cross else "per-layer", n_features=widths,
                            activation=info.get("activation"), **extra)


def graph_file(graph: AttributionGraph, *, transcoders: str | None = None, node_threshold: float | None = None,
               edge_threshold: float | None = None, task: str | None = None, description: str = "",
               contexts: Mapping[tuple[int, int], Sequence[Context]] | None = None,
               notes: Sequence[str] = (), checks: GraphCheckResult | None = None,
               circuit: CircuitHeads | None = None) -> GraphFile:
    """The engine's graph as ``graph.json``'s typed file: every node of ``graph`` and every non-zero link.

    Prune first (:func:`~circuitwise.features.prune_graph`) for a readable graph: this writes what it is
    given. ``contexts`` maps a feature's ``(layer, index)`` to its top activating contexts. The
    thresholds default to those recorded in ``graph.meta`` (1.0: nothing pruned). ``checks``
    (:func:`~circuitwise.features.checks.check_graph` of this graph) go into the file's ``checks`` and
    the analysed links' ``heads``; ``circuit`` names an edge circuit's heads to mark among them.
    """
    strs, ids, columns, layout_notes = _layout(graph)
    n_layers = graph.n_layers
    influence = None if graph.influence is None else graph.influence.double().tolist()
    targets = [i for i, x in enumerate(graph.nodes) if x.kind == "target"]
    top = max(targets, key=lambda i: graph.nodes[i].probability or 0.0) if targets else -1
    names: list[str] = []
    nodes: list[GraphNode] = []
    for i, x in enumerate(graph.nodes):
        kind = _KIND[x.kind]
        pos = columns[i]
        layer = x.layer if kind in ("feature", "error") else None
        feature = x.feature if kind == "feature" else (x.token if kind in ("embedding", "logit") else None)
        nid = node_id(kind, layer=layer, pos=pos, feature=feature, n_layers=n_layers)
        token = None
        if kind == "embedding":
            token = strs[pos] if 0 <= pos < len(strs) else ""
        elif kind == "logit":
            token = _target_token(x.label, x.token)
        ctx = list(contexts.get((x.layer, x.feature), ())) if contexts is not None and kind == "feature" else []
        nodes.append(GraphNode(id=nid, kind=kind, layer=layer, pos=pos, feature=feature, token=token,
                               activation=x.value, influence=None if influence is None else influence[i],
                               prob=x.probability if kind == "logit" else None, target=i == top,
                               label=x.label if kind == "logit" and x.token < 0 else "", contexts=ctx))
        names.append(nid)
    split = {(x.receiver, x.sender): x for x in checks.loadings} if checks is not None else {}
    edges = []
    for i, j, w in graph.edges():
        load = split.get((i, j))
        heads = None if load is None else [HeadShare(head=h, loading=v) for h, v in load.top(HEAD_SHARES) if v != 0]
        edges.append(GraphEdge(source=names[j], target=names[i], weight=w, heads=heads,
                               residual=None if load is None else load.residual))
    scores = None
    if graph.scores:
        scores = GraphScores(replacement=graph.scores.get("replacement"),
                             completeness=graph.scores.get("completeness"))
    meta = graph.meta
    mode = _TARGET_MODE.get(graph.targets, "salient")
    return GraphFile(
        model=GraphModel(name=graph.model, n_layers=n_layers), task=task,
        prompt=graph.prompts[0] if len(graph.prompts) == 1 else " | ".join(graph.prompts[:3])
        + (" …" if len(graph.prompts) > 3 else ""),
        tokens=strs, token_ids=ids,
        target=GraphTarget(mode=mode, description=description or _describe(graph, mode)),
        transcoders=_transcoders(graph.transcoders, transcoders),
        settings=GraphSettings(node_threshold=node_threshold or float(meta.get("node_threshold", 1.0)),
                               edge_threshold=edge_threshold or float(meta.get("edge_threshold", 1.0))),
        nodes=nodes, edges=edges, scores=scores, notes=[*layout_notes, *notes],
        checks=None if checks is None else _checks(checks, graph, names, circuit))


# How many heads a link lists in graph.json (the largest loadings; all of them sum with the residual).
HEAD_SHARES = 5


def _checks(c: GraphCheckResult, graph: AttributionGraph, names: list[str],
            circuit: CircuitHeads | None) -> GraphChecks:
    """The checks of ``graph`` as graph.json's section (node indices become the file's node ids)."""
    in_circuit = set(circuit.heads) if circuit is not None else None
    f = c.faithfulness
    return GraphChecks(
        target=c.target_label,
        interventions=[FeatureAblation(node=names[a.node], actual=a.actual, predicted=a.predicted,
                                       predicted_kept=a.predicted_kept, predicted_direct=a.predicted_direct,
                                       actual_frozen_norms=a.actual_frozen_norms) for a in c.interventions],
        sign_agreement=c.sign_agreement(),
        faithfulness=None if f is None else f.faithfulness, graph_metric=None if f is None else f.graph_metric,
        all_metric=None if f is None else f.all_metric, none_metric=None if f is None else f.none_metric,
        heads=[HeadTotal(head=h, loading=s, abs_loading=a, links=n,
                         in_circuit=None if in_circuit is None else h in in_circuit)
               for h, s, a, n in c.head_totals()],
        links_analysed=len(c.loadings), circuit=circuit, notes=list(c.notes))


def _target_token(label: str, token: int) -> str:
    """A logit target's token text from the engine's label ``logit ' young'`` (the metric: "metric")."""
    if token < 0:
        return "metric"
    if label.startswith("logit "):
        try:
            text = ast.literal_eval(label[len("logit "):])
        except (ValueError, SyntaxError):
            return label
        return text if isinstance(text, str) else label
    return label or str(token)


def _describe(graph: AttributionGraph, mode: str) -> str:
    t = [x for x in graph.nodes if x.kind == "target"]
    if mode == "metric":
        return "the task's metric"
    shown = ", ".join(repr(_target_token(x.label, x.token)) for x in t[:5])
    return f"the logit{'s' if len(t) != 1 else ''} of {shown}{' …' if len(t) > 5 else ''}"


def write_graph(graph: GraphFile, path: str | Path) -> Path:
    """``graph.json`` (or, given a folder, ``graph.json`` in it), validated as it is written."""
    path = Path(path)
    if path.is_dir():
        path = path / GraphFile.FILENAME
    return atomic_write_text(path, graph.dump_text())


def load_graph(path: str | Path) -> GraphFile:
    """``graph.json`` (or its folder), validated: a file of another version or tool is a clear SchemaError."""
    return GraphFile.load(path)


# ---- Neuronpedia ---------------------------------------------------------------------------------

def slug_of(text: str, limit: int = 60) -> str:
    """A Neuronpedia slug (lowercase letters, digits and hyphens) from a prompt or a task's name."""
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:limit].strip("-")
    return slug or "graph"


def _generator() -> dict[str, str]:
    try:
        v = version("circuitwise")
    except PackageNotFoundError:  # a source tree that was never installed
        v = "unknown"
    return {"name": "circuitwise", "version": v, "url": GENERATOR_URL}


def cumulative_influence(influence: Sequence[float | None]) -> list[float | None]:
    """circuit-tracer's (and so Neuronpedia's) ``influence`` of a node: the share of the total that the
    nodes of at least its influence hold (the most influential node's own share … 1 for the least).
    A viewer keeps the nodes whose value is ≤ its node threshold. Nodes without one stay None."""
    known = sorted((v, i) for i, v in enumerate(influence) if v is not None)[::-1]
    total = sum(v for v, _ in known)
    out: list[float | None] = [None] * len(influence)
    running = 0.0
    for v, i in known:
        running += v
        out[i] = min(running / total, 1.0) if total > 0 else 1.0
    return out


def shares_of_cumulative(cumulative: Sequence[float | None]) -> list[float | None]:
    """Each node's own share of the total influence, from :func:`cumulative_influence`'s form (nodes of
    no influence tie with the least influential node before them: one of them gets its share)."""
    known = sorted((v, i) for i, v in enumerate(cumulative) if v is not None)
    out: list[float | None] = [None] * len(cumulative)
    before = 0.0
    for v, i in known:
        out[i] = max(v - before, 0.0)
        before = v
    return out


def _np_node(n: GraphNode, n_layers: int, influence: float | None, n_logits: int = 1) -> dict[str, Any]:
    kind = n.kind
    out: dict[str, Any] = {"node_id": n.id, "feature_type": FEATURE_TYPE[kind], "ctx_idx": n.pos}
    if kind == "feature":
        assert n.layer is not None and n.feature is not None  # GraphNode's validator guarantees both
        out.update(feature=cantor(n.layer, n.feature), layer=str(n.layer), jsNodeId=f"{n.layer}_{n.feature}-0",
                   clerp=n.label)
    elif kind == "error":
        out.update(feature=-1, layer=str(n.layer), jsNodeId=f"{n.layer}_-1-{n.pos}", clerp=n.label)
    elif kind == "embedding":
        out.update(feature=n.pos, layer="E", jsNodeId=f"E_{n.feature}-{n.pos}", clerp=n.label)
    else:
        # Neuronpedia's viewer reads a logit's share from its clerp's "(p=…)" (and fails without it) and
        # weighs logits by token_prob: a target with no probability (the task's metric) gets an equal share.
        prob = 1.0 / max(n_logits, 1) if n.prob is None else n.prob
        text = n.label if n.feature is not None and n.feature < 0 and n.label else n.token
        out.update(feature=n.feature, layer=str(n_layers + 1), jsNodeId=f"L_{n.feature}-{n.pos}",
                   clerp=f'Output "{text}" (p={prob:.3f})', token_prob=prob, is_target_logit=n.target)
    if influence is not None:
        out["influence"] = influence
    # Only a feature's value is an activation (an error's or embedding's is a norm, a logit's a logit).
    if kind == "feature" and n.activation is not None:
        out["activation"] = n.activation
    return out


def to_neuronpedia(graph: GraphFile | AttributionGraph, *, slug: str | None = None, scan: str | None = None,
                   source_set: str | None = None, feature_base_url: str | None = None) -> dict[str, Any]:
    """``graph`` as Neuronpedia's graph JSON (schema 1.0.0), validated.

    ``scan`` is the model's id on Neuronpedia (default: the model's name); ``source_set`` the
    Neuronpedia source set of the transcoders' feature dashboards, where they are published there;
    ``feature_base_url`` where :func:`write_feature_details`' files are served (the viewer fetches
    ``{feature_base_url}/{feature}.json``).
    """
    if isinstance(graph, AttributionGraph):
        graph = graph_file(graph)
    n_layers = graph.model.n_layers
    now_ms = time.time() * 1000
    metadata: dict[str, Any] = {
        "slug": slug or slug_of(graph.task or graph.prompt),
        "scan": scan or graph.model.name,
        "prompt_tokens": list(graph.tokens),
        "prompt": graph.prompt,
        # The file holds what pruning kept: a viewer shows all of it at first (its slider prunes further).
        "node_threshold": 1.0,
        "schema_version": 1,
        "info": {"description": graph.target.description, "generator": _generator(), "create_time_ms": now_ms,
                 "source_urls": [graph.transcoders.source]},
        "pruning_settings": {"node_threshold": graph.settings.node_threshold,
                             "edge_threshold": graph.settings.edge_threshold},
    }
    details = {k: v for k, v in dict(neuronpedia_source_set=source_set,
                                     feature_json_base_url=feature_base_url and feature_base_url.rstrip("/")).items()
               if v}
    if details:
        metadata["feature_details"] = details
    data: dict[str, Any] = {
        "metadata": metadata,
        "qParams": {"pinnedIds": [], "supernodes": [], "linkType": "both", "clickedId": "", "sg_pos": ""},
        "nodes": [_np_node(n, n_layers, c, sum(m.kind == "logit" for m in graph.nodes)) for n, c in
                  zip(graph.nodes, cumulative_influence([n.influence for n in graph.nodes]), strict=True)],
        "links": [{"source": e.source, "target": e.target, "weight": e.weight} for e in graph.edges],
    }
    # A failure here is circuitwise's bug (the graph file was valid): it says which field.
    validate_neuronpedia(data, "the exported graph")
    return data


def feature_details(graph: GraphFile) -> dict[int, dict[str, Any]]:
    """Each feature's top activating contexts in Anthropic's feature format, by Neuronpedia's ``feature``
    (the Cantor pairing of layer and index): what its viewer shows for a clicked feature. Contexts are
    grouped by source (the task's prompts, the corpus); logit effects are not computed (empty lists)."""
    out: dict[int, dict[str, Any]] = {}
    for n in graph.nodes:
        if n.kind != "feature" or n.layer is None or n.feature is None:
            continue
        key = cantor(n.layer, n.feature)
        if key in out:
            continue  # the same feature at another position: one file per feature
        groups: dict[str, list[dict[str, Any]]] = {}
        for c in n.contexts:
            acts = c.activations if c.activations is not None else [
                c.activation if i == c.pos else 0.0 for i in range(len(c.tokens))]
            groups.setdefault(c.source, []).append({"tokens": list(c.tokens), "tokens_acts_list": list(acts),
                                                    "train_token_ind": c.pos, "is_repeated_datapoint": False})
        names = {"task": "Top activations in the task's prompts", "corpus": "Top activations in the corpus"}
        detail = {"index": key, "top_logits": [], "bottom_logits": [],
                  "examples_quantiles": [{"quantile_name": names[s], "examples": ex} for s, ex in groups.items()]}
        NPFeatureDetail.model_validate(detail)  # a failure is circuitwise's bug
        out[key] = detail
    return out


def write_feature_details(graph: GraphFile, folder: str | Path) -> list[Path]:
    """:func:`feature_details` as ``{folder}/{feature}.json`` files (the folder is made); returns them."""
    import json

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    return [atomic_write_text(folder / f"{key}.json", json.dumps(detail, allow_nan=False))
            for key, detail in feature_details(graph).items()]


def write_neuronpedia(graph: GraphFile | AttributionGraph, path: str | Path, **options: Any) -> Path:
    """Write :func:`to_neuronpedia` of ``graph`` to ``path`` (a folder: ``{slug}.json`` in it)."""
    import json

    data = to_neuronpedia(graph, **options)
    path = Path(path)
    if path.is_dir():
        path = path / f"{data['metadata']['slug']}.json"
    return atomic_write_text(path, json.dumps(data, allow_nan=False))


def _layer_of(node: Any, where: str) -> int:
    try:
        return int(node.layer)
    except (TypeError, ValueError):
        raise SchemaError(f"{where}: node {node.node_id} has layer {node.layer!r}, not a layer number.") from None


def from_neuronpedia(data: Any, *, source: str = "the graph", model_name: str | None = None,
                     transcoders: str = "unknown", node_threshold: float | None = None,
                     edge_threshold: float | None = None) -> GraphFile:
    """A Neuronpedia graph JSON (a parsed file or a path; circuitwise's or circuit-tracer's) as a
    :class:`GraphFile`, so circuitwise's page draws it. Token ids are read from the embedding nodes'
    ids (``E_{token}_{pos}``); positions without an embedding node get −1.
    """
    np_graph: NeuronpediaGraph = validate_neuronpedia(data, source)
    meta = np_graph.metadata
    tokens = list(meta.prompt_tokens)
    ids = [-1] * len(tokens)
    logit_layers = {_layer_of(n, source) for n in np_graph.nodes if n.feature_type == "logit"}
    inner = [_layer_of(n, source) for n in np_graph.nodes if n.feature_type not in ("logit", "embedding")]
    n_layers = (min(logit_layers) - 1) if logit_layers else (max(inner, default=-1) + 1)
    nodes = []
    shares = shares_of_cumulative([n.influence for n in np_graph.nodes])
    for n, share in zip(np_graph.nodes, shares, strict=True):
        common: dict[str, Any] = dict(id=n.node_id, pos=n.ctx_idx, activation=n.activation, influence=share,
                                      label=n.clerp)
        if n.feature_type == "embedding":
            token_id = int(n.node_id.split("_")[1]) if n.node_id.startswith("E_") else -1
            ids[n.ctx_idx] = token_id
            nodes.append(GraphNode(kind="embedding", feature=token_id, token=tokens[n.ctx_idx], **common))
        elif n.feature_type == "logit":
            extra = n.model_extra or {}
            token = _logit_token(n.clerp)
            label = "" if token is not None else n.clerp
            if n.feature is not None and n.feature < 0:  # the task's metric: its label is the text
                token, label = "metric", token or n.clerp
            nodes.append(GraphNode(kind="logit", feature=n.feature, token=token, prob=extra.get("token_prob"),
                                   target=bool(extra.get("is_target_logit", False)), **{**common, "label": label}))
        elif n.feature_type == "mlp reconstruction error":
            nodes.append(GraphNode(kind="error", layer=_layer_of(n, source), **common))
        else:
            layer = _layer_of(n, source)
            parts = n.node_id.split("_")
            index = int(parts[1]) if len(parts) == 3 and parts[1].lstrip("-").isdigit() else uncantor(n.feature or 0)[1]
            nodes.append(GraphNode(kind="feature", layer=layer, feature=index, **common))
    pruning = meta.pruning_settings
    # pruning_settings first: circuitwise writes the whole kept graph with a default view threshold of 1.
    node_t = node_threshold or (pruning.node_threshold if pruning else None) or meta.node_threshold or 1.0
    edge_t = edge_threshold or (pruning.edge_threshold if pruning else None) or 1.0
    return GraphFile(
        model=GraphModel(name=model_name or meta.scan, n_layers=max(n_layers, 1)),
        prompt=meta.prompt, tokens=tokens, token_ids=ids,
        target=GraphTarget(mode="salient", description=(meta.info.description or "") if meta.info else ""),
        transcoders=GraphTranscoders(source=transcoders, kind="cross-layer", n_features=[]),
        settings=GraphSettings(node_threshold=node_t, edge_threshold=edge_t),
        nodes=nodes, edges=[GraphEdge(source=e.source, target=e.target, weight=e.weight) for e in np_graph.links],
        notes=[f"read from a Neuronpedia graph JSON ({source})"])


def _logit_token(clerp: str) -> str | None:
    """The token of circuitwise's or circuit-tracer's logit label ``Output "tok" (p=0.123)``."""
    m = re.fullmatch(r'Output "(.*)" \(p=[0-9.eE+-]+\)', clerp, re.S)
    return m.group(1) if m else None


__all__ = ["cantor", "cumulative_influence", "embedding_id", "error_id", "feature_details", "feature_id",
           "from_neuronpedia", "graph_file", "load_graph", "logit_id", "node_id", "shares_of_cumulative", "slug_of",
           "to_neuronpedia", "uncantor", "write_feature_details", "write_graph", "write_neuronpedia"]
