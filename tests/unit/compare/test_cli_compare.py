"""`circuitwise compare` on the command line: errors before work (exit 2), re-running from config.yaml."""

from __future__ import annotations

import json

import yaml

from tests.unit.compare.conftest import invoke


def test_nothing_to_compare_is_exit_2():
    r = invoke("compare")
    assert r.exit_code == 2 and "Name what to compare" in r.output


def test_unknown_task_and_bad_options_fail_before_anything_is_written(tmp_path, two_route):
    root, ckpt, _ = two_route
    out = tmp_path / "cmp"
    r = invoke("compare", "no-such-task", "--model", ckpt, "--out", out)
    assert r.exit_code == 2 and "Unknown task" in r.output
    r = invoke("compare", root / "upper.jsonl", "--pairing", "sometimes", "--out", out)
    assert r.exit_code == 2 and "pairing" in r.output
    r = invoke("compare", root / "upper.jsonl", "--circuit", "magic", "--model", ckpt, "--out", out)
    assert r.exit_code == 2 and "discovery method" in r.output
    assert not out.exists()


def test_declared_pairing_that_does_not_hold_is_exit_2(tmp_path, two_route):
    root, ckpt, _ = two_route
    short = tmp_path / "short.jsonl"
    short.write_text("".join((root / "lower.jsonl").read_text().splitlines(keepends=True)[:-2]))
    r = invoke("compare", root / "upper.jsonl", short, "--model", ckpt, "--pairing", "paired", "--out", tmp_path / "o")
    assert r.exit_code == 2 and "example i of A to be example i of B" in r.output


def test_rerun_from_saved_config_gives_the_same_numbers(tmp_path, forms_run):
    out, first = forms_run
    cfg = yaml.safe_load((out / "config.yaml").read_text())
    assert cfg["pairing"] == "paired" and first["rerun"].endswith("config.yaml")
    again = tmp_path / "again"
    r = invoke("compare", "--config", out / "config.yaml", "--out", again, "--no-patching", "--circuit", "none")
    assert r.exit_code == 0, r.output
    second = json.loads((again / "compare.json").read_text())
    for name in ("logit_diff", "heads", "layers"):
        assert second[name]["diff"] == first[name]["diff"] and second[name]["p"] == first[name]["p"]
    assert second["patching"] is None and second["circuits"] is None
    assert "L0H0" in r.output  # the summary is printed


def test_a_split_the_task_does_not_have_is_exit_2(tmp_path, two_route):
    root, ckpt, _ = two_route
    r = invoke("compare", "counting", "--split-a", "train", "--model", ckpt, "--out", tmp_path / "o")
    assert r.exit_code == 2 and "has no splits" in r.output
    r = invoke("compare", "opposites", "--split-b", "heldout-nothing", "--model", ckpt, "--out", tmp_path / "o")
    assert r.exit_code == 2 and "heldout-template" in r.output
    r = invoke("compare", root / "upper.jsonl", "--split-a", "train", "--model", ckpt, "--out", tmp_path / "o")
    assert r.exit_code == 2 and not (tmp_path / "o").exists()


def test_a_study_compared_with_itself_is_said_before_the_work(tmp_path, two_route):
    root, ckpt, _ = two_route
    r = invoke("compare", root / "upper.jsonl", "--model", ckpt, "--no-patching", "--circuit", "none",
               "--bootstrap", "100", "--permutations", "100", "--out", tmp_path / "o")
    assert r.exit_code == 0, r.output
    said = r.output.index("side B is side A")
    assert "every difference will be zero" in r.output and said < r.output.index("baseline")
