"""`circuitwise mib --form circuits`: nine circuits per task/model folder at MIB's budgets, each the top
edges of one ranking pruned to input→logits paths; their curve is the scores' curve of that ranking,
the folder passes MIB's rules, a rerun resumes, and bad input is refused before any model loads.
(That MIB's own loader and evaluate_graph read the files to the same numbers: bench/mib_circuits_form.py.)"""

from __future__ import annotations

import json

import pytest
import torch

from circuitwise.circuits import EdgeScores, graph_of
from circuitwise.circuits.interop import node_name, nodes_in_graph, read_graph_file
from circuitwise.circuits.prune import prune_dangling
from circuitwise.circuits.select import top_edges
from circuitwise.evaluation.mib import MIB_BUDGETS, mib_metrics
from circuitwise.evaluation.mib_submission import (
    CIRCUIT_BUDGETS,
    check_layout,
    circuit_file,
    pair_files,
    run_pair,
)
from tests.unit.cli.conftest import invoke, no_model_loads  # noqa: F401 (a fixture, used by name)

NAMES = ["circuit_0.1pct.json", "circuit_0.2pct.json", "circuit_0.5pct.json", "circuit_1pct.json",
         "circuit_2pct.json", "circuit_5pct.json", "circuit_10pct.json", "circuit_20pct.json", "circuit_50pct.json"]


def test_the_budgets_are_mibs_nine_and_the_files_are_named_by_them():
    # MIB's README: one circuit with at most each of 0.1 … 50 % of the edges; its evaluation adds 100 %.
    assert CIRCUIT_BUDGETS == (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5)
    assert MIB_BUDGETS == (*CIRCUIT_BUDGETS, 1.0)
    assert [circuit_file(b) for b in CIRCUIT_BUDGETS] == NAMES == pair_files("circuits")
    assert pair_files("scores") == ["importances.json"]


@pytest.fixture(scope="module")
def pairs(small_model, small_tok, tmp_path_factory):
    out = tmp_path_factory.mktemp("circuits")
    return out, {by: run_pair(small_model, small_tok, method="eap-ig", task="seed", model_name=f"small-{by}",
                              out=out, options={"steps": 3}, form="circuits", by=by)
                 for by in ("abs", "signed")}


def _read(folder):
    files = {}
    for name in NAMES:
        kind, g = read_graph_file(folder / name)
        assert kind == "eap-ig"
        files[name] = g
    return files


@pytest.mark.parametrize("by", ["abs", "signed"])
def test_each_circuit_is_the_rankings_top_edges_pruned_and_within_its_budget(pairs, small_model, by):
    out, results = pairs
    r = results[by]
    folder = out / r.file
    assert sorted(p.name for p in folder.iterdir()) == sorted(NAMES)
    graph = graph_of(small_model)
    files = _read(folder)
    scores = EdgeScores(graph, files[NAMES[0]].scores, "eap-ig")  # every file carries every edge's score
    assert not bool(scores.scores.isnan().any())
    for b, name, taken, n in zip(CIRCUIT_BUDGETS, NAMES, r.edges_taken, r.edges, strict=True):
        assert torch.equal(files[name].scores, scores.scores)
        k = int(b * graph.n_edges)
        want = prune_dangling(graph, top_edges(scores, k, by))
        kept = files[name].in_graph
        assert taken == k and int(kept.sum()) == n <= k  # MIB's rule: at most b·E edges
        assert torch.equal(kept, want)
        assert torch.equal(prune_dangling(graph, kept), kept)  # nothing left dangling for MIB's prune
        data = json.loads((folder / name).read_text())
        # EAP-IG's node rule on the kept edges, so that MIB's prune of a loaded file changes nothing.
        assert [data["nodes"][node_name(s)]["in_graph"] for s in graph.senders] == nodes_in_graph(graph, kept).tolist()
        assert data["cfg"]["d_model"] == small_model.cfg.d_model  # EAP-IG's Graph.from_json needs it
    assert r.edges[-1] > 0 and r.faithfulness is not None and len(r.faithfulness) == len(MIB_BUDGETS)


def test_the_circuits_curve_is_the_scores_curve_of_the_same_ranking(pairs, small_model, small_tok):
    # An independent path: mib_metrics ranks the scores read back from the files and builds its own masks.
    out, results = pairs
    scores = EdgeScores(graph_of(small_model), _read(out / results["abs"].file)[NAMES[0]].scores, "eap-ig")
    mib = mib_metrics(small_model, small_tok, scores)
    for by, curve in (("abs", mib.absolute), ("signed", mib.signed)):
        assert results[by].faithfulness == pytest.approx(curve.faithfulness, abs=1e-9)
    assert results["signed"].cpr == pytest.approx(mib.cpr, abs=1e-9)
    assert results["abs"].cmd == pytest.approx(mib.cmd, abs=1e-9)
    assert results["abs"].faithfulness[-1] == pytest.approx(1.0, abs=1e-9)  # the full model at 100 %


