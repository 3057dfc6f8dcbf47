"""The command's torch thread count: only the idle cores, unless the user says otherwise."""

from __future__ import annotations

import pytest
import torch

from circuitwise.cli import threads


@pytest.fixture(autouse=True)
def _restore_threads(monkeypatch):
    before = torch.get_num_threads()
    monkeypatch.delenv("CIRCUITWISE_THREADS", raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    yield
    torch.set_num_threads(before)


def _pretend(monkeypatch, default, idle):
    torch.set_num_threads(default)
    monkeypatch.setattr(threads, "idle_cores", lambda sample_s=0.2: idle)


def test_a_busy_core_is_left_out(monkeypatch):
    _pretend(monkeypatch, 2, 1.1)
    assert threads.choose_threads() == 1 and torch.get_num_threads() == 1


def test_idle_or_unmeasurable_machines_keep_torchs_default(monkeypatch):
    for idle in (1.7, 2.0, None):
        _pretend(monkeypatch, 2, idle)
        assert threads.choose_threads() is None and torch.get_num_threads() == 2


def test_the_users_setting_wins(monkeypatch):
    _pretend(monkeypatch, 2, 0.0)
    monkeypatch.setenv("CIRCUITWISE_THREADS", "2")
    assert threads.choose_threads() == 2 and torch.get_num_threads() == 2
    monkeypatch.setenv("CIRCUITWISE_THREADS", "")
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert threads.choose_threads() is None and torch.get_num_threads() == 2


def test_idle_cores_is_measured_between_zero_and_the_core_count():
    idle = threads.idle_cores(0.05)
    import os

    if idle is None:
        pytest.skip("no /proc/stat here")
    assert 0.0 <= idle <= (os.cpu_count() or 1) + 1e-9


@pytest.mark.parametrize("args, only_help", [
    ([], True), (["--help"], True), (["run", "-h"], True), (["--version"], True), (["run", "opposites"], False),
    (["run", "opposites", "--", "--help"], False),  # after --, an argument, not the flag
])
def test_help_and_the_version_skip_sampling_the_cores(args, only_help, monkeypatch):
    import sys

    from circuitwise import cli

    sampled = []
    monkeypatch.setattr("circuitwise.cli.threads.choose_threads", lambda: sampled.append(True))
    monkeypatch.setattr(cli, "_register", lambda: None)
    monkeypatch.setattr(cli, "app", lambda: None)
    monkeypatch.setattr(sys, "argv", ["circuitwise", *args])
    cli.main()
    assert cli._only_help(args) is only_help and bool(sampled) is not only_help
