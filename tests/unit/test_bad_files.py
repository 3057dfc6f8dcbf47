"""Every file circuitwise reads ends in a clear CircuitwiseError (with a fix) when it is unusable."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from circuitwise.circuits.circuit import Circuit
from circuitwise.cli import _register, app
from circuitwise.config import RunConfig
from circuitwise.errors import CircuitwiseError, ConfigError

_register()
runner = CliRunner()


@pytest.mark.parametrize("content,match", [
    ("- opposites\n- bundled\n", "holds a YAML list, not a mapping"),
    (b"task: opposites\nmodel: \xff\xfe\n", "not UTF-8"),
    ("task: [unclosed\n", "not valid YAML"),
    ("task: opposites\nbogus: 1\n", "bogus"),
])
def test_bad_config_files(tmp_path, content, match):
    path = tmp_path / "config.yaml"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(ConfigError, match=match):
        RunConfig.from_yaml(path)


def test_config_that_is_a_folder(tmp_path):
    with pytest.raises(ConfigError, match="is a folder"):
        RunConfig.from_yaml(tmp_path)
    r = runner.invoke(app, ["run", "--config", str(tmp_path)])
    assert isinstance(r.exception, ConfigError)


GOOD = {"format": "circuitwise.circuit", "version": 1, "model": {"name": "bundled"}, "edges": []}


@pytest.mark.parametrize("field,value", [("version", "one"), ("version", True), ("model", "bundled"),
                                         ("selection", "target"), ("method", 3)])
def test_bad_circuit_fields_fail_before_the_model_loads(tmp_path, field, value):
    with pytest.raises(ConfigError, match=f'"{field}" must be') as info:
        Circuit.check_json({**GOOD, field: value}, "c.json")
    assert "circuitwise circuit" in str(info.value)
    path = tmp_path / "c.json"
    path.write_text(json.dumps({**GOOD, field: value}))
    r = runner.invoke(app, ["evaluate", str(path), "opposites-seed", "--model", str(tmp_path / "no-model")])
    assert isinstance(r.exception, CircuitwiseError) and f'"{field}" must be' in str(r.exception)


def test_circuit_file_that_is_a_folder(tmp_path):
    r = runner.invoke(app, ["evaluate", str(tmp_path), "opposites-seed"])
    assert isinstance(r.exception, ConfigError) and "Cannot read the circuit file" in str(r.exception)
