"""Attribution graphs on file: circuitwise's own ``graph.json`` and Neuronpedia's graph JSON.

``graph.json`` (:class:`GraphFile`) is what `circuitwise graph` writes and what the graph page and
the notebook display read: every node (features, MLP reconstruction errors, token embeddings,
logits) with its activation and influence, every kept link with its weight, and each feature's top
activating contexts. Its header is ``format`` + ``version`` (as circuit.json's).

:class:`NeuronpediaGraph` is Neuronpedia's attribution-graph format, schema 1.0.0 (the one its
graph upload checks and its frontend draws; circuit-tracer's ``create_graph_files`` writes it):
``metadata`` (slug, scan, prompt_tokens, prompt required), ``qParams`` (the saved view), ``nodes``
(node_id, feature, layer, ctx_idx, feature_type, jsNodeId and clerp required; influence and
activation optional) and ``links`` ({source, target, weight}). Those files come from other tools
too, so unknown fields are kept, not refused; :func:`validate_neuronpedia` adds what the schema
cannot say but a viewer needs to draw the graph: unique node ids and links between known nodes.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path
from typing import Any, ClassVar, Final, Literal

from pydantic import ConfigDict, Field, ValidationError, model_validator

from circuitwise.errors import SchemaError
from circuitwise.schema.base import FileModel, Num, Open, Section, first_problems
from circuitwise.schema.results import Fingerprint
from circuitwise.types import Shows

FORMAT: Final = "circuitwise.graph"
VERSION = 1
# The version of Neuronpedia's attribution-graph schema these models follow.
NEURONPEDIA_SCHEMA: Final = "1.0.0"

NodeKind = Literal["feature", "error", "embedding", "logit"]
TargetMode = Literal["metric", "salient", "token"]
# Neuronpedia's ``feature_type`` of each kind of node.
FEATURE_TYPE: Final[dict[str, str]] = {"feature": "cross layer transcoder", "error": "mlp reconstruction error",
                                       "embedding": "embedding", "logit": "logit"}


# ---- circuitwise's graph.json --------------------------------------------------------------------

class Context(Section):
    """One place a feature fires: a prompt's tokens and the position of its largest activation there."""

    source: Literal["task", "corpus"]
    tokens: list[str]
    pos: int = Field(ge=0)
    activation: float
    # Which prompt of the task (or line of the corpus) it is.
    index: int | None = None
    # The feature's activation at every token of ``tokens`` (for shading the context).
    activations: list[float] | None = None

    @model_validator(mode="after")
    def _in_range(self) -> Context:
        if self.pos >= len(self.tokens):
            raise ValueError(f"context position {self.pos} is past its {len(self.tokens)} tokens")
        if self.activations is not None and len(self.activations) != len(self.tokens):
            raise ValueError(f"{len(self.activations)} activations for {len(self.tokens)} tokens")
        return self


class GraphNode(Section):
    """A node. ``layer``: the feature's (or error's) layer, ``None`` for embeddings and logits.
    ``feature``: the feature's index in its layer's transcoder, the token id of an embedding or a
    logit, ``None`` for an error. ``influence``: its influence on the targets, direct and through other
    nodes (circuit-tracer's pruning score: ``w · (Â + Â² + …)``, the target weights ``w`` summing to
    1; logits have none). Neuronpedia's file carries it in circuit-tracer's cumulative form."""

    id: str
    kind: NodeKind
    layer: int | None = Field(default=None, ge=0)
    pos: int = Field(ge=0)
    feature: int | None = None
    token: str | None = None
    # A feature's activation; for the other kinds the engine's value of the node (an error's or an
    # embedding's norm, a logit's logit less the mean logit). Neuronpedia's file carries features' only.
    activation: Num = None
    influence: Num = None
    # A logit's probability and whether it is the graph's target (a metric's logits may be several).
    prob: Num = None
    target: bool = False
    label: str = ""
    contexts: list[Context] = Field(default_factory=list)

    @model_validator(mode="after")
    def _fields_of_kind(self) -> GraphNode:
        if self.kind in ("feature", "error") and self.layer is None:
            raise ValueError(f"{self.kind} node {self.id!r} needs a layer")
        if self.kind in ("feature", "embedding", "logit") and self.feature is None:
            what = "feature index" if self.kind == "feature" else "token id"
            raise ValueError(f"{self.kind} node {self.id!r} needs its {what} in 'feature'")
        return self


class HeadShare(Section):
    """One attention head's part of a link (named as circuitwise's head-level circuits name heads)."""

    head: str
    loading: float


