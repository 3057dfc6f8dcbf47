"""Export: graph.json round-trips validated; the Neuronpedia JSON fits Neuronpedia's graph schema 1.0.0
(its required fields and types, restated below and checked with jsonschema), its ids are unique and
never collide, and it reads back into the same graph."""

from __future__ import annotations

import json

import jsonschema
import pytest

from circuitwise.errors import SchemaError
from circuitwise.features.export import (
    cantor,
    cumulative_influence,
    from_neuronpedia,
    load_graph,
    node_id,
    shares_of_cumulative,
    to_neuronpedia,
    uncantor,
    write_graph,
    write_neuronpedia,
)
from circuitwise.schema.graph import GraphEdge, GraphFile, GraphNode, validate_neuronpedia
from tests.unit.features.small_graph import small_graph

# Neuronpedia's attribution-graph schema 1.0.0 (apps/webapp/app/api/graph/graph-schema.json in
# hijohnnylin/neuronpedia): its required fields and their JSON types, restated.
_STR, _NUM, _INT = {"type": "string"}, {"type": "number"}, {"type": "integer"}
NEURONPEDIA_1_0_0 = {
    "$schema": "http://json-schema.org/draft-07/schema#",
    "type": "object",
    "required": ["metadata", "qParams", "nodes", "links"],
    "properties": {
        "metadata": {"type": "object", "required": ["slug", "scan", "prompt_tokens", "prompt"],
                     "properties": {"slug": _STR, "scan": _STR, "prompt": _STR, "node_threshold": _NUM,
                                    "prompt_tokens": {"type": "array", "items": _STR},
                                    "info": {"type": "object", "properties": {"create_time_ms": _NUM,
                                                                              "source_urls": {"type": "array"}}},
                                    "pruning_settings": {"type": "object", "properties": {
                                        "node_threshold": _NUM, "edge_threshold": _NUM}}}},
        "qParams": {"type": "object", "properties": {
            "pinnedIds": {"type": "array", "items": _STR}, "supernodes": {"type": "array"},
            "linkType": _STR, "clickedId": _STR, "sg_pos": _STR}},
        "nodes": {"type": "array", "items": {
            "type": "object",
            "required": ["node_id", "feature", "layer", "ctx_idx", "feature_type", "jsNodeId", "clerp"],
            "properties": {"node_id": _STR, "feature": {"type": ["integer", "null"]},
                           "layer": {"type": ["string", "integer"]}, "ctx_idx": _INT, "feature_type": _STR,
                           "jsNodeId": _STR, "clerp": _STR, "influence": {"type": ["number", "null"]},
                           "activation": {"type": ["number", "null"]}}}},
        "links": {"type": "array", "items": {"type": "object", "required": ["source", "target", "weight"],
                                             "properties": {"source": _STR, "target": _STR, "weight": _NUM}}},
    },
}


def test_export_fits_neuronpedias_schema_with_its_feature_types():
    g = small_graph()
    data = to_neuronpedia(g)
    jsonschema.validate(json.loads(json.dumps(data)), NEURONPEDIA_1_0_0)
    by_id = {n["node_id"]: n for n in data["nodes"]}
    assert [by_id[n.id]["feature_type"] for n in g.nodes] == (
        ["embedding"] * 4 + ["cross layer transcoder"] * 3 + ["mlp reconstruction error"] * 2 + ["logit"] * 2)
    # circuit-tracer's layout: features "{layer}_{index}_{pos}", errors "{layer}_-1_{pos}", embeddings
    # "E_{token}_{pos}", logits one layer past the last ("{n_layers + 1}_{token}_{pos}").
    assert by_id["0_3_3"]["layer"] == "0" and by_id["0_3_3"]["feature"] == cantor(0, 3)
    assert by_id["0_-1_3"]["feature"] == -1 and by_id["0_-1_3"]["ctx_idx"] == 3
    assert by_id["E_318_3"]["layer"] == "E" and by_id["E_318_3"]["ctx_idx"] == 3
    young = by_id["3_42_3"]
    assert young["layer"] == "3" and young["is_target_logit"] is True and young["token_prob"] == 0.625
    assert young["clerp"] == 'Output " young" (p=0.625)'
    assert by_id["0_3_3"]["activation"] == 2.5
    assert "activation" not in by_id["0_-1_3"]  # an error node has no activation: absent, not null
    assert data["links"][0] == {"source": "E_7619_2", "target": "0_1_2", "weight": 0.5}
    meta = data["metadata"]
    assert meta["prompt_tokens"] == g.tokens and meta["scan"] == "tiny" and meta["slug"] == "opposites"
    assert meta["pruning_settings"] == {"node_threshold": 0.8, "edge_threshold": 0.98}
    assert meta["info"]["generator"]["name"] == "circuitwise"


