"""Progress: nothing for quick stages; bars with counts and time left on a terminal; plain lines otherwise."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from circuitwise.cli import progress as progress_mod
from circuitwise.cli.progress import Bars


@pytest.fixture
def clock(monkeypatch):
    now = [100.0]
    monkeypatch.setattr(progress_mod.time, "monotonic", lambda: now[0])
    return now


def _console(terminal):
    buf = io.StringIO()
    return Console(file=buf, force_terminal=terminal, width=120), buf


def test_a_quick_stage_shows_nothing(clock):
    console, buf = _console(False)
    with Bars(console) as bars:
        for i in range(1, 11):
            clock[0] += 0.1
            bars.step("sweep", i, 10)
    assert buf.getvalue() == ""


def test_plain_lines_with_time_left_when_not_a_terminal(clock):
    console, buf = _console(False)
    with Bars(console) as bars:
        bars.step("sweep", 0, 10)
        for i in range(1, 11):
            clock[0] += 1.0
            bars.step("sweep", i, 10)
    lines = buf.getvalue().splitlines()
    assert lines[0] == "sweep: 2/10, about 8 s left"
    assert lines[-1] == "sweep: 10/10, 10 s" and len(lines) == 9


def test_a_bar_with_count_and_time_left_on_a_terminal(clock):
    console, buf = _console(True)
    with Bars(console) as bars:
        bars.step("eap-ig", 0, 50)
        clock[0] += 3.0
        bars.step("eap-ig", 5, 50)
        bars._bars.refresh()
        assert "eap-ig" in buf.getvalue() and "5/50" in buf.getvalue() and "left" in buf.getvalue()
        bars.step("eap-ig", 50, 50)
        assert not bars._tasks


def test_messages_are_plain_text(clock):
    console, buf = _console(False)
    with Bars(console) as bars:
        bars.message("tokens ['A', ' tort'] [bold]x[/]")
    assert "['A', ' tort'] [bold]x[/]" in buf.getvalue()


def test_a_stage_without_counts_shows_its_elapsed_time_on_a_terminal(clock):
    console, buf = _console(True)
    with Bars(console) as bars:
        bars.message("direct logit attribution")
        bars.message("note: adapted")  # a note is logged, it is no stage
        assert [t.description for t in bars._bars.tasks] == ["direct logit attribution"]
        bars.message("writing report")
        assert [t.description for t in bars._bars.tasks] == ["writing report"]
    assert "direct logit attribution" in buf.getvalue() and "note: adapted" in buf.getvalue()


def test_baseline_reports_its_batches(tiny_model):
    import circuitwise as cw
    from circuitwise.attribution import baseline

    tok, _ = cw.tokenize_task(tiny_model, cw.get_task("opposites-seed"))
    calls = []
    baseline(tiny_model, tok, batch_size=4, progress=lambda d, t: calls.append((d, t)))
    assert calls == [(0, 2), (1, 2), (2, 2)]
