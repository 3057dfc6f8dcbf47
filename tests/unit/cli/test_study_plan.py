"""circuit, patch, evaluate and benchmark print their memory and time plan as `run` does: each of their own
stages with the batch that fits, its memory at that batch and its time, before the stage's work."""

from __future__ import annotations

import re

import pytest

from circuitwise.models.memory import Shapes, estimate, fit_batch
from tests.unit.cli.conftest import invoke


@pytest.mark.parametrize("command, stages, first_work", [
    (["circuit", "opposites", "--random-samples", "0", "--shortlist", "0"], ("edges", "evaluation"), "edges ("),
    (["patch", "opposites", "--patch", "heads"], ("patching",), "heads (exact"),
])
def test_the_plan_is_printed_before_the_work(tmp_path, command, stages, first_work):
    import circuitwise as cw

    r = invoke(*command, "--model", "bundled", "--n", "12", "--out", tmp_path / "o")
    assert r.exit_code == 0, r.output
    text = r.output
    head = text.index("plan on cpu in float32, memory budget")
    model = cw.load_model("bundled", device="cpu")
    tok, _ = cw.tokenize_task(model, cw.get_task("opposites", n=12), need_corrupted=True)
    s, T = Shapes.from_model(model), int(tok.clean.shape[1])
    for stage in stages:
        m = re.search(rf"{stage}: batch (\d+), ≤ ([\d.]+) (\w+), ≈ ", " ".join(text[head:].split()))
        assert m, text
        batch = int(m.group(1))
        # Every prompt fits one batch on the bundled model; the memory is the estimate at that batch.
        assert batch == min(fit_batch(stage, s, T, 10**12, 12, model.W_E.device), 12) == 12
        assert m.group(3) == "MB" and float(m.group(2)) * 1e6 >= estimate(stage, s, T, batch, model.W_E.device) * 0.99
        assert head < text.index(first_work)
