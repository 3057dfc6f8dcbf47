"""`circuitwise mib`: MIB's submission layout for every task × model × method, its numbers equal to
evaluating each written file, resumable per pair, and bad input refused before any model loads."""

from __future__ import annotations

import json

import pytest

from circuitwise.evaluation.mib_submission import check_layout
from tests.unit.cli.conftest import invoke, no_model_loads  # noqa: F401 (a fixture, used by name)
from tests.unit.tasks.test_mib_import import IOI


@pytest.fixture(scope="module")
def submission(tmp_path_factory):
    root = tmp_path_factory.mktemp("mib")
    rows = root / "ioi_rows.jsonl"
    rows.write_text("".join(json.dumps(IOI) + "\n" for _ in range(6)))
    out = root / "sub"
    args = ["mib", "--task", f"ioi={rows}", "--task", "opposites", "--model", "bundled=bundled",
            "--model", "llama=bundled-llama", "--circuit", "eap", "--n", 6, "--out", out]
    r = invoke(*args)
    assert r.exit_code == 0, r.output
    return out, args, r.output


def test_the_folder_is_mibs_layout_and_passes_its_rules(submission):
    out, _, output = submission
    pairs = sorted(p.name for p in (out / "eap").iterdir())
    assert pairs == ["ioi_bundled", "ioi_llama", "opposites_bundled", "opposites_llama"]
    for p in pairs:
        assert [f.name for f in (out / "eap" / p).iterdir()] == ["importances.json"]
        graph = json.loads((out / "eap" / p / "importances.json").read_text())
        assert set(graph) == {"cfg", "nodes", "edges"} and all(e["in_graph"] for e in graph["edges"].values())
    assert check_layout(out, ["eap"]) == [] and "ready for MIB" in output


def test_each_pairs_numbers_are_those_of_its_written_file(submission):
    out, _, _ = submission
    board = json.loads((out / "leaderboard.json").read_text())
    cell = board["methods"]["eap"]["opposites_bundled"]
    r = invoke("evaluate", out / "eap" / "opposites_bundled" / "importances.json", "opposites", "--model", "bundled",
               "--n", 6, "--random-samples", 0, "--shortlist", 0, "--json")
    assert r.exit_code == 0, r.output
    mib = json.loads(r.output[r.output.index("{"):])["mib"]
    assert (mib["cpr"], mib["cmd"]) == pytest.approx((cell["cpr"], cell["cmd"]), abs=1e-9)
    assert "opposites_bundled" in (out / "leaderboard.html").read_text()


def test_a_rerun_resumes_with_no_work(submission, monkeypatch):
    out, args, _ = submission
    before = (out / "leaderboard.json").read_text()
    import circuitwise.evaluation.mib_submission as sub

    def refuse(*_a, **_k):
        raise AssertionError("a finished pair was scored again")

    monkeypatch.setattr(sub, "score_edges", refuse)
    r = invoke(*args)
    assert r.exit_code == 0, r.output
    assert (out / "leaderboard.json").read_text() == before


def test_the_rules_catch_a_stray_file_a_bad_name_and_too_few_tasks(tmp_path):
    pair = tmp_path / "m" / "ioi_gpt2"
    pair.mkdir(parents=True)
    (pair / "importances.json").write_text("{}")
    (pair / "notes.txt").write_text("x")
    (tmp_path / "m" / "ioi-gpt2").mkdir()
    problems = check_layout(tmp_path, ["m"])
    assert any("notes.txt" in p for p in problems) and any("ioi-gpt2 is not named" in p for p in problems)
    assert any("at least 2 tasks and 2 models" in p for p in problems)


@pytest.mark.usefixtures("no_model_loads")
@pytest.mark.parametrize("args,says", [
    (["--task", "arc-easy", "--model", "gpt2", "--circuit", "eap"], "needs its data"),
    (["--task", "arithmetic", "--model", "gpt2"], "arithmetic-addition (generated offline: --task mib-arithmetic"),
    (["--task", "ioi", "--model", "gpt2", "--circuit", "path-patching"], "Unknown discovery method"),
    (["--task", "io_i", "--model", "gpt2"], "letters, digits"),
    (["--task", "ioi", "--task", "ioi", "--model", "gpt2"], "twice"),
    (["--task", "ioi", "--model", "gpt2", "--metric", "accuracy"], "logit_diff, prob"),
])
def test_bad_input_is_refused_before_any_model_loads(tmp_path, args, says):
    r = invoke("mib", *args, "--out", tmp_path / "o")
    assert r.exit_code == 2 and says in r.output, r.output


