"""`circuitwise graph` on both bundled models with their shipped transcoders: the files validate
(Neuronpedia's schema restated, our own on read), the metric node holds the model's own logit
difference (read with a plain forward), and the page draws in headless Chromium."""

from __future__ import annotations

import json
import re

import jsonschema
import pytest
import torch

import circuitwise as cw
from circuitwise.features.export import load_graph
from circuitwise.schema.graph import validate_neuronpedia
from circuitwise.tasks import get_task
from tests.unit.cli.conftest import invoke
from tests.unit.features.test_export import NEURONPEDIA_1_0_0
from tests.unit.reports.test_browser import _headless

pytestmark = pytest.mark.integration

MODELS = ("bundled", "bundled-llama")


@pytest.fixture(scope="module", params=MODELS)
def run(request, tmp_path_factory):
    name = request.param
    out = tmp_path_factory.mktemp(name) / "graph"
    r = invoke("graph", "opposites", "--model", name, "--transcoders", name, "--n", "8", "--out", out)
    assert r.exit_code == 0, r.output
    return name, out, r.output


def test_files_validate_and_hold_the_models_own_logit_difference(run):
    name, out, output = run
    g = load_graph(out)
    data = json.loads((out / "neuronpedia.json").read_text())
    jsonschema.validate(data, NEURONPEDIA_1_0_0)
    validate_neuronpedia(data)
    assert g.transcoders.source == name and g.model.name == name
    assert {n.kind for n in g.nodes} >= {"feature", "embedding", "logit"}
    assert g.scores is not None and 0 < g.scores.replacement <= 1 and 0 < g.scores.completeness <= 1
    assert f"replacement score {g.scores.replacement:.3f}" in output
    ex = get_task("opposites", n=8).examples[0]
    model = cw.load_model(name, device="cpu")
    tokens = model.to_tokens(ex.clean)
    assert g.token_ids == tokens[0].tolist() and g.prompt == ex.clean
    with torch.no_grad():
        logits = model(tokens)[0, -1]
    correct, wrong = (model.tokenizer.encode(t, add_special_tokens=False)[0] for t in (ex.correct, ex.incorrect))
    (metric,) = [n for n in g.nodes if n.kind == "logit"]
    assert metric.activation == pytest.approx(float(logits[correct] - logits[wrong]), abs=1e-4)
    # Every feature the file keeps carries contexts, its own prompt among them where it fires there.
    feats = [n for n in g.nodes if n.kind == "feature"]
    assert feats and all(n.contexts for n in feats)


@pytest.mark.browser
def test_the_page_draws(run, tmp_path):
    _, out, _ = run
    g = load_graph(out)
    dom, console = _headless((out / "graph.html").resolve().as_uri(), tmp_path)
    assert console == [], "console messages:\n" + "\n".join(console)
    drawn = set(re.findall(r'class="cwg-node[^"]*" data-id="([^"]+)"', dom))
    assert drawn == {n.id for n in g.nodes}
    assert len(re.findall(r'<path[^>]*class="cwg-edge"', dom)) == len(g.edges)
