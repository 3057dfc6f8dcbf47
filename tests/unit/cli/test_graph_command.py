"""`circuitwise graph`: refusals before any model loads, and a whole run on the bundled model whose
files hold the engine's numbers (every link equals its adjacency entry), validate, and draw."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from circuitwise.features.attribute import LogitDiff, Tokens, attribution_graph
from circuitwise.features.export import load_graph
from circuitwise.features.formats import load_transcoders, save_transcoders
from circuitwise.schema.graph import validate_neuronpedia
from tests.unit.cli.conftest import invoke, no_model_loads  # noqa: F401  (a fixture, used by name)
from tests.unit.features.random_transcoders import random_set

PROMPT = "A tortoise is old, but a kitten is"


@pytest.fixture(scope="module")
def bundled():
    import circuitwise as cw

    return cw.load_model("bundled", device="cpu")


@pytest.fixture(scope="module")
def tc_dir(tmp_path_factory, bundled):
    return save_transcoders(random_set(bundled, "relu", n_features=48, seed=4), tmp_path_factory.mktemp("tc") / "set")


@pytest.mark.parametrize("args, message", [
    ((PROMPT, "--target", "metric"), "--target metric needs a task"),
    (("opposites", "--example", "100000"), "--example 100000 is outside the task's"),
    ((PROMPT, "--n", "3"), "--n and --split choose a task's prompts"),
    ((PROMPT, "--node-threshold", "0"), "0 would keep nothing"),
    ((PROMPT, "--corpus", "missing.txt"), "Cannot read --corpus missing.txt"),
])
def test_bad_requests_are_refused_before_the_model_loads(tmp_path, no_model_loads, tc_dir, args, message):  # noqa: F811
    r = invoke("graph", *args, "--model", "bundled", "--transcoders", tc_dir, "--out", tmp_path / "g")
    assert r.exit_code == 2 and message in r.output
    assert not (tmp_path / "g").exists()


def test_a_missing_transcoder_set_is_refused_before_the_model_loads(tmp_path, no_model_loads):  # noqa: F811
    r = invoke("graph", PROMPT, "--model", "bundled", "--transcoders", tmp_path / "none", "--out", tmp_path / "g")
    assert r.exit_code == 2 and "does not exist" in r.output


def _check_run(out, bundled, tc_dir, prompt, targets):
    g = load_graph(out)  # validated on read
    full = attribution_graph(bundled, load_transcoders(tc_dir), prompt, targets)
    # Every written link is the engine's direct effect of its sender on its receiver.
    index = {}
    for i, x in enumerate(full.nodes):
        kind = {"token": "embedding", "target": "logit"}.get(x.kind, x.kind)
        index[(kind, x.layer if kind in ("feature", "error") else None, x.position,
               x.feature if kind == "feature" else (x.token if kind in ("embedding", "logit") else None))] = i
    at = {n.id: index[(n.kind, n.layer, n.pos, n.feature)] for n in g.nodes}
    assert g.edges, "the pruned graph kept no link"
    for e in g.edges:
        assert e.weight == pytest.approx(float(full.adjacency[at[e.target], at[e.source]]), rel=1e-4, abs=1e-6)
    for n in g.nodes:
        assert n.activation == pytest.approx(full.nodes[at[n.id]].value, rel=1e-5, abs=1e-6)
    np_data = json.loads((out / "neuronpedia.json").read_text())
    validate_neuronpedia(np_data)
    assert {x["node_id"] for x in np_data["nodes"]} == {n.id for n in g.nodes}
    assert len(np_data["links"]) == len(g.edges) and np_data["metadata"]["prompt_tokens"] == g.tokens
    html = (out / "graph.html").read_text()
    assert "cwGraph(" in html and "<script src" not in html
    return g


def test_a_task_graph_on_the_bundled_model(tmp_path, bundled, tc_dir):
    out = tmp_path / "g"
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("The old man and the young boy\n\nA big dog is not small\n")
    r = invoke("graph", "opposites", "--model", "bundled", "--transcoders", tc_dir, "--n", "6", "--corpus", corpus,
               "--out", out)
    assert r.exit_code == 0, r.output
    assert r.output.index("plan:") < r.output.index("features,")  # the plan comes first
    assert "target: the logit difference" in r.output and "top activating contexts from 6 task prompts and 2 corpus" \
        in r.output
    from circuitwise.tasks import get_task

    ex = get_task("opposites", n=6).examples[0]
    g = _check_run(out, bundled, tc_dir, ex.clean, LogitDiff(ex.correct, ex.incorrect))
    assert g.task == "opposites" and g.target.mode == "metric" and g.prompt == ex.clean
    assert [n.token for n in g.nodes if n.kind == "logit"] == ["metric"]
    feats = [n for n in g.nodes if n.kind == "feature"]
    assert feats and all(c.source in ("task", "corpus") for n in feats for c in n.contexts)
    assert any(c.source == "task" and c.index == 0 for n in feats for c in n.contexts)
    # Other settings into the same folder: refused before any work unless --force.
    r = invoke("graph", "opposites", "--model", "bundled", "--transcoders", tc_dir, "--n", "6", "--out", out)
    assert r.exit_code == 3 and "--force" in r.output


def test_a_prompt_graph_on_the_bundled_model(tmp_path, bundled, tc_dir):
    out = tmp_path / "g"
    r = invoke("graph", PROMPT, "--model", "bundled", "--transcoders", tc_dir, "--target", " young",
               "--node-threshold", "0.5", "--out", out)
    assert r.exit_code == 0, r.output
    g = _check_run(out, bundled, tc_dir, PROMPT, Tokens((" young",)))
    assert g.task is None and g.target.mode == "token" and g.settings.node_threshold == 0.5
    assert [n.token for n in g.nodes if n.kind == "logit"] == [" young"]
    # Provenance, as every other output: graph.json recorded the model's name and layer count only.
    from circuitwise.models.fingerprint import fingerprint

    assert g.model.fingerprint is not None and g.model.fingerprint.model_dump() == fingerprint(bundled)


def test_contexts_come_from_a_tasks_first_prompts_only():
    from circuitwise.cli.graph import _plan_lines, resolve
    from circuitwise.features.contexts import DEFAULT_TASK_TEXTS

    req = resolve("opposites", None, 3, None, None, None)
    assert req.n_prompts > DEFAULT_TASK_TEXTS and len(req.texts) == DEFAULT_TASK_TEXTS and req.target == "metric"
    assert req.prompt == req.texts[3]
    lines = _plan_lines(req, "bundled", "bundled", 0.8, 0.98, (), Path("runs/g"))
    assert f"the first {DEFAULT_TASK_TEXTS} of the task's {req.n_prompts} prompts (--context-prompts)" in lines[4]
    assert lines[-1].endswith("to runs/g")
    assert len(resolve("opposites", None, 0, 6, None, None, context_prompts=50).texts) == 6
    prompt = resolve(PROMPT, " young", 0, None, None, None)
    assert not prompt.is_task and prompt.texts == (PROMPT,) and prompt.target == " young"


@pytest.mark.parametrize("align", ["relative", "role"])
def test_a_whole_task_graph_on_the_bundled_model(tmp_path, bundled, tc_dir, align):
    from circuitwise.features.export import graph_file
    from circuitwise.features.prune import prune_graph
    from circuitwise.features.task_graph import task_graph
    from circuitwise.tasks import get_task

    out = tmp_path / "g"
    r = invoke("graph", "opposites", "--whole-task", "--n", "5", "--graph-prompts", "3", "--align", align,
               "--model", "bundled", "--transcoders", tc_dir, "--out", out)
    assert r.exit_code == 0, r.output
    assert f"the graphs of its first 3 prompts, nodes aligned by {align} position, averaged" in r.output
    g = load_graph(out)
    # The file is the engine's averaged, pruned graph: same ids, same links, same weights.
    from circuitwise.cli.graph import _kept_labels

    full = task_graph(bundled, load_transcoders(tc_dir), get_task("opposites", n=5), align=align, max_prompts=3)
    want = graph_file(_kept_labels(full, prune_graph(full).with_(model="bundled")))
    if align == "role":  # one column per role label, each node under its own
        assert g.tokens[-1] == "END" and "ADJ" in g.tokens
    assert [n.id for n in g.nodes] == [n.id for n in want.nodes] and g.tokens == want.tokens
    assert [(e.source, e.target) for e in g.edges] == [(e.source, e.target) for e in want.edges]
    assert [e.weight for e in g.edges] == pytest.approx([e.weight for e in want.edges], rel=1e-5, abs=1e-7)
    validate_neuronpedia(out / "neuronpedia.json")
    assert g.target.mode == "metric" and "over 3 prompts" in " ".join(g.notes)


def test_whole_task_refusals(tmp_path, no_model_loads, tc_dir):  # noqa: F811
    for args, message in [((PROMPT, "--whole-task"), "--whole-task needs a task"),
                          (("opposites", "--whole-task", "--target", "salient"), "--whole-task explains the task's"),
                          (("opposites", "--whole-task", "--align", "word"),
                           "--align 'word': choose relative or role")]:
        r = invoke("graph", *args, "--model", "bundled", "--transcoders", tc_dir, "--out", tmp_path / "g")
        assert r.exit_code == 2 and message in r.output, r.output


def test_a_graph_file_is_drawn_without_a_model(tmp_path, no_model_loads):  # noqa: F811
    from circuitwise.features.export import to_neuronpedia, write_graph
    from tests.unit.features.small_graph import small_graph

    g = small_graph()
    # Neuronpedia's graph JSON as circuit-tracer writes it (its extra fields kept): drawn, ids kept.
    theirs = to_neuronpedia(g)
    theirs["metadata"]["transcoder_list"] = []
    for node in theirs["nodes"]:
        node.update(run_idx=0, reverse_ctx_idx=0)
    (tmp_path / "theirs.json").write_text(json.dumps(theirs))
    r = invoke("graph", tmp_path / "theirs.json", "--out", tmp_path / "view")
    assert r.exit_code == 0, r.output
    drawn = load_graph(tmp_path / "view")
    assert [n.id for n in drawn.nodes] == [n.id for n in g.nodes] and drawn.edges == g.edges
    assert "cwGraph(" in (tmp_path / "view" / "graph.html").read_text()
    validate_neuronpedia(tmp_path / "view" / "neuronpedia.json")
    # circuitwise's own graph.json: drawn as it is.
    write_graph(g, tmp_path / "mine.json")
    r = invoke("graph", tmp_path / "mine.json", "--out", tmp_path / "view2")
    assert r.exit_code == 0, r.output
    assert load_graph(tmp_path / "view2") == g
    # Options that only apply when a graph is computed are refused, as is a computation without transcoders.
    r = invoke("graph", tmp_path / "mine.json", "--target", "salient", "--out", tmp_path / "view3")
    assert r.exit_code == 2 and "--target apply only when a graph is computed" in r.output
    r = invoke("graph", PROMPT, "--out", tmp_path / "g")
    assert r.exit_code == 2 and "--transcoders is needed to compute a graph" in r.output
    (tmp_path / "bad.json").write_text('{"nodes": []}')
    r = invoke("graph", tmp_path / "bad.json", "--out", tmp_path / "view4")
    assert r.exit_code == 2 and "does not fit Neuronpedia's graph schema" in r.output


def _circuit_json(path: Path, model, heads: list[str]) -> Path:
    """A circuit.json as `circuitwise circuit` writes it (the fields the graph command reads)."""
    from circuitwise.models.fingerprint import fingerprint

    edges = [{"sender": "input", "receiver": f"{h}.v", "score": 1.0} for h in heads] + \
            [{"sender": h, "receiver": "logits", "score": 1.0} for h in heads]
    path.write_text(json.dumps({"format": "circuitwise.circuit", "version": 1, "edges": edges,
                                "nodes": ["input", *heads, "MLP0", "logits"],
                                "model": {"name": "bundled", "fingerprint": fingerprint(model)}}))
    return path


def test_check_refusals_before_the_model_loads(tmp_path, no_model_loads, tc_dir):  # noqa: F811
    circuit = tmp_path / "circuit.json"
    circuit.write_text(json.dumps({"format": "circuitwise.circuit", "version": 1, "edges": [], "nodes": ["L0H1"]}))
    for args, message in [
        (("opposites", "--whole-task", "--check-features", "3"), "--check-features: the checks need one prompt's"),
        (("opposites", "--edge-circuit", circuit, "--head-links", "0"), "--head-links 0 computes none"),
        (("opposites", "--edge-circuit", tmp_path / "missing.json"), "missing.json"),
    ]:
        r = invoke("graph", *args, "--model", "bundled", "--transcoders", tc_dir, "--out", tmp_path / "g")
        assert r.exit_code == 2 and message in r.output, r.output
        assert not (tmp_path / "g").exists()


def test_the_graph_is_checked_and_its_heads_marked_against_an_edge_circuit(tmp_path, bundled, tc_dir):
    from circuitwise.features.checks import check_graph
    from circuitwise.features.prune import prune_graph

    circuit = _circuit_json(tmp_path / "circuit.json", bundled, ["L0H2", "L1H0"])
    out = tmp_path / "g"
    r = invoke("graph", PROMPT, "--model", "bundled", "--transcoders", tc_dir, "--target", " young",
               "--check-features", "3", "--head-links", "6", "--edge-circuit", circuit, "--out", out)
    assert r.exit_code == 0, r.output
    assert "checks: ablate the 3 most influential kept features" in r.output
    assert "heads carrying the 6 strongest links between positions" in r.output
    g = load_graph(out)
    c = g.checks
    assert c is not None and c.circuit is not None and c.circuit.heads == ["L0H2", "L1H0"]
    assert len(c.interventions) == 3 and c.links_analysed == 6
    assert all(h.in_circuit == (h.head in ("L0H2", "L1H0")) for h in c.heads)
    # The numbers are the engine's checks of the same graph.
    tcs = load_transcoders(tc_dir)
    full = attribution_graph(bundled, tcs, PROMPT, Tokens((" young",)))
    want = check_graph(bundled, tcs, full, prune_graph(full), features=3, links=6)
    assert [a.actual for a in c.interventions] == pytest.approx([a.actual for a in want.interventions], rel=1e-4,
                                                                abs=1e-6)
    assert [h.head for h in c.heads] == [h for h, *_ in want.head_totals()]
    assert sum(e.heads is not None for e in g.edges) == 6
    html = (out / "graph.html").read_text()
    assert "Does the graph say what the model does?" in html and "in the edge circuit" in html


def test_an_edge_circuit_of_another_model_is_refused(tmp_path, tc_dir):
    import circuitwise as cw

    other = cw.load_model("bundled-llama", device="cpu")
    circuit = _circuit_json(tmp_path / "circuit.json", other, ["L0H1"])
    r = invoke("graph", PROMPT, "--model", "bundled", "--transcoders", tc_dir, "--edge-circuit", circuit,
               "--out", tmp_path / "g")
    assert r.exit_code == 2 and "not on the loaded model 'bundled'" in r.output, r.output
    assert not (tmp_path / "g").exists()


def test_max_memory_is_the_whole_budget_with_the_model_in_it(tmp_path, bundled, tc_dir):
    """As in every command, --max-memory counts the model: one that cannot sit in it is refused before it
    loads, and the graph plans in what the model leaves (graph took the budget as what was left beside
    the model: under 1MB it loaded the model and ran its forward, then refused the graph)."""
    from circuitwise.models.memory import Shapes, resident

    r = invoke("graph", PROMPT, "--model", "bundled", "--transcoders", tc_dir, "--max-memory", "1MB",
               "--out", tmp_path / "g")
    assert r.exit_code == 2 and "nothing was loaded" in r.output and "--dtype bfloat16" in " ".join(r.output.split())
    assert not (tmp_path / "g").exists()
    # The model fits, with 100 kB beside it: less than the graph's adjacency and one backward row.
    held = int(resident(Shapes.from_model(bundled), "cpu"))
    r = invoke("graph", PROMPT, "--model", "bundled", "--transcoders", tc_dir, "--max-memory", str(held + 100_000),
               "--out", tmp_path / "g")
    assert r.exit_code == 2 and "over the 100 kB left" in " ".join(r.output.split()), r.output
    assert not (tmp_path / "g").exists()
