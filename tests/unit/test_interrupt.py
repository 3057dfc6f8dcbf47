"""Ctrl-C and SIGKILL mid-run (a real `circuitwise` process on the bundled model): the previous
complete run stays whole, the message says what was kept, and the next run resumes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

CMD = [sys.executable, "-c", "from circuitwise.cli import main; main()", "run", "opposites-seed",
       "--model", "bundled", "--circuit", "none", "--align", "end"]


def _previous_run(out: Path) -> dict[str, bytes]:
    """A complete earlier run of CMD's settings (so CMD re-runs there without --force)."""
    from circuitwise.config import RunConfig
    from circuitwise.pipeline import folder_settings
    from circuitwise.runfolder import MARKER

    out.mkdir()
    settings = folder_settings(RunConfig.build(task="opposites-seed", model="bundled", circuit="", align="end"))
    files = {"results.json": b'{"complete": true}', "report.html": b"<p>old</p>", "config.yaml": b"task: x\n",
             MARKER: json.dumps({"command": "run", "settings": settings, "complete": True}).encode()}
    for name, data in files.items():
        (out / name).write_bytes(data)
    return files


def _start_and_wait_for_patching(out: Path, n: int | None = None) -> subprocess.Popen:
    env = {**os.environ, "COLUMNS": "200"}
    cmd = [*CMD, "--out", str(out)]
    if n is not None:  # a generated task of n examples instead of the seed's six
        cmd[cmd.index("opposites-seed")] = "opposites"
        cmd += ["--n", str(n), "--force"]  # other settings than the earlier run's: replacing it needs --force
    # A shell's background job ignores SIGINT, and so would its children (Python then installs no
    # KeyboardInterrupt handler): the command gets the default disposition, as in a terminal.
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    checkpoints = out.parent / f".{out.name}.partial" / ".patching"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if checkpoints.is_dir() and any(checkpoints.rglob("*.safetensors")):
            return proc
        time.sleep(0.05)
    proc.kill()
    pytest.fail(f"the run never reached patching: {proc.communicate()}")


def _files(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}


def test_sigint_keeps_the_previous_run_and_says_how_to_resume(tmp_path):
    out = tmp_path / "run"
    before = _previous_run(out)
    proc = _start_and_wait_for_patching(out)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    text = " ".join(err.decode().split())
    assert proc.returncode == 130, text
    assert "interrupted:" in text and "untouched" in text and "re-run the same command to resume" in text
    assert "Traceback" not in text
    assert _files(out) == before


@pytest.mark.integration
def test_sigkill_then_rerun_resumes_into_a_whole_folder(tmp_path):
    out = tmp_path / "run"
    before = _previous_run(out)
    proc = _start_and_wait_for_patching(out)
    proc.kill()
    proc.wait(timeout=30)
    assert _files(out) == before
    partial = tmp_path / ".run.partial" / ".patching"
    kept = {p.name for p in partial.rglob("*.safetensors")}
    assert kept
    n_parts = sum(1 for _ in partial.rglob("*.safetensors"))  # part names repeat across sweeps: counted by path
    done = subprocess.run([*CMD, "--out", str(out)], capture_output=True, timeout=300)
    assert done.returncode == 0, done.stderr.decode()
    said = " ".join((done.stdout + done.stderr).decode().split())
    assert f"resuming: an interrupted run of the same settings left {n_parts:,} finished part" in said
    assert "reused, not computed again" in said
    res = json.loads((out / "results.json").read_text())
    assert res["complete"] and (out / "report.html").exists() and not (tmp_path / ".run.partial").exists()
    assert kept <= {p.name for p in (out / ".patching").rglob("*.safetensors")}


@pytest.mark.integration
def test_a_second_process_on_the_same_folder_is_refused(tmp_path):
    out = tmp_path / "run"
    before = _previous_run(out)
    # A task big enough that the first run is still at work while the second one starts (it is
    # interrupted as soon as the second has answered, so its size costs no test time).
    first = _start_and_wait_for_patching(out, n=1000)
    try:
        second = subprocess.run([*CMD, "--out", str(out)], capture_output=True, timeout=120)
    finally:
        first.send_signal(signal.SIGINT)
        first.communicate(timeout=60)
    text = " ".join(second.stderr.decode().split())
    assert second.returncode == 4 and f"(pid {first.pid})" in text and "another --out" in text
    assert _files(out) == before