class GraphEdge(Section):
    """A direct effect: ``weight`` is how much ``source`` adds to ``target`` (pre-activation or logit).

    ``heads``, where the link's head loadings were computed (`circuitwise graph`'s strongest links between
    positions): the heads carrying most of it, largest first; ``residual`` is the part through no head.
    ``residual`` plus every head's loading (not only those listed) is ``weight``."""

    source: str
    target: str
    weight: float
    heads: list[HeadShare] | None = None
    residual: Num = None


class GraphModel(Open):
    name: str
    n_layers: int = Field(ge=1)
    d_model: int | None = None
    d_vocab: int | None = None
    # The model the graph was computed on (`circuitwise graph`; absent in imported or older files).
    fingerprint: Fingerprint | None = None


class GraphTranscoders(Open):
    """Which transcoders replaced the MLPs (``source``: a folder, ``bundled``)."""

    source: str
    kind: Literal["per-layer", "cross-layer"]
    n_features: list[int]
    activation: str | None = None


class GraphTarget(Open):
    """What the graph explains: ``metric`` (the task's metric direction), ``salient`` (the most likely
    logits) or ``token`` (one token's logit)."""

    mode: TargetMode
    description: str = ""


class GraphSettings(Open):
    node_threshold: float = Field(gt=0, le=1)
    edge_threshold: float = Field(gt=0, le=1)


class GraphScores(Open):
    """How much of the target the graph explains (circuit-tracer's replacement and completeness scores)."""

    replacement: Num = None
    completeness: Num = None


class FeatureAblation(Section):
    """One kept feature ablated in the unfrozen model: how the checked target moved (``actual``) against
    the graph's prediction through every edge of the full graph (exact in the frozen replacement), through
    the kept graph's edges, and through the feature's direct edges; ``actual_frozen_norms`` is the move
    with every residual norm's scale held (the graph freezes them)."""

    node: str
    actual: float
    predicted: float
    predicted_kept: float
    predicted_direct: float
    actual_frozen_norms: Num = None


class HeadTotal(Section):
    """A head summed over the links whose loadings were computed: signed and absolute loading, and on how
    many of them it carries at least 5 %. ``in_circuit``: whether the edge circuit given with
    ``--circuit`` holds the head (absent without one)."""

    head: str
    loading: float
    abs_loading: float
    links: int = Field(ge=0)
    in_circuit: bool | None = None


class CircuitHeads(Open):
    """The edge circuit the heads were compared with: its file, and its heads."""

    source: str
    heads: list[str]


class GraphChecks(Section):
    """Does the graph say what the model does? (`circuitwise graph`, :mod:`circuitwise.features.checks`)
    ``target``: the target row checked. ``faithfulness``: the kept features alone against all of them in
    the unfrozen model, ``(m_graph − m_none) / (m_all − m_none)`` as edge circuits are scored.
    ``sign_agreement``: the share of ablations that moved the target in the predicted direction."""

    target: str
    interventions: list[FeatureAblation] = Field(default_factory=list)
    sign_agreement: Num = None
    faithfulness: Num = None
    graph_metric: Num = None
    all_metric: Num = None
    none_metric: Num = None
    heads: list[HeadTotal] = Field(default_factory=list)
    links_analysed: int = Field(default=0, ge=0)
    circuit: CircuitHeads | None = None
    notes: list[str] = Field(default_factory=list)


class GraphFile(FileModel, Shows):
    FORMAT: ClassVar[str] = FORMAT
    VERSION_FIELD: ClassVar[str] = "version"
    VERSION: ClassVar[int] = VERSION
    FILENAME: ClassVar[str] = "graph.json"
    REMEDY: ClassVar[str] = "Re-create it with `circuitwise graph TASK_OR_PROMPT --transcoders DIR --out DIR`."
    show_name: ClassVar[str | None] = "graph"

    format: Literal["circuitwise.graph"] = "circuitwise.graph"
    version: int = VERSION
    model: GraphModel
    task: str | None = None
    prompt: str
    tokens: list[str]
    token_ids: list[int]
    target: GraphTarget
    transcoders: GraphTranscoders
    settings: GraphSettings
    nodes: list[GraphNode]
    edges: list[GraphEdge]
    scores: GraphScores | None = None
    checks: GraphChecks | None = None
    notes: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _consistent(self) -> GraphFile:
        if len(self.tokens) != len(self.token_ids):
            raise ValueError(f"{len(self.tokens)} tokens but {len(self.token_ids)} token ids")
        ids = [n.id for n in self.nodes]
        if len(set(ids)) != len(ids):
            raise ValueError(f"node ids repeat: {_repeats(ids)}")
        known = set(ids)
        for n in self.nodes:
            if n.pos >= len(self.tokens):
                raise ValueError(f"node {n.id!r} sits at position {n.pos}, past the {len(self.tokens)} tokens")
            if n.layer is not None and n.layer >= self.model.n_layers:
                raise ValueError(f"node {n.id!r} is at layer {n.layer}; the model has {self.model.n_layers}")
        for e in self.edges:
            if e.source not in known or e.target not in known:
                raise ValueError(f"edge {e.source} → {e.target} names a node the graph does not have")
        if self.checks is not None:
            for a in self.checks.interventions:
                if a.node not in known:
                    raise ValueError(f"the checks ablate node {a.node!r}, which the graph does not have")
        return self

    def node(self, node_id: str) -> GraphNode:
        """The node with id ``node_id``."""
        for n in self.nodes:
            if n.id == node_id:
                return n
        raise KeyError(node_id)

    def __repr__(self) -> str:
        counts = {k: sum(n.kind == k for n in self.nodes) for k in ("feature", "error", "embedding", "logit")}
        return (f"GraphFile({self.model.name}, {len(self.tokens)} tokens: {counts['feature']} features, "
                f"{counts['error']} errors, {counts['embedding']} tokens, {counts['logit']} logits, "
                f"{len(self.edges)} edges)")


