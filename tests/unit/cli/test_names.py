"""One name for each idea in every command; the old spellings still work, hidden, with a warning; the
README's table of every command × option is the one the app generates."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from circuitwise.cli import _register, app
from circuitwise.cli.options import DEPRECATED
from tests.unit.cli.conftest import invoke

ROOT = Path(__file__).resolve().parents[3]
_register()


def _script():
    spec = importlib.util.spec_from_file_location("options_table", ROOT / "scripts" / "options_table.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _flags(command: str) -> tuple[set[str], set[str]]:
    """(visible, hidden) option flags of a command."""
    cmd = typer.main.get_command(app).commands[command]
    visible, hidden = set(), set()
    for p in cmd.params:
        if p.param_type_name == "option":
            (hidden if p.hidden else visible).update(p.opts + p.secondary_opts)
    return visible, hidden


def test_the_readme_table_is_current():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert _script().current(readme) == readme, "run: python scripts/options_table.py"


@pytest.mark.parametrize("command,flags", [
    ("run", {"--circuit", "--circuit-target", "--ig-steps", "--circuit-option", "-O", "--patch"}),
    ("compare", {"--circuit", "--circuit-target", "--ig-steps", "--circuit-option", "-O"}),
    ("circuit", {"--circuit", "--circuit-target", "--ig-steps", "--circuit-option", "-O", "--shortlist"}),
    ("benchmark", {"--circuit", "--circuit-target"}),
    ("patch", {"--patch"}),
])
def test_each_idea_has_one_name_and_the_old_ones_are_hidden(command, flags):
    visible, hidden = _flags(command)
    assert flags <= visible
    old = set(DEPRECATED.get(command, {}))
    assert old <= hidden and not old & visible


def test_the_shortlist_default_comes_from_the_config():
    from circuitwise.config import DEFAULT_SHORTLIST

    for command in ("circuit", "evaluate"):
        cmd = typer.main.get_command(app).commands[command]
        assert next(p.default for p in cmd.params if p.name == "shortlist") == DEFAULT_SHORTLIST


@pytest.mark.parametrize("args,old,new", [
    (["circuit", "opposites", "--method", "eap"], "--method", "--circuit"),
    (["circuit", "opposites", "--target", "0.8"], "--target", "--circuit-target"),
    (["circuit", "opposites", "--option", "quadrature=midpoint"], "--option", "--circuit-option"),
    (["circuit", "opposites", "--circuit", "exact", "--direction", "denoise"], "--direction", "-O direction="),
    (["benchmark", "opposites", "--methods", "eap"], "--methods", "--circuit"),
    (["patch", "opposites", "--what", "heads"], "--what", "--patch"),
    (["patch", "opposites", "-w", "heads"], "--what", "--patch"),
    (["mib", "--tasks", "mib-ioi", "--model", "bundled"], "--tasks", "--task"),
    (["mib", "--task", "mib-ioi", "--models", "bundled"], "--models", "--model"),
    (["mib", "--task", "mib-ioi", "--model", "bundled", "--methods", "eap"], "--methods", "--circuit"),
])
def test_an_old_spelling_works_and_warns(tmp_path, args, old, new, monkeypatch):
    # The command goes as far as the runner's loading step, which is stopped there: the old flag was accepted.
    class Loaded(Exception):
        pass

    def stop(*_a, **_k):
        raise Loaded

    monkeypatch.setattr("circuitwise.pipeline.load_study", stop)
    result = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "o")])
    assert isinstance(result.exception, Loaded), result.output
    text = " ".join(result.output.split())
    assert f"warning: {old} is deprecated; use {new}" in text


def test_a_bad_value_under_an_old_spelling_still_warns_and_says_the_fix(tmp_path, no_model_loads):
    # `circuit --steps 0` failed in the parser ("Invalid value for '--steps'"), before the deprecation warning.
    r = CliRunner().invoke(app, ["circuit", "opposites", "--steps", "0", "--out", str(tmp_path / "o")])
    text = " ".join(r.output.split())
    assert r.exit_code != 0 and "warning: --steps is deprecated; use --ig-steps" in text, text
    assert "positive whole number of steps, got 0" in str(r.exception)


def test_mib_without_a_task_or_model_says_which(tmp_path, no_model_loads):
    r = invoke("mib", "--model", "bundled", "--out", tmp_path / "o")
    assert r.exit_code == 2 and "Missing option --task" in r.output
    r = invoke("mib", "--tasks", "mib-ioi", "--out", tmp_path / "o")
    assert r.exit_code == 2 and "Missing option --model" in r.output


def test_old_and_new_spellings_that_disagree_are_refused(tmp_path, no_model_loads):
    r = invoke("circuit", "opposites", "--method", "eap", "--circuit", "exact", "--out", tmp_path / "o")
    assert r.exit_code == 2 and "--method and --circuit are the same option" in r.output


def test_steps_still_reaches_edge_prunings_training_steps(tmp_path, monkeypatch):
    seen = {}

    def stop(*_a, **_k):
        raise RuntimeError("stop")

    monkeypatch.setattr("circuitwise.pipeline.load_study", stop)
    from circuitwise import config, plan

    real = config.circuit_method_options

    def spy(method, given, ig_steps):
        seen.update(method=method, given=dict(given), ig_steps=ig_steps)
        return real(method, given, ig_steps)

    monkeypatch.setattr(plan, "circuit_method_options", spy)  # the plan checks a circuit request's options
    CliRunner().invoke(app, ["circuit", "opposites", "--circuit", "edge-pruning", "--steps", "7",
                             "--out", str(tmp_path / "o")])
    assert seen == {"method": "edge-pruning", "given": {"steps": 7}, "ig_steps": None}
    r = invoke("circuit", "opposites", "--circuit", "edge-pruning", "--ig-steps", "7", "--out", tmp_path / "o")
    assert r.exit_code == 2 and "ig_steps applies to the integrated-gradient methods" in r.output


def test_an_old_compare_config_with_random_circuits_still_loads(tmp_path):
    from circuitwise.compare.config import CompareConfig

    cfg = CompareConfig.build(a="opposites", random_circuits=7)
    assert cfg.random_samples == 7 and "random_circuits" not in cfg.model_dump()
    with pytest.raises(Exception, match="disagree"):
        CompareConfig.build(a="opposites", random_circuits=7, random_samples=8)