def test_the_layout_checker_takes_nine_circuits_and_catches_one_over_budget(pairs, tmp_path):
    out, results = pairs
    problems = check_layout(out, ["eap-ig"])
    assert [p for p in problems if "at least 2 tasks" not in p] == []
    # A copy whose 0.1 % circuit holds every edge: matched smallest to smallest, some budget is left without one.
    bad = tmp_path / "m" / "seed_small"
    bad.mkdir(parents=True)
    src = out / results["abs"].file
    for name in NAMES:
        (bad / name).write_text((src / name).read_text())
    data = json.loads((bad / NAMES[0]).read_text())
    for e in data["edges"].values():
        e["in_graph"] = True
    (bad / NAMES[0]).write_text(json.dumps(data))
    problems = check_layout(tmp_path, ["m"])
    assert any("seed_small: no circuit left for the" in p for p in problems), problems
    (bad / NAMES[0]).write_text("{}")
    assert any("not an EAP-IG graph file" in p for p in check_layout(tmp_path, ["m"]))
    (bad / NAMES[0]).unlink()
    assert any("holds" in p and "9 circuits" in p for p in check_layout(tmp_path, ["m"]))


@pytest.fixture(scope="module")
def submission(tmp_path_factory):
    out = tmp_path_factory.mktemp("mibc") / "sub"
    args = ["mib", "--task", "opposites", "--task", "antonyms=opposites", "--model", "bundled=bundled",
            "--model", "llama=bundled-llama", "--circuit", "eap", "--n", 6, "--form", "circuits", "--by", "signed",
            "--out", out]
    r = invoke(*args)
    assert r.exit_code == 0, r.output
    return out, args, r.output


def test_the_command_writes_nine_circuits_per_pair_and_the_folder_is_ready(submission):
    out, _, output = submission
    pairs = sorted(p.name for p in (out / "eap").iterdir())
    assert pairs == ["antonyms_bundled", "antonyms_llama", "opposites_bundled", "opposites_llama"]
    for p in pairs:
        assert sorted(f.name for f in (out / "eap" / p).iterdir()) == sorted(NAMES)
    assert check_layout(out, ["eap"]) == [] and "ready for MIB" in output
    board = json.loads((out / "leaderboard.json").read_text())
    assert {(p["form"], p["by"]) for p in board["pairs"]} == {("circuits", "signed")}
    assert "circuits at MIB&#39;s budgets (ranked signed)" in (out / "leaderboard.html").read_text()


def test_a_rerun_resumes_and_redoes_only_a_pair_with_a_missing_circuit(submission, monkeypatch):
    out, args, _ = submission
    import circuitwise.evaluation.mib_submission as sub

    (out / "eap" / "antonyms_llama" / NAMES[3]).unlink()
    real, calls = sub.score_edges, []

    def counting(model, tok, *a, **k):
        calls.append(tok.task.name)
        return real(model, tok, *a, **k)

    monkeypatch.setattr(sub, "score_edges", counting)
    r = invoke(*args)
    assert r.exit_code == 0, r.output
    assert len(calls) == 1 and (out / "eap" / "antonyms_llama" / NAMES[3]).is_file()
    assert check_layout(out, ["eap"]) == []


def test_another_form_in_the_same_folder_needs_force_and_then_replaces_every_pair(submission):
    out, args, _ = submission
    scores_args = [a for a in args if a not in ("--form", "circuits", "--by", "signed")]
    r = invoke(*scores_args)
    assert r.exit_code != 0 and "form: 'circuits' -> None" in r.output and "--force" in r.output, r.output
    # With --force every pair is redone in the other form and the circuits are removed: one form per folder.
    r = invoke(*scores_args, "--force")
    assert r.exit_code == 0, r.output
    for p in (out / "eap").iterdir():
        assert [f.name for f in p.iterdir()] == ["importances.json"]
    board = json.loads((out / "leaderboard.json").read_text())
    assert [p["form"] for p in board["pairs"]] == ["scores"] * 4 and check_layout(out, ["eap"]) == []


@pytest.mark.usefixtures("no_model_loads")
@pytest.mark.parametrize("args,says", [
    (["--form", "edges"], "--form 'edges'"),
    (["--by", "signed"], "--by ranks the edges of the circuits written with --form circuits"),
    (["--form", "circuits", "--by", "size"], "Unknown --by 'size'"),
])
def test_bad_form_options_are_refused_before_any_model_loads(tmp_path, args, says):
    r = invoke("mib", "--task", "opposites", "--model", "bundled=bundled", *args, "--out", tmp_path / "o")
    assert r.exit_code == 2 and says in r.output, r.output
