"""SIGTERM and Ctrl-C (issue 22, item 5): locks are released on every way out, and the exit is 130.

`kill`, `timeout` and job schedulers stop a command with SIGTERM; Python's default ends the process
at once, so the output folder never unwound and `.NAME.lock` / `.NAME.lock.pid` stayed beside --out.
"""

from __future__ import annotations

import signal
import sys

import pytest

import circuitwise.cli as cli
from circuitwise.runfolder import RunFolder


@pytest.fixture
def restore_sigterm():
    old = signal.getsignal(signal.SIGTERM)
    yield
    signal.signal(signal.SIGTERM, old)


def _main(monkeypatch, command):
    """``circuitwise`` through its entry point, with ``command`` in place of the typer app."""
    monkeypatch.setattr(cli, "_register", lambda: None)
    monkeypatch.setattr("circuitwise.cli.threads.choose_threads", lambda: None)
    monkeypatch.setattr(cli, "app", command)
    with pytest.raises(SystemExit) as e:
        cli.main()
    return e.value.code


def test_sigterm_inside_an_output_folder_exits_130_and_leaves_no_lock(tmp_path, monkeypatch, restore_sigterm,
                                                                       capsys):
    out = tmp_path / "o"

    def command():
        with RunFolder(out, command="run", settings={}) as rf:
            rf.write_text("results.json", "{}")
            assert (tmp_path / ".o.lock").exists() and (tmp_path / ".o.lock.pid").exists()
            signal.raise_signal(signal.SIGTERM)
            raise AssertionError("SIGTERM did not stop the command")

    assert _main(monkeypatch, command) == 130
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no lock, no pid, no partial, no folder
    assert "interrupted: Nothing was written" in " ".join(capsys.readouterr().err.split())


def test_sigterm_or_ctrl_c_while_the_commands_load_exits_130_without_a_traceback(monkeypatch, restore_sigterm,
                                                                                  capsys):
    def loading():
        signal.raise_signal(signal.SIGTERM)

    monkeypatch.setattr(cli, "app", lambda: None)
    monkeypatch.setattr(cli, "_register", loading)
    with pytest.raises(SystemExit) as e:
        cli.main()
    assert e.value.code == 130
    assert "interrupted: stopped before any result was written" in " ".join(capsys.readouterr().err.split())


@pytest.mark.skipif(sys.platform == "win32", reason="os.kill(SIGTERM) ends a Windows process at once")
def test_a_sigterm_handler_is_installed_by_main(monkeypatch, restore_sigterm):
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    assert _main(monkeypatch, lambda: sys.exit(0)) == 0
    assert signal.getsignal(signal.SIGTERM) not in (signal.SIG_DFL, signal.SIG_IGN, None)