def test_a_mib_task_named_alone_is_mibs_generated_task(tmp_path, monkeypatch):
    """--task mcqa with no data is MIB's mcqa generated offline (mib-mcqa), said in a note; never a same-named
    task of circuitwise's own (circuitwise's ioi is not MIB's templates)."""
    seen = []

    class Loaded(Exception):
        pass

    def stop(study, **_k):
        seen.append(study.config.task)
        raise Loaded

    from typer.testing import CliRunner

    from circuitwise.cli import app

    monkeypatch.setattr("circuitwise.pipeline.load_study", stop)
    monkeypatch.setattr("circuitwise.models.loading.check_loadable", lambda name: None)  # gpt2 with no Hub here
    r = CliRunner().invoke(app, ["mib", "--task", "ioi", "--model", "gpt2", "--out", str(tmp_path / "o")])
    assert isinstance(r.exception, Loaded) and seen == ["mib-ioi"], r.output
    assert "MIB's ioi generated offline (mib-ioi)" in " ".join(r.output.split())


def test_a_pair_with_no_usable_example_is_skipped_and_the_rest_is_written(tmp_path):
    """The bundled GPT-2's tokenizer splits every arithmetic answer: that pair is skipped with its reason and the
    others are scored and written (a valid command never fails part-way)."""
    out = tmp_path / "sub"
    r = invoke("mib", "--task", "opposites,arithmetic-addition", "--model", "bundled", "--circuit", "eap", "--n", 6,
               "--out", out)
    text = " ".join(r.output.split())
    assert r.exit_code == 0, r.output
    assert "arithmetic-addition × bundled skipped: None of the" in text
    assert "not in the submission: arithmetic-addition_bundled" in text
    assert (out / "eap" / "opposites_bundled" / "importances.json").is_file()
    assert not (out / "eap" / "arithmetic-addition_bundled").exists()
    board = json.loads((out / "leaderboard.json").read_text())
    assert board["columns"] == ["opposites_bundled"]


def test_a_submission_with_no_usable_pair_is_an_error_not_an_empty_folder(tmp_path):
    """GPT-2's BPE merges the space into MIB arithmetic's answers, so the bundled model has no usable example:
    with no other pair there is nothing to submit, which is said as an error (exit 2) and leaves no folder."""
    out = tmp_path / "o"
    r = invoke("mib", "--task", "mib-arithmetic-addition", "--model", "bundled", "--n", "8", "--out", out)
    assert r.exit_code == 2 and "nothing to submit" in " ".join(r.output.split()), r.output
    assert not out.exists()


def test_a_resume_on_another_checkpoint_under_the_same_name_is_refused_naming_both(tmp_path):
    # Pairs are kept by (method, task, model name): a checkpoint rewritten at the same path had its
    # finished pairs reused beside pairs scored on the new weights, one leaderboard of two models.
    import shutil

    from tests.helpers import make_gpt2_checkpoint

    ckpt, out = tmp_path / "ckpt", tmp_path / "sub"
    make_gpt2_checkpoint(ckpt, n_layer=1, n_head=2, n_embd=32, seed=1)
    base = ["mib", "--model", f"m={ckpt}", "--circuit", "eap", "--n", 6, "--out", out]
    assert invoke(*base, "--task", "opposites").exit_code == 0
    first = json.loads((out / "leaderboard.json").read_text())
    assert first["pairs"][0]["fingerprint"]["checkpoint_hash"]  # each pair records its model
    shutil.rmtree(ckpt)
    make_gpt2_checkpoint(ckpt, n_layer=1, n_head=2, n_embd=32, seed=2)
    again = [*base, "--task", "opposites", "--task", "seed=opposites-seed"]  # a new pair loads the model
    r = invoke(*again)
    assert r.exit_code == 3 and "opposites_m" in r.output and "not on the loaded model" in r.output, r.output
    assert "checkpoint weights" in r.output and "--force" in r.output
    assert json.loads((out / "leaderboard.json").read_text()) == first  # nothing lost
    r = invoke(*again, "--force")
    assert r.exit_code == 0, r.output
    pairs = json.loads((out / "leaderboard.json").read_text())["pairs"]
    assert {p["task"] for p in pairs} == {"opposites", "seed"}
    # Every pair scored on the new weights, the old one again too.
    assert len({p["fingerprint"]["checkpoint_hash"] for p in pairs}) == 1
    assert pairs[0]["fingerprint"] != first["pairs"][0]["fingerprint"]
