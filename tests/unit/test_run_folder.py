"""Output folders are always whole: staged, swapped in when complete, locked, never mixed."""

from __future__ import annotations

import errno
import json
import os

import pytest
from typer.testing import CliRunner

from circuitwise.cli import _register, app
from circuitwise.errors import CircuitwiseError, FolderBusyError, Interrupted, OutputError
from circuitwise.runfolder import CHECKPOINTS, RunFolder, atomic_write_json

_register()
runner = CliRunner()


def _files(folder):
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}


def _checkpoint(rf):
    """A finished sweep's checkpoint in the staged folder: what a re-run resumes from."""
    (rf.path / CHECKPOINTS).mkdir()
    (rf.path / CHECKPOINTS / "heads.pt").write_bytes(b"done")


def _complete(out, text="old"):
    with RunFolder(out) as rf:
        rf.write_text("results.json", json.dumps({"complete": True, "v": text}))
        rf.write_text("report.html", text)
        rf.commit()
    return _files(out)


def test_commit_replaces_the_folder_whole_and_keeps_other_commands_files(tmp_path):
    out = tmp_path / "run"
    _complete(out)
    (out / "patching.json").write_text("{}")
    with RunFolder(out, replaces={"results.json", "report.html"}) as rf:
        rf.write_text("results.json", "new")
        assert not (rf.path / "report.html").exists()  # what this command writes is never carried over
        rf.commit()
    assert _files(out) == {"results.json": b"new", "patching.json": b"{}"}
    assert not (tmp_path / ".run.partial").exists()


def test_a_failure_leaves_the_previous_run_and_says_where_the_partial_state_is(tmp_path):
    out = tmp_path / "run"
    before = _complete(out)
    with pytest.raises(RuntimeError) as info:
        with RunFolder(out) as rf:
            _checkpoint(rf)
            rf.write_text("results.json", "half")
            raise RuntimeError("boom")
    assert _files(out) == before
    assert any(".run.partial" in n and "resume" in n for n in info.value.__notes__)


def test_a_failure_before_any_checkpoint_leaves_no_partial_folder(tmp_path):
    # A re-run resumes from checkpoints only: a staged folder without one (a refusal after the model
    # loaded, e.g. patch --align token on prompts of several lengths) was left holding its marker, and the
    # message promised "Finished work is kept in .run.partial; re-run the same command to resume from it".
    out = tmp_path / "run"
    with pytest.raises(RuntimeError) as info:
        with RunFolder(out, command="patch", settings={"n": 1}) as rf:
            rf.write_text("results.json", "half")
            raise RuntimeError("refused")
    assert not (tmp_path / ".run.partial").exists() and not out.exists()
    assert info.value.__notes__ == [f"Nothing was written to {out}."]
    before = _complete(out)
    with pytest.raises(RuntimeError) as info:
        with RunFolder(out) as rf:
            assert rf.path.is_dir()
            raise RuntimeError("refused")
    assert _files(out) == before and not (tmp_path / ".run.partial").exists()
    assert info.value.__notes__ == [f"The previous complete result in {out} is untouched."]


def test_interrupt_becomes_a_clear_message(tmp_path):
    out = tmp_path / "run"
    before = _complete(out)
    with pytest.raises(Interrupted, match="untouched.*kept in.*re-run the same command") as info:
        with RunFolder(out) as rf:
            _checkpoint(rf)
            rf.write_text("results.json", "half")
            raise KeyboardInterrupt
    assert info.value.exit_code == 130 and _files(out) == before


def test_full_disk_is_an_output_error_and_leaves_no_temp_file(tmp_path, monkeypatch):
    out = tmp_path / "run"
    before = _complete(out)
    real = os.replace

    def full(src, dst, *a, **k):
        if str(dst).endswith("report.html"):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(src, dst, *a, **k)

    monkeypatch.setattr(os, "replace", full)
    with pytest.raises(OutputError, match="full") as info:
        with RunFolder(out) as rf:
            rf.write_text("results.json", "new")
            rf.write_text("report.html", "new")
    assert info.value.exit_code == 3
    assert _files(out) == before
    partial = tmp_path / ".run.partial"  # removed whole where it held no checkpoint
    assert not partial.exists() or not [p for p in partial.iterdir() if p.name.endswith(".tmp")]


