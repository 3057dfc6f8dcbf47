"""`circuitwise benchmark` end to end on the known-circuit checkpoint: files, exit codes, numbers."""

from __future__ import annotations

import json
from html.parser import HTMLParser

import pytest
from typer.testing import CliRunner

from circuitwise.cli import _register, app
from circuitwise.tasks.io import write_jsonl
from tests.unit.circuits.known_circuit import known_circuit_task, make_known_circuit_checkpoint

_register()
runner = CliRunner()


class ScriptTags(HTMLParser):
    """The page's <script> tags (their bodies are not parsed, so strings inside plotly.js do not count)."""

    def __init__(self) -> None:
        super().__init__()
        self.count, self.sources = 0, []

    def handle_starttag(self, tag, attrs):
        if tag == "script":
            self.count += 1
            self.sources += [v for k, v in attrs if k == "src"]


def invoke(*args):
    from circuitwise.errors import CircuitwiseError

    try:
        return runner.invoke(app, [str(a) for a in args], catch_exceptions=False), None
    except CircuitwiseError as e:  # main() turns these into their exit status with the message
        return None, e


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("bench-cli")
    ckpt = make_known_circuit_checkpoint(root / "model")
    task = root / "copy.jsonl"
    write_jsonl(known_circuit_task(), task)
    return ckpt, task, root


@pytest.fixture(scope="module")
def run(setup):
    ckpt, task, root = setup
    out = root / "out"
    r, err = invoke("benchmark", task, "--model", ckpt, "--methods", "eap,exact", "--methods", "eap-ig", "--out", out)
    assert err is None and r.exit_code == 0, (err, r and r.output)
    return out, r.output


def test_writes_benchmark_json_and_a_self_contained_page(run):
    out, _ = run
    assert {p.name for p in out.iterdir()} == {"benchmark.json", "benchmark.html", ".circuitwise.json"}
    page = (out / "benchmark.html").read_text()
    scripts = ScriptTags()
    scripts.feed(page)
    assert scripts.count >= 2 and scripts.sources == []  # plotly.js inlined, nothing fetched
    assert "Plotly.newPlot" in page and "eap-ig, absolute (CMD)" in page


def test_json_numbers_equal_the_library_on_the_same_prompts(run, setup):
    from circuitwise.config import RunConfig
    from circuitwise.evaluation.benchmark import benchmark
    from circuitwise.pipeline import prepare

    out, _ = run
    ckpt, task, _ = setup
    p = prepare(RunConfig.build(task=str(task), model=str(ckpt)), need_corrupted=True)
    lib = benchmark(p.model, p.tok, ["eap", "exact", "eap-ig"]).to_json()
    saved = json.loads((out / "benchmark.json").read_text())
    assert [m["method"] for m in saved["methods"]] == ["eap", "exact", "eap-ig"]
    assert saved["n_examples"] == lib["n_examples"] == 16
    for got, want in zip(saved["methods"], lib["methods"]):
        for key in ("cpr", "cmd", "edges_at_target", "faithfulness_at_target"):
            assert got[key] == pytest.approx(want[key], abs=1e-9), key
        for ranking in ("signed", "abs"):
            g, w = got["mib"]["curves"][ranking], want["mib"]["curves"][ranking]
            assert g["faithfulness"] == pytest.approx(w["faithfulness"], abs=1e-9)
            assert g["n_edges"] == w["n_edges"]


def test_the_console_table_shows_the_json_rows(run):
    out, output = run
    saved = json.loads((out / "benchmark.json").read_text())
    for m in saved["methods"]:
        assert m["method"] in output and f"{m['cpr']:.3f}" in output and f"{m['cmd']:.3f}" in output
    assert "CPR" in output and "CMD" in output and "benchmark.json" in output


def test_an_unknown_method_is_exit_2_before_any_work(setup):
    ckpt, task, root = setup
    out = root / "never"
    r, err = invoke("benchmark", task, "--model", root / "no-such-model", "--methods", "eap,path-patching",
                    "--out", out)
    assert r is None and err is not None and err.exit_code == 2
    assert "path-patching" in str(err) and "eap-ig" in str(err)
    assert not out.exists()  # refused before the model (which does not exist) was even looked for
