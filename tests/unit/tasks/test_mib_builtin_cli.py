"""The MIB built-ins from the command line: their cards (`tasks show`), the measured accuracy the cards
report (re-measured here on the bundled models), and `circuitwise mib` taking them under MIB's names."""

from __future__ import annotations

import json

import pytest

from circuitwise.tasks import get_task, tokenize_task
from circuitwise.tasks.builtin._mib import CARDS, CIRCUIT_COMMIT, MIB_COMMIT
from tests.unit.cli.conftest import invoke, no_model_loads  # noqa: F401 (a fixture, used by name)

TASKS = ("mib-ioi", "mib-arithmetic-addition", "mib-arithmetic-subtraction", "mib-mcqa")


@pytest.mark.parametrize("name", TASKS)
def test_show_prints_the_card_before_the_examples(gpt2_dir, name):
    r = invoke("tasks", "show", name, "--n", "2", "--model", gpt2_dir)
    card = CARDS[name]
    assert r.exit_code == 0, r.output
    assert f"MIB task {card.mib_task}" in r.output and f"--task {card.mib_task}={name}" in r.output
    sizes = ", ".join(f"{s} {n:,}" for s, n in card.counts.items())
    assert f"examples: {sizes}" in r.output and f"{card.counterfactuals[0]} (default)" in r.output
    assert MIB_COMMIT[:12] in r.output and CIRCUIT_COMMIT[:12] in r.output
    assert "accuracy on the bundled models" in r.output and r.output.index("MIB task") < r.output.index("#0")


@pytest.mark.usefixtures("no_model_loads")
def test_the_list_has_the_builtins_and_points_to_arcs_file():
    r = invoke("tasks")
    assert r.exit_code == 0 and all(name in r.output for name in TASKS)
    assert "arc-easy and arc-challenge come from a file: circuitwise tasks show arc-easy" in r.output


@pytest.mark.usefixtures("no_model_loads")
def test_show_arc_says_how_to_get_the_file_and_import_it():
    r = invoke("tasks", "show", "arc-challenge")
    assert r.exit_code != 0
    assert "load_dataset('mib-bench/arc_challenge', split='test').to_json('arc_challenge_test.jsonl')" in r.output
    assert "circuitwise tasks import arc_challenge_test.jsonl arc-challenge.jsonl --mib arc-challenge" in r.output


@pytest.mark.slow
def test_the_cards_accuracy_is_what_the_bundled_models_score():
    from circuitwise.attribution.baseline import baseline
    from circuitwise.errors import TaskError
    from circuitwise.models.loading import load_model

    models = {}
    get_task("mib-ioi", n=1)  # the cards register with their tasks
    assert set(CARDS) == set(TASKS)
    for name, card in CARDS.items():
        for acc in card.accuracy:
            model = models.get(acc.model) or models.setdefault(acc.model, load_model(acc.model))
            task = get_task(name, split=acc.split)
            assert len(task) == acc.n
            try:
                tok, _ = tokenize_task(model, task, need_corrupted=True, on_invalid="drop")
            except TaskError:  # none usable: the card must say so
                assert acc.usable == 0 and acc.pairwise is None, (name, acc)
                continue
            bl = baseline(model, tok)
            top1 = float((bl.correct_rank == 0).float().mean())
            assert (len(tok), bl.accuracy, top1) == (acc.usable, pytest.approx(acc.pairwise, abs=1e-6),
                                                     pytest.approx(acc.top1, abs=1e-6)), (name, acc)


@pytest.mark.usefixtures("no_model_loads")
def test_mib_takes_the_builtins_under_mibs_names_before_any_model_loads(tmp_path):
    from circuitwise.cli.mib import _pairs, _task_source

    pairs = _pairs(["mib-arithmetic-addition,mib-ioi", "mcqa=mib-mcqa", "arc-easy=rows.jsonl"], "task")
    assert pairs == [("arithmetic-addition", "mib-arithmetic-addition"), ("ioi", "mib-ioi"), ("mcqa", "mib-mcqa"),
                     ("arc-easy", "rows.jsonl")]
    assert _task_source("arithmetic-addition", "mib-arithmetic-addition") == "mib-arithmetic-addition"
    assert _task_source("mcqa", None) == "mib-mcqa"  # MIB's name alone: its offline generator (with a note)
    r = invoke("mib", "--task", "arc-easy", "--model", "gpt2", "--out", tmp_path / "o")
    assert r.exit_code == 2 and "load_dataset('mib-bench/arc_easy'" in r.output
    r = invoke("mib", "--task", "mib-ioi", "--task", "ioi=x.jsonl", "--model", "gpt2", "--out", tmp_path / "o")
    assert r.exit_code == 2 and "twice" in r.output


def test_mib_runs_a_builtin_into_mibs_folder(tmp_path):
    out = tmp_path / "sub"
    r = invoke("mib", "--task", "mib-mcqa", "--model", "bundled=bundled", "--circuit", "eap", "--n", 6, "--out", out)
    assert r.exit_code == 0, r.output
    graph = json.loads((out / "eap" / "mcqa_bundled" / "importances.json").read_text())
    assert set(graph) == {"cfg", "nodes", "edges"}
    board = json.loads((out / "leaderboard.json").read_text())
    assert "mcqa_bundled" in board["methods"]["eap"]
