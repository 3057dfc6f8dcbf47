"""One schema: the files a run writes validate against the exported JSON Schema and load typed;
an old or foreign file gets a clear version error, never a traceback."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
from typer.testing import CliRunner

import circuitwise as cw
from circuitwise.config import RunConfig
from circuitwise.errors import CircuitwiseError, SchemaError
from circuitwise.schema import FILES, CircuitFile, PatchingFile, RunResults, load_patching

ROOT = Path(__file__).resolve().parents[3]


@pytest.mark.parametrize("name", sorted(FILES))
def test_committed_schemas_are_the_models(name):
    """`make schema` was run after the last model change."""
    committed = json.loads((ROOT / "schema" / f"{name}.schema.json").read_text())
    assert committed == json.loads(json.dumps(FILES[name].json_schema())), (
        f"schema/{name}.schema.json is stale: run `make schema`")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, tiny_model):
    out = tmp_path_factory.mktemp("schema") / "run"
    cfg = RunConfig(task="opposites-seed", model="tiny", out=out, top_k=2, patching=("heads", "resid_pre"))
    outputs = cw.run(cfg, model=tiny_model)
    return out, outputs


def _validate(path: Path, name: str) -> dict:
    data = json.loads(path.read_text())
    jsonschema.validate(data, json.loads((ROOT / "schema" / f"{name}.schema.json").read_text()))
    return data


def test_a_runs_files_validate_against_the_exported_schema_and_load_typed(run_dir):
    out, outputs = run_dir
    data = _validate(out / "results.json", "results")
    assert data["format"] == "circuitwise.results" and data["schema_version"] == 1 and data["complete"] is True
    circuit = _validate(out / "circuit.json", "circuit")
    # run's circuit.json carries MIB's metrics as `circuitwise circuit`'s does, the same as results.json's.
    assert circuit["mib"] == data["circuit"]["evaluation"]["mib"]
    loaded = cw.load_results(out)
    assert isinstance(loaded, RunResults) and loaded == outputs.results
    # The typed object is the file: same numbers by attribute as by key.
    assert loaded.baseline.logit_diff.mean == data["baseline"]["logit_diff"]["mean"]
    assert loaded.patching["heads"].values == data["patching"]["heads"]["values"]
    assert CircuitFile.load(out / "circuit.json").n_edges == loaded.circuit.n_edges


def test_the_files_text_is_its_dump_with_nan_as_null(run_dir):
    """results.json is written by pydantic's JSON serialiser (fast): the same JSON as ``dump()``,
    NaN written as null, sections never computed left out."""
    _, outputs = run_dir
    res = outputs.results.model_copy(deep=True)
    res.patching_skipped = None
    res.patching["heads"].values[0][0] = float("nan")  # a missing cell
    text = res.dump_text()
    assert json.loads(text) == json.loads(json.dumps(res.dump(), allow_nan=False))
    assert json.loads(text)["patching"]["heads"]["values"][0][0] is None
    assert "NaN" not in text and "patching_skipped" not in text


def test_patch_writes_a_patching_json_that_validates(tmp_path, tiny_ckpt):
    from circuitwise.cli import _register, app

    _register()
    out = tmp_path / "p"
    r = CliRunner().invoke(app, ["patch", "opposites-seed", "--model", str(tiny_ckpt), "--what", "heads",
                                 "--method", "both", "--out", str(out)])
    assert r.exit_code == 0, r.output
    data = _validate(out / "patching.json", "patching")
    p = load_patching(out)
    assert isinstance(p, PatchingFile) and set(p.sweeps) == {"heads"}
    assert p.sweeps["heads"].exact.values == data["sweeps"]["heads"]["exact"]["values"]
    assert p.sweeps["heads"].correlation == pytest.approx(data["sweeps"]["heads"]["correlation"])
    assert p._repr_html_().count("Plotly.newPlot(") == 2  # exact and attribution heatmaps
    assert str(p) == repr(p) == f"PatchingFile(opposites-seed on {tiny_ckpt}, 6 examples; sweeps heads)"


def _write(tmp_path: Path, data) -> Path:
    path = tmp_path / "results.json"
    path.write_text(json.dumps(data))
    return path


def test_a_results_file_of_the_previous_release_gets_a_version_error(tmp_path, run_dir):
    out, _ = run_dir
    old = json.loads((out / "results.json").read_text())
    del old["format"], old["schema_version"]  # what circuitwise 0.1.0 (before the schema) wrote
    with pytest.raises(SchemaError) as info:
        cw.load_results(_write(tmp_path, old))
    msg = str(info.value)
    assert "written by circuitwise 0.1.0" in msg and "no schema version" in msg
    assert "reads circuitwise.results schema version 1" in msg
    assert old["rerun"] in msg  # what to do: the run's own re-run command


# Fields added with the study's uncertainty (issue 23): intervals, the honest p-value, edge stability.
UNCERTAINTY_FIELDS = {"interval", "intervals", "accuracy_interval", "cpr_interval", "cmd_interval",
                      "p_value_is_bound", "hits", "samples", "null", "stability"}


def _without(data, names):
    if isinstance(data, dict):
        return {k: _without(v, names) for k, v in data.items() if k not in names}
    if isinstance(data, list):
        return [_without(v, names) for v in data]
    return data


def test_files_written_before_intervals_still_load(tmp_path, run_dir):
    out, _ = run_dir
    data = json.loads((out / "results.json").read_text())
    assert data["baseline"]["logit_diff"]["interval"] is not None  # the new run has them ...
    assert data["top_heads"]["positive"][0]["interval"] is not None
    assert data["circuit"]["evaluation"]["faithfulness"]["interval"] is not None
    assert data["circuit"]["evaluation"]["stability"]["edges"] and data["circuit"]["top_edges"][0]["stability"] >= 0
    assert len(data["dla"]["layers"]["intervals"]) == len(data["dla"]["layers"]["values"])
    # the stored interval is the configured bootstrap of the stored per-prompt values, recomputed here
    import torch

    from circuitwise.config import BOOTSTRAP_LEVEL, BOOTSTRAP_RESAMPLES, BOOTSTRAP_SEED
    from circuitwise.evaluation.bootstrap import Resampling, mean_interval
    from circuitwise.reports.summary import summarize

    iv = mean_interval(torch.tensor(data["baseline"]["logit_diff"]["per_prompt"]).double(),
                       Resampling(BOOTSTRAP_RESAMPLES, BOOTSTRAP_LEVEL, BOOTSTRAP_SEED))
    assert data["baseline"]["logit_diff"]["interval"]["low"] == pytest.approx(iv.low, abs=1e-9)
    assert data["baseline"]["logit_diff"]["interval"]["high"] == pytest.approx(iv.high, abs=1e-9)
    new = cw.load_results(out)
    assert "95% CI" in " ".join(summarize(new)) and "[" in new.headline()
    old = _without(data, UNCERTAINTY_FIELDS)  # ... a file of the release before has none
    loaded = cw.load_results(_write(tmp_path, old))
    assert loaded.baseline.logit_diff.interval is None and loaded.baseline.accuracy_interval is None
    assert loaded.circuit.evaluation.faithfulness.interval is None
    assert loaded.circuit.evaluation.random_baseline.p_value_is_bound is None
    assert "CI" not in " ".join(summarize(loaded)) and "[" not in loaded.headline()
    from circuitwise.reports import write_report

    write_report(loaded, tmp_path / "old.html")  # the report renders an old file without the new numbers
    circuit = _without(json.loads((out / "circuit.json").read_text()), UNCERTAINTY_FIELDS)
    CircuitFile.model_validate(circuit)


@pytest.mark.parametrize("data,match", [
    ({"name": "my notes", "values": [1, 2]}, "is not a circuitwise results file"),
    ({"format": "circuitwise.patching", "schema_version": 1}, "its \"format\" is 'circuitwise.patching'"),
    ([1, 2, 3], "holds a JSON list, not an object"),
    ({"format": "circuitwise.results", "schema_version": 99}, "schema version 99, newer than the version 1"),
    ({"format": "circuitwise.results", "schema_version": "1"}, "must be a whole number"),
])
def test_foreign_or_future_files_are_named_clearly(tmp_path, data, match):
    with pytest.raises(SchemaError, match=match):
        cw.load_results(_write(tmp_path, data))


def test_a_damaged_field_is_named(tmp_path, run_dir):
    out, _ = run_dir
    data = json.loads((out / "results.json").read_text())
    data["baseline"]["accuracy"] = "high"
    data["dla"]["bogus"] = 1
    with pytest.raises(SchemaError) as info:
        cw.load_results(_write(tmp_path, data))
    assert "baseline.accuracy" in str(info.value) and "dla.bogus" in str(info.value)


def test_missing_and_unreadable_files(tmp_path):
    with pytest.raises(SchemaError, match="does not exist"):
        cw.load_results(tmp_path / "nothing")
    (tmp_path / "results.json").write_text("{half")
    with pytest.raises(SchemaError, match="not valid JSON"):
        cw.load_results(tmp_path)
    assert issubclass(SchemaError, CircuitwiseError) and SchemaError.exit_code == 2


def test_an_earlier_patching_json_is_replaced_with_a_note_not_a_crash(tmp_path, tiny_ckpt):
    from circuitwise.cli import _register, app

    _register()
    out = tmp_path / "p"
    out.mkdir()
    (out / "patching.json").write_text(json.dumps({"task": "opposites-seed", "model": str(tiny_ckpt),
                                                    "n_examples": 6, "sweeps": {"heads": {}}}))
    with pytest.raises(SchemaError, match="no schema version"):
        load_patching(out)
    # A folder of an earlier circuitwise (no recorded settings) is replaced only with --force.
    r = CliRunner().invoke(app, ["patch", "opposites-seed", "--model", str(tiny_ckpt), "--what", "resid_pre",
                                 "--out", str(out), "--force"])
    assert r.exit_code == 0, r.output
    assert "cannot be reused" in r.output and set(load_patching(out).sweeps) == {"resid_pre"}