def test_a_second_writer_is_refused(tmp_path):
    out = tmp_path / "run"
    with RunFolder(out):
        with pytest.raises(FolderBusyError, match=f"pid {os.getpid()}.*another --out"):
            with RunFolder(out):
                pass
    with RunFolder(out):  # released
        pass


def test_a_folder_of_other_work_is_refused_before_any_work(tmp_path):
    (tmp_path / "src").mkdir()
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(OutputError, match="notes.txt, src"):
        RunFolder(tmp_path).check()
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_a_few_files_of_the_user_are_carried_into_the_new_version(tmp_path):
    out = tmp_path / "run"
    _complete(out)
    (out / "notes.txt").write_text("mine")
    with RunFolder(out, replaces={"results.json", "report.html"}) as rf:
        rf.write_text("results.json", "new")
        rf.commit()
    assert (out / "notes.txt").read_text() == "mine"


def test_temp_names_are_unique_and_json_is_strict(tmp_path):
    atomic_write_json(tmp_path / "a.json", {"x": float("nan"), "y": [float("inf")]})
    assert json.loads((tmp_path / "a.json").read_text()) == {"x": None, "y": [None]}
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]


# ---- through the CLI ---------------------------------------------------------------------------

class Outcome:
    """What `main()` would show: the exit status and the message (with its notes)."""

    def __init__(self, result):
        e = result.exception
        self.clean = e is None or isinstance(e, (SystemExit, CircuitwiseError))
        self.exit_code = e.exit_code if isinstance(e, CircuitwiseError) else result.exit_code
        notes = "\n".join(getattr(e, "__notes__", ())) if isinstance(e, CircuitwiseError) else ""
        self.output = result.output + (f"error: {e}\n{notes}" if isinstance(e, CircuitwiseError) else "")


def invoke(*args):
    out = Outcome(runner.invoke(app, [str(a) for a in args]))
    assert out.clean, out.output
    return out


def _run(out, model, *extra):
    return invoke("run", "opposites-seed", "--model", model, "--out", out, "--patch", "heads", "--circuit", "none",
                  *extra)


@pytest.fixture
def good_run(tmp_path, tiny_ckpt):
    out = tmp_path / "run"
    r = _run(out, tiny_ckpt)
    assert r.exit_code == 0, r.output
    return out, _files(out)


