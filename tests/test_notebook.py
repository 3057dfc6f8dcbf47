"""examples/seed_study.ipynb runs headless on a real ipykernel, offline, and every output that should
draw a figure holds it; plotly.js and circuitsvis are inlined once per notebook (nothing from a CDN),
so the executed notebook stays small."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

pytestmark = pytest.mark.integration

NOTEBOOK = Path(__file__).resolve().parents[1] / "examples" / "seed_study.ipynb"
MARKS = {"plotly": "Plotly.newPlot(", "circuitsvis": "CircuitsVis.render(", "explorer": "window.cwExplorer(document"}
LIBRARIES = {"plotly": "if(!window.Plotly)", "circuitsvis": "if(!window.CircuitsVis)"}
MAX_BYTES = 10 * 2**20


def _html(cell) -> str:
    return "".join(o.get("data", {}).get("text/html", "") for o in cell.get("outputs", []))


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    nb = nbformat.read(NOTEBOOK, as_version=4)
    env = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # the kernel inherits them: the Hub path cannot be taken
    try:
        client = nbclient.NotebookClient(nb, timeout=300, kernel_name="python3",
                                         resources={"metadata": {"path": str(tmp_path_factory.mktemp("nb"))}})
        client.execute()  # raises CellExecutionError on the first cell that fails
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return nb


def test_the_hub_switch_is_off_by_default():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    flags = [c for c in nb.cells if c.cell_type == "code" and "USE_GPT2 =" in c.source]
    assert len(flags) == 1 and re.search(r"^USE_GPT2 = False$", flags[0].source, re.M)
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), "commit the notebook without outputs"


def test_every_cell_runs_and_every_figure_is_drawn(executed):
    tagged = 0
    for i, cell in enumerate(executed.cells):
        if cell.cell_type != "code":
            continue
        errors = [o for o in cell.outputs if o.get("output_type") == "error"]
        assert not errors, f"cell {i} failed: {errors}"
        html = _html(cell)
        assert re.search(r"<script[^>]*\bsrc=", html) is None, f"cell {i} loads a script from elsewhere"
        for tag in cell.metadata.get("tags", []):
            kind = tag.removeprefix("figure:")
            if kind in MARKS:
                tagged += 1
                assert MARKS[kind] in html, f"cell {i} should show a {kind} figure:\n{cell.source}"
    assert tagged >= 10


def test_each_library_comes_once_with_the_first_output_that_draws_with_it(executed):
    outputs = [_html(c) for c in executed.cells if c.cell_type == "code"]
    for kind, loader in LIBRARIES.items():
        carrying = [i for i, html in enumerate(outputs) if loader in html]
        drawing = [i for i, html in enumerate(outputs) if MARKS[kind] in html]
        assert len(carrying) == 1 and carrying[0] == drawing[0], (kind, carrying, drawing)


def test_the_executed_notebook_is_small(executed):
    size = len(nbformat.writes(executed).encode("utf-8"))
    assert size < MAX_BYTES, f"the executed notebook is {size / 2**20:.1f} MB"


def test_reprs_fit_a_terminal(executed):
    """The short __repr__ each result prints: one line, the key numbers."""
    printed = "".join(o.get("text", "") for c in executed.cells if c.cell_type == "code" for o in c.outputs
                      if o.get("output_type") == "stream")
    for start in ("Baseline(", "DLA(", "PatchResult(", "Discovery(Circuit(", "CircuitEvaluation(", "RunResults(",
                  "CompareOutputs("):
        line = next((ln for ln in printed.splitlines() if ln.startswith(start)), None)
        assert line is not None, f"no {start} line printed"
        assert len(line) <= 240, line
