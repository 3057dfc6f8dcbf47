"""`circuitwise compare` on the command line: errors before work (exit 2), re-running from config.yaml."""

from __future__ import annotations

import json

import pytest
import torch
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


def test_circuits_at_node_level_are_compared_with_node_sets_for_their_random_baseline(tmp_path, two_route):
    """--circuit-level node (as `run` and `circuit` have it): each side's circuit is its top heads and MLPs kept
    as their edges, compare.json and the page name the nodes, and each cross-faithfulness baseline is random
    node sets of the circuit's size (as `circuit` draws them), not random edge sets."""
    import circuitwise as cw
    from circuitwise.circuits.node_select import node_edge_rows, random_node_rows
    from circuitwise.compare.circuits import evaluate_on
    from circuitwise.evaluation.faithfulness import faithfulness_of_masks

    root, ckpt, model = two_route
    out = tmp_path / "node"
    r = invoke("compare", root / "upper.jsonl", root / "lower.jsonl", "--model", ckpt, "--pairing", "paired",
               "--no-patching", "--level", "node", "--random-samples", "4", "--out", out)
    assert r.exit_code == 0, r.output
    res = json.loads((out / "compare.json").read_text())
    for side in ("a", "b"):
        saved = json.loads((out / f"circuit_{side}.json").read_text())
        assert saved["selection"]["level"] == "node"
        assert res["circuits"][side]["nodes"] == saved["selection"]["nodes"] and saved["selection"]["nodes"]
    assert yaml.safe_load((out / "config.yaml").read_text())["circuit_level"] == "node"
    said = " ".join(r.output.split())
    first = res["circuits"]["a"]["nodes"]
    assert f"has {len(first)} nodes — {first[0]}" in said and "random node sets of its size" in said
    assert "random node sets of the same size" in (out / "compare.html").read_text()
    # The baseline, recomputed: evaluate_on of a node circuit draws node sets from its seeded generator.
    tok, _ = cw.tokenize_task(model, cw.get_task(str(root / "upper.jsonl")), need_corrupted=True)
    found = cw.find_circuit(model, tok, method="eap-ig", level="node")
    cell = evaluate_on(model, tok, "a", {"a": found}, samples=4, seed=0, batch_size=None)[0]
    k = len(found.circuit.selection["nodes"])
    rows = random_node_rows(found.circuit.graph, k, 4, torch.Generator().manual_seed(0))
    want = faithfulness_of_masks(model, tok, node_edge_rows(found.circuit.graph, rows, prune=True))
    # The same node sets (edge sets drawn instead would differ by far more); stacked otherwise, so within rounding.
    assert cell.random_faithfulness == pytest.approx([x.faithfulness for x in want], abs=1e-5)
