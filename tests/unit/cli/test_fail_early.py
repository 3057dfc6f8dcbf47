"""Options that cannot work are refused before any model is loaded and before anything is written."""

from __future__ import annotations

import pytest

from circuitwise.compare.config import CompareConfig
from circuitwise.config import RunConfig
from circuitwise.errors import ConfigError
from tests.unit.cli.conftest import invoke


@pytest.mark.parametrize("target", ["1.2", "0", "-0.5"])
def test_run_circuit_target_out_of_range_says_the_range(tmp_path, no_model_loads, target):
    out = tmp_path / "o"
    r = invoke("run", "opposites", "--circuit-target", target, "--out", out)
    assert r.exit_code == 2 and "--circuit-target: must be in (0, 1]" in r.output and f"got {float(target)}" in r.output
    assert not out.exists() and not list(tmp_path.iterdir())


def test_config_errors_name_the_flag_and_the_config_key_where_they_differ(tmp_path, no_model_loads):
    """The same config comes from flags and from --config: an error names the flag the user typed, and the
    config.yaml key beside it where that is not the flag's own name."""
    r = invoke("run", "opposites", "--n", "0", "--out", tmp_path / "o")
    assert r.exit_code == 2 and "configuration: --n: Input should be greater than or equal to 1" in r.output
    with pytest.raises(ConfigError, match=r"--patch \(patching in config.yaml\)"):
        RunConfig.build(task="opposites", patching=5)
    with pytest.raises(ConfigError, match=r"--circuit-option \(-O\) \(circuit_options in config.yaml\)"):
        RunConfig.build(task="opposites", circuit_options=["not a mapping"])
    with pytest.raises(ConfigError, match=r"configuration: TASK A \(a in config.yaml\)"):
        CompareConfig.build(a=None)
    config = tmp_path / "config.yaml"
    config.write_text("task: opposites\nig_steps: -2\n")
    r = invoke("run", "--config", config, "--out", tmp_path / "o2")
    assert r.exit_code == 2 and "--ig-steps:" in r.output, r.output


def test_the_configs_and_selection_accept_the_same_targets():
    assert RunConfig(task="opposites", circuit_target=1.0).circuit_target == 1.0
    for cls, kw in ((RunConfig, {"task": "opposites"}), (CompareConfig, {"a": "opposites"})):
        with pytest.raises(ConfigError, match=r"\(0, 1\]"):
            cls.build(**kw, circuit_target=1.2)


def test_compare_passes_a_method_only_its_own_options(tmp_path, no_model_loads):
    # eap has no `steps`; compare used to pass steps=5 to every method and fail after the work.
    cfg = CompareConfig(a="opposites", circuit="eap")
    assert "steps" not in vars(cfg.method_options())
    ep = CompareConfig(a="opposites", circuit="edge-pruning").method_options()
    assert ep == CompareConfig(a="opposites", circuit="edge-pruning", circuit_options={}).method_options()
    from circuitwise.circuits.methods import get_method
    assert ep == get_method("edge-pruning").options()  # its own defaults, not 5 training steps
    out = tmp_path / "o"
    r = invoke("compare", "opposites", "--circuit", "eap", "--ig-steps", "5", "--out", out)
    assert r.exit_code == 2 and "ig_steps applies to the integrated-gradient methods" in r.output
    assert "drop --ig-steps" in r.output
    r = invoke("compare", "opposites", "--circuit", "eap", "--circuit-option", "steps=5", "--out", out)
    assert r.exit_code == 2 and "has no option 'steps'" in r.output and "gradient" in r.output
    assert not out.exists()


def test_patch_refuses_an_unknown_metric_before_loading(tmp_path, no_model_loads):
    out = tmp_path / "o"
    r = invoke("patch", "opposites", "--metric", "nope", "--out", out)
    assert r.exit_code == 2 and "Unknown metric 'nope'" in r.output
    assert not list(tmp_path.iterdir())  # no folder, no .partial
