"""Every front end builds one Study whose requests are checked before any model loads (plan.*_request).

Options that used to be checked only when their stage ran (an unknown --selection or --by after the
edges were scored, an unknown --align after the model loaded) are refused up front, and nothing is written.
"""

from __future__ import annotations

import pytest

from circuitwise.errors import ConfigError
from circuitwise.plan import Study, benchmark_request, circuit_request, study_config, sweep_request
from tests.unit.cli.conftest import invoke


@pytest.mark.parametrize("args, said", [
    (["circuit", "opposites", "--selection", "best"], "Unknown --selection 'best'"),
    (["circuit", "opposites", "--by", "size"], "Unknown --by 'size'"),
    (["circuit", "opposites", "--ablation", "zero"], "Unknown ablation 'zero'"),
    (["circuit", "opposites", "--selection", "top-n"], "--selection top-n needs --edges N"),
    # a size or cut-off the selection does not read was dropped without a word (the target circuit kept)
    (["circuit", "opposites", "--edges", "5"], "--edges applies to --selection top-n only, and --selection is target"),
    (["circuit", "opposites", "--threshold", "0.5"], "--threshold applies to --selection threshold only"),
    (["circuit", "opposites", "--selection", "top-n", "--edges", "5", "--circuit-target", "0.5"],
     "--circuit-target applies to --selection target only, and --selection is top-n"),
    (["circuit", "opposites", "--selection", "threshold", "--threshold", "0.1", "--edges", "5"],
     "--edges applies to --selection top-n only, and --selection is threshold"),
    (["evaluate", "c.json", "opposites", "--ablation", "zero"], "Unknown ablation 'zero'"),
    (["patch", "opposites", "--align", "middle"], "Unknown --align 'middle'"),
    (["patch", "opposites", "--method", "guess"], "Unknown --method 'guess'"),
    (["patch", "opposites", "--patch", "heads", "--patch", "nope"], "Unknown patching sweep 'nope'"),
    (["benchmark", "opposites", "--ablation", "zero"], "Unknown ablation 'zero'"),
    (["benchmark", "opposites", "--circuit", "eap,nope"], "nope"),
    # eap at the clean run scores nothing under kl, whatever the model: refused before it loads (it was
    # after, "on this model", naming the old --methods flag)
    (["benchmark", "opposites", "--metric", "kl", "--circuit", "eap,relp"],
     "None of the methods can run (eap: kl has zero gradient at the clean run"),
    (["benchmark", "opposites", "--metric", "kl", "--circuit", "eap"], "Choose others with --circuit (eap, eap-ig"),
    # ... and in mib, where it failed on its first pair after the methods before it had run
    (["mib", "--task", "opposites", "--model", "bundled", "--metric", "kl", "--circuit", "eap-ig,eap"],
     "--metric kl: eap: kl has zero gradient at the clean run"),
])
def test_bad_options_are_refused_before_anything_loads(tmp_path, no_model_loads, args, said):
    out = tmp_path / "o"
    r = invoke(*args, "--out", out)
    assert r.exit_code == 2, r.output
    assert said in r.output
    assert not out.exists()


def test_a_study_settings_are_its_config_and_its_requests():
    metric = "logit_diff"
    study = Study(study_config("circuit", task="opposites", n=8), "circuit",
                  circuit=circuit_request("eap", {}, metric=metric, selection="top-n", edges=5))
    s = study.settings()
    assert (s["task"], s["n"], s["method"], s["selection"], s["edges"]) == ("opposites", 8, "eap", "top-n", 5)
    assert study.memory_stages == ("edges", "evaluation")
    patch = Study(study_config("patch", task="opposites"), "patch", sweeps=sweep_request(None, metric=metric))
    assert patch.sweeps is not None and patch.sweeps.sweeps == ("resid_pre", "heads")
    assert "sweeps" not in patch.settings()  # sweeps accumulate in one folder
    bench = benchmark_request(["eap", "eap"], target=0.8)
    assert bench.methods == ("eap",)


def test_requests_refuse_what_their_stage_cannot_do():
    with pytest.raises(ConfigError, match="zero gradient at the clean run"):
        sweep_request(["heads"], metric="kl", method="attribution", direction="noise")
    with pytest.raises(ConfigError, match=r"--circuit-target must be in \(0, 1\]"):
        circuit_request("eap-ig", {}, metric="logit_diff", target=1.5)
    with pytest.raises(ConfigError, match="--selection threshold needs --threshold"):
        circuit_request("eap-ig", {}, metric="logit_diff", selection="threshold")


@pytest.mark.usefixtures("no_model_loads")
@pytest.mark.parametrize("command", [["patch", "opposites"], ["circuit", "opposites"], ["benchmark", "opposites"],
                                     ["mib", "--task", "mib-ioi", "--model", "bundled"]])
def test_a_bad_loading_option_names_the_command_in_hand_and_touches_no_folder(tmp_path, command):
    """The loading options (dtype, memory, placement) are RunConfig's in every command; a bad one is said with
    the command's own name and help (it used to send every command to `circuitwise run --help`), before any
    folder is made (mib made its folder first and then spoke of a previous result)."""
    out = tmp_path / "o"
    r = invoke(*command, "--dtype", "bf16", "--out", out)
    assert r.exit_code == 2 and f"See `circuitwise {command[0]} --help`" in r.output, r.output
    assert f"Invalid {command[0]} configuration" in r.output and not out.exists()


def test_another_commands_config_is_named_as_such(tmp_path, no_model_loads):
    # run's config.yaml given to compare (or compare's to run) was a list of every field that did not fit.
    from circuitwise.compare.config import CompareConfig
    from circuitwise.config import RunConfig

    run_yaml, cmp_yaml = tmp_path / "run.yaml", tmp_path / "cmp.yaml"
    run_yaml.write_text(RunConfig(task="opposites").to_yaml())
    cmp_yaml.write_text(CompareConfig(a="numbers-digits", b="numbers-words").to_yaml())
    for command, given, other in (("compare", run_yaml, "run"), ("run", cmp_yaml, "compare")):
        r = invoke(command, "--config", given, "--out", tmp_path / "o")
        assert r.exit_code == 2, r.output
        assert (f"is a config.yaml of `circuitwise {other}`, not of {command}. Re-run it with "
                f"`circuitwise {other} --config {given}`") in r.output
        assert not (tmp_path / "o").exists()
    bad = tmp_path / "bad.yaml"
    bad.write_text("task: opposites\nnot_an_option: 1\n")  # fits no command: its fields are named, as before
    assert "not_an_option: Extra inputs are not permitted" in invoke("run", "--config", bad).output