def test_ids_are_unique_and_never_collide():
    # Every id of every kind at every place of a 3-layer, 5-token graph with 6 features per layer and
    # token ids in the same range as the feature indices and positions: all distinct.
    n_layers, ids = 3, []
    for pos in range(5):
        for layer in range(n_layers):
            ids += [node_id("feature", layer=layer, pos=pos, feature=f, n_layers=n_layers) for f in range(6)]
            ids.append(node_id("error", layer=layer, pos=pos, feature=None, n_layers=n_layers))
        ids += [node_id(k, layer=None, pos=pos, feature=t, n_layers=n_layers) for k in ("embedding", "logit")
                for t in range(6)]
    assert len(ids) == len(set(ids)) == 5 * (3 * 7 + 12)
    # The old error id of layer 0, position 3 was "0_3_3": the id of feature 3 there.
    data = to_neuronpedia(small_graph())
    assert len({n["node_id"] for n in data["nodes"]}) == len(data["nodes"])
    assert "0_3_3" in {n["node_id"] for n in data["nodes"]} and "0_-1_3" in {n["node_id"] for n in data["nodes"]}


def test_influence_is_written_in_circuit_tracers_cumulative_form():
    # circuit-tracer: sort by influence, cumulative sum over the total; a viewer keeps value <= threshold.
    assert cumulative_influence([0.1, None, 0.6, 0.3, 0.0]) == pytest.approx([1.0, None, 0.6, 0.9, 1.0])
    shares = shares_of_cumulative(cumulative_influence([0.1, None, 0.6, 0.3, 0.0]))
    assert shares == pytest.approx([0.1, None, 0.6, 0.3, 0.0])
    g = small_graph()
    data = to_neuronpedia(g)
    total = sum(n.influence or 0.0 for n in g.nodes)
    by_id = {n["node_id"]: n for n in data["nodes"]}
    assert by_id["1_0_3"]["influence"] == pytest.approx(0.7 / total)  # the most influential node: its own share
    assert by_id["0_3_3"]["influence"] == pytest.approx((0.7 + 0.4) / total)
    assert max(n["influence"] for n in data["nodes"] if "influence" in n) == pytest.approx(1.0)
    assert "influence" not in by_id["3_42_3"]  # logits have none


def test_cantor_pairing_decodes():
    pairs = [(0, 0), (0, 3), (5, 0), (25, 16383), (40, 2**17 - 1), (3, 10**9)]
    assert [uncantor(cantor(x, y)) for x, y in pairs] == pairs
    assert len({cantor(x, y) for x in range(30) for y in range(30)}) == 900


def test_graph_file_round_trips_validated(tmp_path):
    g = small_graph()
    path = write_graph(g, tmp_path)
    assert path.name == "graph.json"
    again = load_graph(tmp_path)
    assert again == g and again.node("0_3_3").contexts[1].tokens == ["The", " cat", " is"]
    data = json.loads(path.read_text())
    assert data["format"] == "circuitwise.graph" and data["version"] == 1


def test_neuronpedia_file_round_trips_into_the_same_graph(tmp_path):
    g = small_graph()
    path = write_neuronpedia(g, tmp_path)
    assert path.name == "opposites.json"
    back = from_neuronpedia(path)
    assert back.tokens == g.tokens and back.token_ids == g.token_ids and back.model.n_layers == 2
    keep = ("id", "kind", "layer", "pos", "feature", "activation", "prob", "target")
    assert [{k: getattr(n, k) for k in keep} for n in back.nodes] == [{k: getattr(n, k) for k in keep} for n in g.nodes]
    # Influence comes back as each node's share of the total.
    total = sum(n.influence or 0.0 for n in g.nodes)
    assert [n.influence for n in back.nodes] == pytest.approx(
        [None if n.influence is None else n.influence / total for n in g.nodes], abs=1e-12)
    assert [n.token for n in back.nodes if n.kind == "logit"] == [" young", ' "old"']
    assert back.edges == g.edges
    assert back.settings.node_threshold == 0.8 and back.settings.edge_threshold == 0.98


def test_a_graph_with_repeated_or_dangling_ids_is_refused():
    g = small_graph().model_dump()
    g["nodes"].append(dict(g["nodes"][0]))
    with pytest.raises(ValueError, match="node ids repeat: E_50256_0"):
        GraphFile.model_validate(g)
    g = small_graph()
    with pytest.raises(ValueError, match="names a node the graph does not have"):
        GraphFile.model_validate({**g.model_dump(), "edges": [GraphEdge(source="0_9_9", target="E_32_1",
                                                                          weight=1.0).model_dump()]})
    with pytest.raises(ValueError, match="needs a layer"):
        GraphNode(id="x", kind="error", pos=0)