def _repeats(ids: list[str]) -> str:
    twice = sorted(i for i, n in Counter(ids).items() if n > 1)
    return ", ".join(twice[:5]) + (f" (and {len(twice) - 5} more)" if len(twice) > 5 else "")


# ---- Neuronpedia's graph JSON, schema 1.0.0 -------------------------------------------------------

class NP(Open):
    """Neuronpedia's fields take JSON's types as its schema states them: no "3" read as 3, no true as 1."""

    model_config = ConfigDict(extra="allow", validate_assignment=True, protected_namespaces=(), strict=True)


class NPGenerator(NP):
    name: str | None = None
    version: str | None = None
    url: str | None = None
    email: str | None = None


class NPInfo(NP):
    description: str | None = None
    creator_name: str | None = None
    creator_url: str | None = None
    source_urls: list[Any] | None = None
    generator: NPGenerator | None = None
    create_time_ms: float | None = None


class NPFeatureDetails(NP):
    feature_json_base_url: str | None = None
    neuronpedia_source_set: str | None = None
    neuronpedia_lorsa_source_set: str | None = None


class NPGenerationSettings(NP):
    max_n_logits: int | None = None
    desired_logit_prob: float | None = None
    batch_size: int | None = None
    max_feature_nodes: int | None = None


class NPPruningSettings(NP):
    node_threshold: float | None = None
    edge_threshold: float | None = None


class NPMetadata(NP):
    slug: str
    scan: str
    prompt_tokens: list[str]
    prompt: str
    feature_details: NPFeatureDetails | None = None
    node_threshold: float | None = None
    info: NPInfo | None = None
    generation_settings: NPGenerationSettings | None = None
    pruning_settings: NPPruningSettings | None = None


class NPQParams(NP):
    pinnedIds: list[str] | None = None
    supernodes: list[Any] | None = None
    linkType: str | None = None
    clickedId: str | None = None
    sg_pos: str | None = None


class NPNode(NP):
    node_id: str
    feature: int | None
    layer: str | int
    ctx_idx: int
    feature_type: str
    jsNodeId: str
    clerp: str
    influence: float | None = None
    activation: float | None = None


class NPLink(NP):
    source: str
    target: str
    weight: float


class NeuronpediaGraph(NP):
    """A graph in Neuronpedia's format (schema 1.0.0). Built by ``features.export.to_neuronpedia``."""

    metadata: NPMetadata
    qParams: NPQParams
    nodes: list[NPNode]
    links: list[NPLink]

    def dump(self) -> dict[str, Any]:
        """Plain JSON, fields left unset by the writer left out (Neuronpedia's optional fields are absent, not null)."""
        out: dict[str, Any] = self.model_dump(mode="json", exclude_unset=True)
        return out


class NPFeatureExample(NP):
    """One context in Anthropic's feature format (Neuronpedia's viewer reads
    ``{feature_json_base_url}/{feature}.json``)."""

    tokens: list[str]
    tokens_acts_list: list[float]
    train_token_ind: int
    is_repeated_datapoint: bool = False


class NPFeatureQuantile(NP):
    quantile_name: str
    examples: list[NPFeatureExample]


class NPFeatureDetail(NP):
    """A feature's details in Anthropic's feature format: its contexts, grouped, and its logit effects."""

    index: int
    top_logits: list[str]
    bottom_logits: list[str]
    examples_quantiles: list[NPFeatureQuantile]


