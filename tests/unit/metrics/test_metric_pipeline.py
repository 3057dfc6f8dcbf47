"""--metric through every command: each stage measures it, numbers equal the model's own, and a bad
name is refused before any model loads."""

from __future__ import annotations

import json

import pytest
import torch

import circuitwise as cw
from tests.unit.cli.conftest import invoke, no_model_loads  # noqa: F401 (a fixture, used by name)
from tests.unit.metrics.reference import plain_metric, reference_logprobs

N = 8


@pytest.fixture(scope="module")
def bundled_tok():
    model = cw.load_model("bundled", device="cpu")
    tok, _ = cw.tokenize_task(model, cw.get_task("opposites", n=N, seed=0), need_corrupted=True)
    return model, tok


def _plain(model, tok, tokens, name):
    ref = reference_logprobs(model, tok.clean, tok.last)
    with torch.no_grad():
        logits = model(tokens)
    return plain_metric(name, logits[torch.arange(len(tok)), tok.last], tok.answers, ref)


@pytest.mark.parametrize("name", ["prob", "kl"])
def test_run_measures_the_metric_in_every_stage(tmp_path, bundled_tok, name):
    model, tok = bundled_tok
    out = tmp_path / "run"
    r = invoke("run", "opposites", "--model", "bundled", "--n", N, "--metric", name, "--patch", "resid_pre",
               "--out", out)
    assert r.exit_code == 0, r.output
    res = json.loads((out / "results.json").read_text())
    bl = res["baseline"]["metric"]
    assert bl["name"] == name
    assert f"mean {name} {bl['mean']:+.4g}" in " ".join(r.output.split())  # the closing line leads with it
    want = _plain(model, tok, tok.clean, name)
    torch.testing.assert_close(torch.tensor(bl["per_prompt"], dtype=torch.float64), want, atol=1e-5, rtol=1e-4)
    sweep = res["patching"]["resid_pre"]
    assert sweep["metric"] == name
    torch.testing.assert_close(torch.tensor(sweep["clean"], dtype=torch.float64), want, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(torch.tensor(sweep["corrupted"], dtype=torch.float64),
                               _plain(model, tok, tok.corrupted, name), atol=1e-4, rtol=1e-4)
    assert any(f"Metric {name}" in n for n in res["notes"])  # DLA says it decomposes the logit difference
    circuit = json.loads((out / "circuit.json").read_text())
    assert circuit["metric"] == name
    ev = res["circuit"]["evaluation"]["faithfulness"]
    assert ev["clean_metric"] == pytest.approx(float(want.mean()), abs=1e-5, rel=1e-4)
    assert 0 < ev["faithfulness"] <= 1.5
    assert f"metric: {name}" in (out / "config.yaml").read_text()  # a rerun from the config measures it again


def test_compare_compares_the_metric(tmp_path, bundled_tok):
    model, tok = bundled_tok
    out = tmp_path / "cmp"
    r = invoke("compare", "opposites", "--model", "bundled", "--n", N, "--metric", "logprob", "--no-patching",
               "--circuit", "none", "--out", out)
    assert r.exit_code == 0, r.output
    res = json.loads((out / "compare.json").read_text())
    c = res["metric"]
    assert c["cells"] == ["logprob"]
    assert c["a"][0] == pytest.approx(float(_plain(model, tok, tok.clean, "logprob").mean()), abs=1e-4)
    assert "logprob" in (out / "compare.html").read_text()


def test_evaluate_measures_a_circuit_with_another_metric(tmp_path):
    found = tmp_path / "c"
    assert invoke("circuit", "opposites", "--model", "bundled", "--n", N, "--out", found,
                  "--random-samples", 0, "--shortlist", 0).exit_code == 0
    r = invoke("evaluate", found / "circuit.json", "opposites", "--model", "bundled", "--n", N, "--metric", "kl",
               "--random-samples", 0, "--shortlist", 0, "--json")
    assert r.exit_code == 0, r.output
    ev = json.loads(r.output[r.output.index("{"):])
    f = ev.get("faithfulness", ev)
    assert f["clean_metric"] == pytest.approx(0.0, abs=1e-5) and f["corrupted_metric"] > 1.0


@pytest.mark.parametrize("command", [["run", "opposites"], ["circuit", "opposites"], ["patch", "opposites"],
                                     ["benchmark", "opposites"], ["compare", "opposites"]])
@pytest.mark.usefixtures("no_model_loads")
def test_an_unknown_metric_is_refused_before_any_model_loads(tmp_path, command):
    r = invoke(*command, "--metric", "accuracy", "--out", tmp_path / "o")
    assert r.exit_code == 2 and "logit_diff, prob, logprob, kl" in r.output, r.output
    assert not (tmp_path / "o").exists()


def test_the_memory_plan_counts_what_the_metric_holds(bundled_tok, monkeypatch):
    from circuitwise import plan as plan_mod
    from circuitwise.config import RunConfig
    from circuitwise.errors import MemoryBudgetError
    from circuitwise.metrics import held_bytes

    model, tok = bundled_tok
    base = plan_mod.plan_resources(RunConfig(task="opposites"), tok, model, prefer=8)
    kl = plan_mod.plan_resources(RunConfig(task="opposites", metric="kl"), tok, model, prefer=8)
    held = held_bytes("kl", len(tok), model.cfg.d_vocab)
    assert held == 4 * len(tok) * model.cfg.d_vocab + held_bytes("prob", len(tok), model.cfg.d_vocab)
    for a, b in zip(base.stages, kl.stages, strict=True):
        assert b.memory - a.memory == held and b.batch <= a.batch
    monkeypatch.setattr(plan_mod, "budget_of", lambda _m: held)
    with pytest.raises(MemoryBudgetError, match="--metric kl holds .*--n"):
        plan_mod.plan_resources(RunConfig(task="opposites", metric="kl"), tok, model, prefer=8)


@pytest.mark.usefixtures("no_model_loads")
@pytest.mark.parametrize("command", [["run", "opposites", "--circuit", "eap"],
                                     ["circuit", "opposites", "--circuit", "eap"],
                                     ["compare", "opposites", "--circuit", "eap"]])
def test_eap_at_the_clean_run_under_kl_is_refused_before_any_work(tmp_path, command):
    r = invoke(*command, "--metric", "kl", "--out", tmp_path / "o")
    assert r.exit_code == 2 and "zero gradient at the clean run" in r.output, r.output
    assert "gradient=corrupted" in r.output


def test_benchmark_skips_eap_under_kl_and_says_why(bundled_tok):
    from circuitwise.evaluation.benchmark import plan_benchmark

    model, _ = bundled_tok
    plan = plan_benchmark(model, ["eap", "eap-ig"], "kl")
    assert plan.run == ("eap-ig",) and "zero gradient" in plan.skipped[0].reason
    assert plan_benchmark(model, ["eap", "eap-ig"]).run == ("eap", "eap-ig")


@pytest.mark.usefixtures("no_model_loads")
def test_attribution_noising_under_kl_is_refused_before_any_work(tmp_path):
    r = invoke("patch", "opposites", "--metric", "kl", "--method", "attribution", "--direction", "noise",
               "--out", tmp_path / "o")
    assert r.exit_code == 2 and "zero gradient at the clean run" in r.output and "denoise" in r.output, r.output


@pytest.fixture
def no_room_for_a_reference(monkeypatch):
    """A memory budget of 1 kB, and kl's clean reference that fails if it is ever computed."""
    import circuitwise.metrics as metrics_mod
    from circuitwise import plan as plan_mod

    monkeypatch.setattr(plan_mod, "budget_of", lambda _m: 1000)

    def never(*_a, **_k):
        raise AssertionError("the reference was computed before the memory check")

    monkeypatch.setattr(metrics_mod, "clean_reference", never)


@pytest.mark.usefixtures("no_room_for_a_reference")
def test_a_kl_reference_that_cannot_fit_is_refused_before_its_forwards(bundled_tok):
    import circuitwise.pipeline as pipeline_mod
    from circuitwise.config import RunConfig
    from circuitwise.errors import MemoryBudgetError

    model, _ = bundled_tok
    with pytest.raises(MemoryBudgetError, match="--metric kl holds"):
        pipeline_mod.prepare(RunConfig(task="opposites", n=N, metric="kl"), model=model)


@pytest.mark.usefixtures("no_room_for_a_reference")
def test_compare_refuses_a_kl_reference_that_cannot_fit_before_any_work(bundled_tok, tmp_path):
    # compare prepares its sides itself (compare.sides), and computed kl's reference with no memory check.
    from circuitwise.compare import compare
    from circuitwise.errors import MemoryBudgetError

    model, _ = bundled_tok
    with pytest.raises(MemoryBudgetError, match="--metric kl holds"):
        compare("opposites", model=model, metric="kl", n=N, patching=False, circuit=None, out=tmp_path / "c")
    assert not (tmp_path / "c").exists()
