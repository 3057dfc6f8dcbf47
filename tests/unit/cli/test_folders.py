"""Output folders (issue 22, item 5): a command never writes into another command's folder, never
replaces a complete result silently (refused before any work unless --force), resumes its own
unfinished one, leaves no lock behind, and a bad --out is exit 3 in every command."""

from __future__ import annotations

import json

import pytest

from circuitwise.errors import ModelLoadError, OutputError
from circuitwise.runfolder import MARKER, RunFolder, read_marker
from tests.unit.cli.conftest import invoke

# Every command that writes a folder, with its arguments up to --out.
COMMANDS = {
    "run": ["run", "opposites"],
    "circuit": ["circuit", "opposites"],
    "patch": ["patch", "opposites"],
    "benchmark": ["benchmark", "opposites"],
    "compare": ["compare", "opposites"],
}
RESULT_FILE = {"run": "results.json", "circuit": "circuit.json", "patch": "patching.json",
               "benchmark": "benchmark.json", "compare": "compare.json"}


def _folder_of(out, command, settings=None, marked=True):
    """A complete folder as `command` leaves it (its result file, and its marker unless an older one)."""
    out.mkdir(parents=True)
    (out / RESULT_FILE[command]).write_text('{"precious": true}')
    if marked:
        (out / MARKER).write_text(json.dumps({"command": command, "settings": settings or {}, "complete": True}))
    return {p.name: p.read_bytes() for p in out.iterdir()}


def _files(out):
    return {p.name: p.read_bytes() for p in out.iterdir()}


@pytest.mark.parametrize("command", sorted(COMMANDS))
@pytest.mark.parametrize("marked", [True, False], ids=["marked", "older-unmarked"])
def test_another_commands_folder_is_refused_before_any_work(tmp_path, no_model_loads, command, marked):
    other = "circuit" if command == "run" else "run"
    out = tmp_path / "o"
    before = _folder_of(out, other, marked=marked)
    r = invoke(*COMMANDS[command], "--out", out)
    assert r.exit_code == 3, r.output
    assert f"circuitwise {other}" in r.output and "another --out" in r.output, r.output
    assert _files(out) == before and sorted(p.name for p in tmp_path.iterdir()) == ["o"]  # no lock, no staging


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_a_complete_result_of_other_settings_needs_force(tmp_path, no_model_loads, command):
    out = tmp_path / "o"
    before = _folder_of(out, command, settings={"task": "something-else"})
    r = invoke(*COMMANDS[command], "--out", out)
    assert r.exit_code == 3 and "--force" in r.output and "other settings" in r.output, r.output
    assert _files(out) == before
    # With --force the folder is taken: the command goes on to load the model (refused here by the guard),
    # and the failed command still leaves the complete result untouched and no lock behind.
    with pytest.raises(AssertionError, match="a model was loaded"):
        invoke(*COMMANDS[command], "--out", out, "--force")
    assert _files(out) == before and not (tmp_path / ".o.lock").exists()


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_a_folder_without_recorded_settings_needs_force(tmp_path, no_model_loads, command):
    out = tmp_path / "o"
    before = _folder_of(out, command, marked=False)
    r = invoke(*COMMANDS[command], "--out", out)
    assert r.exit_code == 3 and "did not record its settings" in r.output and "--force" in r.output, r.output
    assert _files(out) == before


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_a_refused_model_load_leaves_no_lock(tmp_path, monkeypatch, command):
    import sys

    import circuitwise.compare.sides  # noqa: F401
    import circuitwise.pipeline  # noqa: F401

    def offline(*_a, **_k):
        raise ModelLoadError("gpt2 cannot be reached (offline).")

    for name, module in list(sys.modules.items()):
        if name.startswith("circuitwise") and callable(getattr(module, "load_model", None)):
            monkeypatch.setattr(module, "load_model", offline)
        if name.startswith("circuitwise") and callable(getattr(module, "check_loadable", None)):
            monkeypatch.setattr(module, "check_loadable", lambda _name: None)  # compare's own check comes first
    r = invoke(*COMMANDS[command], "--model", "gpt2", "--out", tmp_path / "o")
    assert r.exit_code == 2 and "offline" in r.output, r.output
    assert [p.name for p in tmp_path.iterdir() if "lock" in p.name] == []


