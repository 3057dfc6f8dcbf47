"""Fixtures: the two-route model (tests/unit/compare/known_forms.py), its two task files, and compare runs on them."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest
from typer.testing import CliRunner

from tests.unit.compare.known_forms import form_task, make_two_route_checkpoint


@pytest.fixture(scope="session")
def two_route(tmp_path_factory):
    """(folder, checkpoint, loaded model); the folder holds upper.jsonl and lower.jsonl, twins pair by pair."""
    import circuitwise as cw

    root = tmp_path_factory.mktemp("two_route")
    ckpt = make_two_route_checkpoint(root / "model")
    form_task("upper").to_jsonl(root / "upper.jsonl")
    form_task("lower").to_jsonl(root / "lower.jsonl")
    return root, ckpt, cw.load_model(str(ckpt), device="cpu")


@dataclass
class Outcome:
    """A CLI run as `main()` ends it: a CircuitwiseError is its exit status and message, anything else a bug."""

    exit_code: int
    output: str


def invoke(*args: object) -> Outcome:
    from circuitwise.cli import _register, app
    from circuitwise.errors import CircuitwiseError

    _register()
    result = CliRunner().invoke(app, [str(a) for a in args])
    e = result.exception
    if isinstance(e, CircuitwiseError):
        return Outcome(e.exit_code, result.output + f"error: {e}")
    if e is not None and not isinstance(e, SystemExit):
        raise e
    return Outcome(result.exit_code, result.output)


@pytest.fixture(scope="session")
def forms_run(two_route):
    """upper vs lower through the CLI, paired, every stage: (folder, compare.json as a dict)."""
    root, ckpt, _ = two_route
    out = root / "forms"
    r = invoke("compare", root / "upper.jsonl", root / "lower.jsonl", "--model", ckpt, "--pairing", "paired",
               "--out", out, "--random-circuits", "5")
    assert r.exit_code == 0, r.output
    return out, json.loads((out / "compare.json").read_text())


@pytest.fixture(scope="session")
def same_run(two_route):
    """upper against itself (one task, one model), every stage, through the Python API."""
    import circuitwise as cw

    root, ckpt, model = two_route
    return cw.compare(a=str(root / "upper.jsonl"), model=str(ckpt), models=(model, model), out=root / "same",
                      random_samples=3)
