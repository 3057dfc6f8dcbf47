"""compare.json is one of the schema's files: it validates against schema/compare.schema.json and loads typed."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from circuitwise.errors import SchemaError
from circuitwise.schema import CompareResults, load_compare

SCHEMA = Path(__file__).resolve().parents[3] / "schema" / "compare.schema.json"


def test_compare_json_validates_and_loads_typed(forms_run, tmp_path):
    out, data = forms_run
    jsonschema.validate(data, json.loads(SCHEMA.read_text()))
    loaded = load_compare(out)
    assert isinstance(loaded, CompareResults) and loaded.heads.diff == data["heads"]["diff"]
    assert "Plotly.newPlot(" in loaded._repr_html_()  # displays as compare.html's sections
    newer = {**data, "version": 2}
    (tmp_path / "compare.json").write_text(json.dumps(newer))
    with pytest.raises(SchemaError, match="schema version 2, newer than the version 1"):
        load_compare(tmp_path)
    (tmp_path / "compare.json").write_text(json.dumps({"format": "circuitwise.results", "schema_version": 1}))
    with pytest.raises(SchemaError, match="is not a circuitwise compare file"):
        load_compare(tmp_path)