@pytest.mark.parametrize("command", sorted(COMMANDS))
@pytest.mark.parametrize("way", ["a file", "under a file", "unwritable"])
def test_a_bad_out_is_exit_3_in_every_command(tmp_path, no_model_loads, command, way):
    f = tmp_path / "f"
    f.write_text("precious")
    out = {"a file": f, "under a file": f / "sub", "unwritable": "/proc/self/circuitwise-out"}[way]
    r = invoke(*COMMANDS[command], "--out", out)
    assert r.exit_code == 3 and "error: " in r.output and "--out" in r.output, r.output
    assert f.read_text() == "precious"


# ---- the folder itself ---------------------------------------------------------------------------

def _interrupted(out, command, settings):
    try:
        with RunFolder(out, command=command, settings=settings) as rf:
            (rf.path / ".patching").mkdir()
            (rf.path / ".patching" / "done.pt").write_text("work")
            raise ValueError("stopped part-way")
    except ValueError:
        pass


def test_an_unfinished_folder_resumes_and_is_known_as_its_commands(tmp_path):
    out = tmp_path / "o"
    _interrupted(out, "run", {"n": 10})
    assert read_marker(tmp_path / ".o.partial") == {"command": "run", "settings": {"n": 10}, "complete": False}
    RunFolder(out, command="run", settings={"n": 10}).check()  # the same command resumes without --force
    with pytest.raises(OutputError, match=r"unfinished work .* `circuitwise run`"):
        RunFolder(out, command="patch", settings={"n": 10}).check()
    with RunFolder(out, command="run", settings={"n": 10}) as rf:
        assert (rf.path / ".patching" / "done.pt").read_text() == "work"  # kept for the resumed run
        rf.commit()
    assert read_marker(out) == {"command": "run", "settings": {"n": 10}, "complete": True}


def test_the_same_settings_rerun_without_force_and_other_settings_say_what_differs(tmp_path):
    out = tmp_path / "o"
    with RunFolder(out, command="patch", settings={"metric": "logit_diff", "n": 10}) as rf:
        rf.write_text("patching.json", "{}")
        rf.commit()
    RunFolder(out, command="patch", settings={"metric": "logit_diff", "n": 10}).check()
    with pytest.raises(OutputError, match=r"metric: 'logit_diff' -> 'prob'.*--force") as info:
        RunFolder(out, command="patch", settings={"metric": "prob", "n": 10}).check()
    assert info.value.exit_code == 3
    RunFolder(out, command="patch", settings={"metric": "prob", "n": 10}, force=True).check()


def test_evaluate_adds_to_a_circuit_folder_only_for_its_own_circuit(tmp_path):
    out = tmp_path / "c"
    with RunFolder(out, command="circuit", settings={"method": "eap"}) as rf:
        rf.write_text("circuit.json", "{}")
        rf.commit()
    with pytest.raises(OutputError, match="circuitwise circuit"):
        RunFolder(out, command="evaluate", settings={"x": 1}).check()
    with RunFolder(out).for_command("evaluate", {"x": 1}, joins={"circuit"}) as rf:
        rf.write_text("evaluation.json", "{}")
        rf.commit()
    # The folder stays the circuit's, with its settings: `circuit` of the same settings still re-runs there.
    assert read_marker(out) == {"command": "circuit", "settings": {"method": "eap"}, "complete": True}
    RunFolder(out, command="circuit", settings={"method": "eap"}).check()


def test_an_unfinished_folder_of_other_settings_is_refused_naming_both_and_force_discards_it(tmp_path):
    out = tmp_path / "o"
    _interrupted(out, "run", {"model": "bundled", "n": 10})
    with pytest.raises(OutputError, match=r"unfinished work .*model: 'bundled' -> 'gpt2'.*--force") as info:
        RunFolder(out, command="run", settings={"model": "gpt2", "n": 10}).check()
    assert info.value.exit_code == 3
    assert (tmp_path / ".o.partial" / ".patching" / "done.pt").exists()  # refused: nothing lost
    with RunFolder(out, command="run", settings={"model": "gpt2", "n": 10}, force=True) as rf:
        assert not (rf.path / ".patching").exists()  # the other model's checkpoints are gone
        rf.commit()
    assert read_marker(out) == {"command": "run", "settings": {"model": "gpt2", "n": 10}, "complete": True}


def test_a_staged_commands_own_folder_with_a_subfolder_of_someone_elses_is_still_refused(tmp_path):
    out = tmp_path / "o"
    _folder_of(out, "run", settings={"n": 1})
    (out / "my-work").mkdir()
    with pytest.raises(OutputError, match="did not write"):
        RunFolder(out, command="run", settings={"n": 1}).check()
    RunFolder(out, command="run", settings={"n": 1}, in_place=True).check()  # `mib` writes its folders there
