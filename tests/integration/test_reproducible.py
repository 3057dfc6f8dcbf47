"""The same command twice gives the same files: every number and every string of its JSON, whatever the
process's string hashing (PYTHONHASHSEED changes the order a set iterates in; the circuit figure in
results.json listed the MLP nodes in that order, so two identical runs differed). With the same number of
threads: float32 sums split over another number of threads round differently (about 1e-7)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import json_leaves

pytestmark = pytest.mark.integration

# What may differ between two identical runs: where and when they ran, and how long they took.
VOLATILE = ("seconds", "wall", "elapsed", "budget", "rerun", "created")


def _differences(a: Any, b: Any) -> list[str]:
    la, lb = json_leaves(a), json_leaves(b)
    keys = [k for k in dict.fromkeys([*la, *lb])
            if not any(v in k.lower() for v in VOLATILE) and k.rsplit(".", 1)[-1] != "out"]  # the --out folder
    return [f"{k}: {la.get(k, '<absent>')!r} vs {lb.get(k, '<absent>')!r}" for k in keys if la.get(k) != lb.get(k)]


def _twice(argv: list[str], tmp_path: Path) -> tuple[Path, Path]:
    outs = []
    for seed in ("1", "2"):
        out = tmp_path / f"hash{seed}"
        # One thread in both: a command takes as many threads as cores are idle as it starts, and a product
        # summed over another number of threads rounds differently (float32, ~1e-7); that is not this test's point.
        env = {**os.environ, "PYTHONHASHSEED": seed, "CIRCUITWISE_THREADS": "1"}
        done = subprocess.run([sys.executable, "-c", "from circuitwise.cli import main; main()", *argv, "--out",
                               str(out)], capture_output=True, text=True, env=env, timeout=600)
        assert done.returncode == 0, done.stderr[-2000:]
        outs.append(out)
    return outs[0], outs[1]


@pytest.mark.parametrize("argv", [
    ["run", "opposites", "--model", "bundled", "--n", "24"],
    ["compare", "numbers-digits", "numbers-words", "--model", "bundled", "--n", "24", "--bootstrap", "200",
     "--permutations", "200"],
], ids=["run", "compare"])
def test_a_command_run_twice_writes_the_same_json(argv, tmp_path):
    a, b = _twice(argv, tmp_path)
    files = sorted(p.name for p in a.glob("*.json") if not p.name.startswith("."))
    assert files and files == sorted(p.name for p in b.glob("*.json") if not p.name.startswith("."))
    for name in files:
        diff = _differences(json.loads((a / name).read_text()), json.loads((b / name).read_text()))
        assert not diff, f"{name}: {len(diff)} differences, first {diff[:5]}"