def _strict_numbers(data: Any, where: str = "") -> None:
    """JSON has no NaN or infinity: Python's json writes them, every browser's JSON.parse refuses them."""
    if isinstance(data, float) and not math.isfinite(data):
        raise SchemaError(f"{where or 'the graph'} is {data}, which JSON cannot hold (a viewer would refuse the "
                          "file). The graph holds a non-finite number: recompute it, or drop that node or link.")
    if isinstance(data, dict):
        for k, v in data.items():
            _strict_numbers(v, f"{where}.{k}" if where else str(k))
    elif isinstance(data, list):
        for i, v in enumerate(data):
            _strict_numbers(v, f"{where}[{i}]")


def viewer_problems(graph: NeuronpediaGraph) -> list[str]:
    """What would keep Neuronpedia's viewer from drawing a valid file (its formatter's own demands)."""
    problems = []
    layers = [int(n.layer) for n in graph.nodes if n.feature_type != "logit" and str(n.layer).isdigit()]
    if not layers or max(layers) == 0:
        problems.append("Neuronpedia's viewer needs a feature or error node above layer 0 (its formatter stops "
                        "with 'No layer found' otherwise): prune less (a higher --node-threshold)")
    bad = [n.node_id for n in graph.nodes if n.feature_type == "logit" and "(p=" not in n.clerp]
    if bad:
        problems.append(f"Neuronpedia's viewer reads a logit's probability from '(p=…)' in its clerp; logit "
                        f"{bad[0]} has none")
    return problems


def validate_neuronpedia(data: Any, source: str = "the graph") -> NeuronpediaGraph:
    """``data`` (a parsed file, or a path to one) checked as Neuronpedia's graph JSON (schema 1.0.0).

    Beyond the schema's fields and types it checks what a viewer needs to draw the graph: node ids
    unique, every link between nodes of the file, every node's ``ctx_idx`` within the prompt's
    tokens, numbers finite. Raises :class:`~circuitwise.errors.SchemaError` naming the first problems.
    """
    if isinstance(data, (str, Path)):
        path = Path(data)
        source = str(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise SchemaError(f"{path} does not exist; give the path of a Neuronpedia graph JSON file.") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise SchemaError(f"Cannot read {path} as JSON ({e}); give a Neuronpedia graph JSON file.") from None
    fix = ("Neuronpedia's graph schema 1.0.0 needs metadata {slug, scan, prompt_tokens, prompt}, qParams, nodes "
           "{node_id, feature, layer, ctx_idx, feature_type, jsNodeId, clerp} and links {source, target, weight}.")
    if not isinstance(data, dict):
        raise SchemaError(f"{source} is not a Neuronpedia graph: it holds a JSON {type(data).__name__}, not an "
                          f"object. {fix}")
    _strict_numbers(data)
    try:
        graph = NeuronpediaGraph.model_validate(data)
    except ValidationError as e:
        raise SchemaError(f"{source} does not fit Neuronpedia's graph schema {NEURONPEDIA_SCHEMA}: "
                          f"{first_problems(e)}. {fix}") from None
    ids = [n.node_id for n in graph.nodes]
    if len(set(ids)) != len(ids):
        raise SchemaError(f"{source}: node ids repeat ({_repeats(ids)}); a viewer would draw one node for "
                          "several. Give each node its own node_id.")
    known = set(ids)
    dangling = [f"{link.source} → {link.target}" for link in graph.links
                if link.source not in known or link.target not in known]
    if dangling:
        raise SchemaError(f"{source}: {len(dangling)} links name nodes the file does not have (first: "
                          f"{dangling[0]}). Keep a link only between nodes that are written.")
    n_tok = len(graph.metadata.prompt_tokens)
    outside = [n.node_id for n in graph.nodes if not 0 <= n.ctx_idx < n_tok]
    if outside:
        raise SchemaError(f"{source}: node {outside[0]} has a ctx_idx outside the prompt's {n_tok} tokens "
                          f"({len(outside)} such nodes). ctx_idx is the token position, from 0.")
    return graph


__all__ = ["FEATURE_TYPE", "FORMAT", "NEURONPEDIA_SCHEMA", "VERSION", "CircuitHeads", "Context", "FeatureAblation",
           "GraphChecks", "GraphEdge", "GraphFile", "HeadShare", "HeadTotal",
           "GraphModel", "GraphNode", "GraphScores", "GraphSettings", "GraphTarget", "GraphTranscoders", "NPLink",
           "NPFeatureDetail", "NPMetadata", "NPNode", "NPQParams", "NeuronpediaGraph", "NodeKind", "TargetMode",
           "validate_neuronpedia", "viewer_problems"]