def test_run_failing_part_way_keeps_the_previous_run(good_run, tiny_ckpt, monkeypatch):
    out, before = good_run
    import circuitwise.pipeline as pipeline

    def broken(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device", str(out / "x"))

    monkeypatch.setattr(pipeline, "activation_sweeps", broken)
    r = _run(out, tiny_ckpt, "--top-k", "2", "--force")  # other settings: replacing the run needs --force
    assert r.exit_code == 3 and "full" in r.output and "untouched" in r.output, r.output
    assert _files(out) == before


def test_run_into_a_busy_folder_is_refused(good_run, tiny_ckpt):
    out, before = good_run
    with RunFolder(out):
        r = _run(out, tiny_ckpt)
    assert r.exit_code == 4 and "Another circuitwise command" in r.output
    assert _files(out) == before


@pytest.mark.parametrize("where", ["/proc/self", "/proc/self/circuitwise-out", "/proc/version/x"])
def test_unusable_out_paths_are_clear_errors(tiny_ckpt, where):
    r = _run(where, tiny_ckpt)
    assert r.exit_code == 3 and "error: " in r.output, r.output  # 3: a result cannot be written there


def test_patch_keeps_every_sweep_already_computed(tmp_path, tiny_ckpt):
    out = tmp_path / "p"
    args = ["patch", "opposites-seed", "--model", tiny_ckpt, "--out", out]
    assert invoke(*args, "--what", "heads").exit_code == 0
    assert invoke(*args, "--what", "head_q").exit_code == 0
    assert set(json.loads((out / "patching.json").read_text())["sweeps"]) == {"heads", "head_q"}


def test_tasks_export_on_a_full_disk_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "t.jsonl"
    path.write_text("old\n")

    def full(src, dst, *a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "replace", full)
    r = invoke("tasks", "export", "opposites-seed", path)
    assert r.exit_code == 3 and "full" in r.output
    assert path.read_text() == "old\n" and [p.name for p in tmp_path.iterdir()] == ["t.jsonl"]


def test_circuit_into_a_busy_folder_is_refused_before_loading(tmp_path):
    out = tmp_path / "c"
    with RunFolder(out):
        r = invoke("circuit", "opposites-seed", "--model", tmp_path / "no-such-model", "--out", out)
    assert r.exit_code == 4 and "Another circuitwise command" in r.output


def test_the_current_folder_is_refused_as_out(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(OutputError, match="current folder"):
        RunFolder(".").check()
    with pytest.raises(OutputError, match="current folder"):
        RunFolder(tmp_path.parent).check()
    RunFolder("sub").check()


def test_the_swap_without_renameat2_is_whole_too(tmp_path, monkeypatch):
    from circuitwise import runfolder

    monkeypatch.setattr(runfolder, "_exchange", lambda a, b: False)
    out = tmp_path / "run"
    _complete(out)
    after = _complete(out, "new")
    assert after["report.html"] == b"new" and sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # no lock file left


def test_a_damaged_checkpoint_is_reported_by_run(good_run, tiny_ckpt):
    out, before = good_run
    for p in list((out / ".patching").rglob("*.safetensors"))[:2]:
        data = bytearray(p.read_bytes())
        data[-3] ^= 0x40
        p.write_bytes(bytes(data))
    r = _run(out, tiny_ckpt)
    assert r.exit_code == 0, r.output
    res = json.loads((out / "results.json").read_text())
    assert len(res["warnings"]) == 2 and "checksum does not match" in res["warnings"][0]
    assert res["patching"]["heads"] == json.loads(before["results.json"])["patching"]["heads"]
    assert "Warnings while running" in (out / "report.html").read_text()


def test_an_in_place_folder_says_truly_what_a_failure_left(tmp_path):
    """A command that writes in place (mib) and fails: a folder it made and wrote nothing in but its marker is
    removed ("Nothing was written"); a folder holding finished work keeps it and says so (never a "previous
    complete result" that was not there)."""
    out = tmp_path / "sub"
    with pytest.raises(RuntimeError) as e:
        with RunFolder(out, command="mib", settings={"n": 1}, in_place=True) as f:
            f.mark_in_place(complete=False)
            raise RuntimeError("model too large")
    assert not out.exists() and f"Nothing was written to {out}." in e.value.__notes__[0]
    out.mkdir()  # an empty folder the user made stays, empty
    with pytest.raises(RuntimeError) as e:
        with RunFolder(out, command="mib", settings={"n": 1}, in_place=True) as f:
            f.mark_in_place(complete=False)
            raise RuntimeError("model too large")
    assert out.is_dir() and not any(out.iterdir()) and "Nothing was written" in e.value.__notes__[0]
    with RunFolder(out, command="mib", settings={"n": 1}, in_place=True) as f:
        f.mark_in_place(complete=False)
        (out / "pair.json").write_text("{}")
    with pytest.raises(RuntimeError) as e:
        with RunFolder(out, command="mib", settings={"n": 1}, in_place=True) as f:
            f.mark_in_place(complete=False)
            raise RuntimeError("later failure")
    assert (out / "pair.json").read_text() == "{}" and "is kept; re-run the same command" in e.value.__notes__[0]


@pytest.mark.parametrize("command, result", [
    (["run", "opposites-seed", "--patch", "none", "--circuit", "none"], "results.json"),
    (["circuit", "opposites-seed", "--circuit", "eap", "--random-samples", "0", "--shortlist", "0"], "circuit.json"),
    (["compare", "opposites-seed", "--model-b", "bundled", "--no-patching", "--circuit", "none", "--bootstrap", "100",
      "--permutations", "100"], "compare.json"),
])
def test_a_folder_of_another_checkpoint_under_the_same_name_is_refused_naming_both(tmp_path, command, result):
    # The folder's settings name the model by its path: a checkpoint rewritten there passed them, and the
    # re-run replaced the other model's complete result without a word.
    import shutil

    from tests.helpers import make_gpt2_checkpoint

    ckpt, out = tmp_path / "ckpt", tmp_path / "o"
    args = [*command, "--model", ckpt, "--out", out]
    make_gpt2_checkpoint(ckpt, n_layer=1, n_head=2, n_embd=32, seed=1)
    assert invoke(*args).exit_code == 0
    before = _files(out)
    shutil.rmtree(ckpt)
    make_gpt2_checkpoint(ckpt, n_layer=1, n_head=2, n_embd=32, seed=2)
    r = invoke(*args)
    assert r.exit_code == 3 and f"computed on model {str(ckpt)!r}, not on the loaded model" in r.output, r.output
    assert "checkpoint weights" in r.output and "--force" in r.output and "untouched" in r.output
    assert _files(out) == before and not (tmp_path / ".o.partial").exists()
    r = invoke(*args, "--force")
    assert r.exit_code == 0, r.output
    assert _files(out)[result] != before[result]


def test_a_rerun_says_it_picks_up_the_interrupted_runs_parts_and_a_fresh_one_says_nothing(tmp_path):
    out = tmp_path / "run"
    with RunFolder(out, command="run", settings={"n": 1}) as rf:
        assert rf.resumed == 0 and rf.resume_note() is None  # nothing interrupted before it
    with pytest.raises(Interrupted):
        with RunFolder(out, command="run", settings={"n": 1}) as rf:
            (rf.path / CHECKPOINTS / "key").mkdir(parents=True)
            for name in ("e0-base", "e0-l000", "e0-l001"):
                (rf.path / CHECKPOINTS / "key" / f"{name}.safetensors").write_bytes(b"part")
            (rf.path / CHECKPOINTS / "key" / "meta.json").write_text("{}")  # not a finished part
            raise KeyboardInterrupt
    with RunFolder(out, command="run", settings={"n": 1}) as rf:
        assert rf.resumed == 3 and "left 3 finished parts" in (rf.resume_note() or "")
        rf.commit()
    # --force over unfinished work of other settings discards it: nothing is picked up, nothing said.
    with pytest.raises(Interrupted):
        with RunFolder(out, command="run", settings={"n": 1}) as rf:
            (rf.path / CHECKPOINTS).mkdir(exist_ok=True)
            (rf.path / CHECKPOINTS / "p.safetensors").write_bytes(b"part")
            raise KeyboardInterrupt
    with RunFolder(out, command="run", settings={"n": 2}, force=True) as rf:
        assert rf.resumed == 0 and rf.resume_note() is None


def _mib_fails(out, exc: BaseException | None) -> None:
    """One in-place (mib) command on ``out``: marks the folder, then raises ``exc`` (or writes a pair)."""
    with RunFolder(out, command="mib", settings={"n": 1}, in_place=True) as f:
        f.mark_in_place(complete=False)
        if exc is None:
            (out / "pair.json").write_text("{}")
        else:
            raise exc


def test_an_in_place_folder_refused_part_way_does_not_promise_a_resume_that_would_be_refused_again(tmp_path):
    """mib refusing a model (another checkpoint scored the folder's pairs) after its folder holds pairs: the
    same command meets the same refusal, so the note says only what is kept; an interrupt or a failed write
    still says how to resume."""
    from circuitwise.errors import WriteFailed
    from circuitwise.runfolder import output_error

    out = tmp_path / "sub"
    _mib_fails(out, None)
    with pytest.raises(OutputError) as e:
        _mib_fails(out, OutputError("another checkpoint scored these pairs; give another --out or add --force"))
    assert e.value.__notes__ == [f"What {out} holds is kept."]
    with pytest.raises(WriteFailed) as w:
        _mib_fails(out, output_error(OSError(errno.ENOSPC, "No space left on device"), out / "pair2.json"))
    assert "re-run the same command to resume" in w.value.__notes__[0] and w.value.exit_code == 3
    with pytest.raises(Interrupted, match="re-run the same command to resume"):
        _mib_fails(out, KeyboardInterrupt())
