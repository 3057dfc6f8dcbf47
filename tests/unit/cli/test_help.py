"""Help on every command: -h as well as --help, --version, every default shown, readable at 80 columns,
and typo hints that name flags of the command in hand."""

from __future__ import annotations

import re

import pytest
import typer
from typer.testing import CliRunner

from circuitwise import __version__
from circuitwise.cli import _register, app
from tests.unit.cli.conftest import invoke

_register()


def _commands(cmd=None, path=()):
    cmd = cmd or typer.main.get_command(app)
    yield path, cmd
    for name, sub in (getattr(cmd, "commands", None) or {}).items():
        yield from _commands(sub, (*path, name))


COMMANDS = [path for path, _ in _commands()]


def test_version_prints_the_package_version():
    r = CliRunner().invoke(app, ["--version"])
    assert r.exit_code == 0 and r.output.strip() == f"circuitwise {__version__}"


@pytest.mark.parametrize("path", COMMANDS, ids=lambda p: " ".join(p) or "app")
def test_dash_h_is_help_and_reads_at_80_columns(path):
    short = CliRunner().invoke(app, [*path, "-h"], terminal_width=80)
    long = CliRunner().invoke(app, [*path, "--help"], terminal_width=80)
    assert short.exit_code == 0 and short.output == long.output and "Usage:" in short.output
    too_wide = [line for line in short.output.splitlines() if len(line) > 80]
    assert not too_wide, too_wide


def test_every_option_shows_its_default():
    from typer._click.core import Context

    missing = []
    for path, cmd in _commands():
        ctx = Context(cmd, info_name=" ".join(("circuitwise", *path)))
        for p in cmd.params:
            if p.param_type_name != "option" or p.hidden or p.name == "version" or p.required:
                continue
            record = p.get_help_record(ctx)
            if record is None or "default" not in record[1].lower():
                missing.append((" ".join(path), p.opts))
    assert not missing, missing


def test_no_option_shows_its_default_twice():
    # transcoders train/convert printed typer's default beside the help's: '[default: 1024]  [default: 1024]'.
    from typer._click.core import Context

    twice = []
    for path, cmd in _commands():
        ctx = Context(cmd, info_name=" ".join(("circuitwise", *path)))
        for p in cmd.params:
            record = p.get_help_record(ctx) if p.param_type_name == "option" and not p.hidden else None
            if record is not None and record[1].lower().count("[default") > 1:
                twice.append((" ".join(path), p.opts))
    assert not twice, twice


def test_config_defaults_are_the_ones_shown():
    from circuitwise.config import RunConfig

    text = " ".join(CliRunner().invoke(app, ["run", "-h"], terminal_width=200).output.split())
    assert f"[default: {RunConfig.model_fields['circuit_target'].default}]" in text
    assert "[default: resid_pre, heads, heads_by_pos]" in text and "[default: None]" not in text


def test_a_typo_is_answered_with_flags_of_the_command_in_hand():
    r = CliRunner().invoke(app, ["run", "opposites", "--wht", "heads"])
    assert r.exit_code == 2 and "No such option: --wht" in r.output and "--what" not in r.output


@pytest.mark.parametrize("args, hint, hidden", [
    (["circuit", "opposites", "--circut-target", "0.5"], "--circuit-target", "--target"),
    (["mib", "--modle", "x"], "--model", "--models"),
    (["benchmark", "opposites", "--method", "eap"], "--circuit", "--methods"),
])
def test_a_typo_hint_never_names_a_hidden_old_spelling(args, hint, hidden):
    # The old spellings still work (with a warning) but are hidden: a hint names only what --help shows.
    r = CliRunner().invoke(app, args)
    named = re.findall(r"--[\w-]+", r.output.split("Possible options:")[-1])
    assert r.exit_code == 2 and "No such option" in r.output and hint in named and hidden not in named


def test_an_unknown_sweep_in_run_names_runs_flag_before_loading(tmp_path, no_model_loads):
    r = invoke("run", "opposites", "--patch", "bogus", "--out", tmp_path / "o")
    assert r.exit_code == 2 and "--patch none skips" in r.output and "--what" not in r.output
    assert not list(tmp_path.iterdir())