@pytest.mark.parametrize("change, message", [
    (lambda d: d["nodes"].append(dict(d["nodes"][0])), "node ids repeat"),
    (lambda d: d["links"].append({"source": "0_99_1", "target": "0_3_3", "weight": 1.0}), "links name nodes"),
    (lambda d: d["nodes"][0].update(ctx_idx=9), "outside the prompt's 4 tokens"),
    (lambda d: d["nodes"][0].update(ctx_idx="3"), "nodes.0.ctx_idx"),
    (lambda d: d["nodes"][0].pop("clerp"), "nodes.0.clerp: Field required"),
    (lambda d: d["metadata"].pop("scan"), "metadata.scan"),
    (lambda d: d["links"][0].update(weight=float("nan")), "links\\[0\\].weight is nan"),
])
def test_foreign_files_are_checked_with_a_clear_message(change, message):
    data = to_neuronpedia(small_graph())
    validate_neuronpedia(data)
    change(data)
    with pytest.raises(SchemaError, match=message):
        validate_neuronpedia(data, "their.json")


def test_foreign_files_keep_their_own_fields_and_bad_files_are_named(tmp_path):
    data = to_neuronpedia(small_graph())
    data["nodes"][0]["run_idx"] = 0
    data["metadata"]["transcoder_list"] = []
    g = validate_neuronpedia(data)
    assert g.nodes[0].model_extra == {"run_idx": 0}
    (tmp_path / "bad.json").write_text("[1, 2]")
    with pytest.raises(SchemaError, match="not a Neuronpedia graph: it holds a JSON list"):
        validate_neuronpedia(tmp_path / "bad.json")
    with pytest.raises(SchemaError, match="does not exist"):
        validate_neuronpedia(tmp_path / "none.json")


def test_old_or_foreign_graph_json_is_a_clear_error(tmp_path):
    (tmp_path / "graph.json").write_text(json.dumps({"format": "circuitwise.graph", "version": 7}))
    with pytest.raises(SchemaError, match="newer than the version 1"):
        load_graph(tmp_path)
    (tmp_path / "graph.json").write_text(json.dumps(to_neuronpedia(small_graph())))
    with pytest.raises(SchemaError, match="is not a circuitwise graph file"):
        load_graph(tmp_path / "graph.json")


def test_graph_json_validates_against_its_exported_schema(tmp_path):
    from pathlib import Path

    schema = json.loads((Path(__file__).resolve().parents[3] / "schema" / "graph.schema.json").read_text())
    jsonschema.validate(json.loads(write_graph(small_graph(), tmp_path).read_text()), schema)


def test_feature_details_in_anthropics_format_keyed_as_neuronpedia_fetches_them(tmp_path):
    from circuitwise.features.export import feature_details, write_feature_details
    from circuitwise.schema.graph import NPFeatureDetail

    g = small_graph()
    data = to_neuronpedia(g, feature_base_url="https://example.org/features/")
    assert data["metadata"]["feature_details"] == {"feature_json_base_url": "https://example.org/features"}
    details = feature_details(g)
    # The viewer fetches {base}/{node.feature}.json for every feature node.
    assert set(details) == {n["feature"] for n in data["nodes"] if n["feature_type"] == "cross layer transcoder"}
    d = details[cantor(0, 3)]
    NPFeatureDetail.model_validate(d)
    task, corpus = d["examples_quantiles"]
    assert task["examples"][0] == {"tokens": g.tokens, "tokens_acts_list": [0.0, 0.1, 0.4, 2.5], "train_token_ind": 3,
                                   "is_repeated_datapoint": False}
    # A context without per-token activations gets its peak alone.
    assert corpus["examples"][0]["tokens_acts_list"] == [0.0, 1.25, 0.0] and "corpus" in corpus["quantile_name"]
    assert details[cantor(1, 0)]["examples_quantiles"] == []
    paths = write_feature_details(g, tmp_path / "features")
    assert sorted(p.name for p in paths) == sorted(f"{k}.json" for k in details)
    assert json.loads((tmp_path / "features" / f"{cantor(0, 3)}.json").read_text()) == d


def test_what_neuronpedias_viewer_needs_beyond_the_schema():
    from circuitwise.schema.graph import viewer_problems

    data = to_neuronpedia(small_graph())
    assert viewer_problems(validate_neuronpedia(data)) == []
    low = json.loads(json.dumps(data))
    low["nodes"] = [n for n in low["nodes"] if n["layer"] in ("E", "0", "3")]
    low["links"] = []
    low["nodes"][-1]["clerp"] = "young"
    problems = viewer_problems(validate_neuronpedia(low))
    assert len(problems) == 2 and "above layer 0" in problems[0] and "(p=" in problems[1]
