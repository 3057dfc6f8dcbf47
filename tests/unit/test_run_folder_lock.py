"""The run folder's lock (filelock, not fcntl): released on every way out of a command, and the
package imports where fcntl does not exist (Windows)."""

from __future__ import annotations

import errno
import os
import subprocess
import sys

import pytest
from filelock import FileLock

from circuitwise import runfolder
from circuitwise.errors import FolderBusyError, Interrupted, OutputError
from circuitwise.runfolder import RunFolder


def _released(rf: RunFolder) -> bool:
    """Whether another holder can take the lock now (and the holder's pid note is gone)."""
    probe = FileLock(rf.lock_path, timeout=0)
    try:
        probe.acquire()
    except Exception:
        return False
    probe.release()
    return not rf.pid_path.exists()


def _commits(rf: RunFolder) -> None:
    rf.write_text("results.json", "{}")
    rf.commit()


def _leaves_without_commit(rf: RunFolder) -> None:
    rf.write_text("results.json", "{}")


def _fails(rf: RunFolder) -> None:
    rf.write_text("results.json", "{}")
    raise ValueError("a stage failed")


def _is_interrupted(rf: RunFolder) -> None:
    raise KeyboardInterrupt


def _runs_out_of_disk(rf: RunFolder) -> None:
    raise OSError(errno.ENOSPC, "No space left on device")


def _cannot_swap(rf: RunFolder, monkeypatch: pytest.MonkeyPatch) -> None:
    rf.write_text("results.json", "{}")

    def refuse(*args: object) -> None:
        raise OSError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(runfolder, "_exchange", lambda a, b: False)
    monkeypatch.setattr(os, "rename", refuse)
    rf.commit()


EXITS = {"commit": (_commits, None), "no commit": (_leaves_without_commit, None),
         "exception": (_fails, ValueError), "Ctrl-C": (_is_interrupted, Interrupted),
         "disk full": (_runs_out_of_disk, OutputError), "swap refused": (_cannot_swap, OutputError)}


@pytest.mark.parametrize("way", sorted(EXITS))
def test_the_lock_is_released_on_every_way_out(tmp_path, monkeypatch, way):
    body, raised = EXITS[way]
    out = tmp_path / "run"
    rf = RunFolder(out)
    try:
        with rf:
            assert not _released(rf) and rf.pid_path.read_text() == str(os.getpid())
            if body is _cannot_swap:
                body(rf, monkeypatch)
            else:
                body(rf)
    except BaseException as e:  # noqa: BLE001 - each way out raises its own kind; checked below
        assert raised is not None and isinstance(e, raised), repr(e)
    else:
        assert raised is None
    monkeypatch.undo()
    assert not rf.lock_path.exists()  # removed, not only released: nothing is left beside --out
    assert _released(rf)
    with RunFolder(out):  # and the next command gets the folder
        pass


def test_a_refused_second_writer_leaves_the_first_ones_lock_alone(tmp_path):
    out = tmp_path / "run"
    with RunFolder(out) as first:
        with pytest.raises(FolderBusyError, match=f"pid {os.getpid()}"):
            with RunFolder(out):
                pass
        assert not _released(first) and first.pid_path.read_text() == str(os.getpid())
    assert _released(first)


def test_the_package_imports_without_fcntl():
    """Windows has no fcntl: importing circuitwise (run folders included) must not need it."""
    code = ("import sys, warnings; sys.modules['fcntl'] = None; warnings.simplefilter('ignore')\n"
            "import circuitwise, circuitwise.runfolder")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
