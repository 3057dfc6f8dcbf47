"""The memory plan: estimates that bound the measured peak, batches that fit, refusals before any work."""

from __future__ import annotations

import gc
import json
import subprocess
import sys
import weakref
from pathlib import Path

import pytest
import torch

import circuitwise as cw
from circuitwise.errors import CircuitwiseError, MemoryBudgetError
from circuitwise.models.memory import STAGES, Shapes, batch_for, estimate, fit_batch, per_example, resident
from circuitwise.sizes import parse_size
from tests.families import FAMILIES

ROOT = Path(__file__).resolve().parents[3]


@pytest.mark.parametrize("text,expected", [("8GB", 8e9), ("500MiB", 500 << 20), ("1.5g", 1.5e9), ("2048", 2048),
                                           (" 3 kib ", 3 << 10), (4096, 4096)])
def test_sizes_parse(text, expected):
    assert parse_size(text) == int(expected)


@pytest.mark.parametrize("text", ["lots", "-1GB", "0", "5 parsecs", "nan", ""])
def test_bad_sizes_say_the_accepted_forms(text):
    with pytest.raises(ValueError, match="size"):
        parse_size(text)


@pytest.mark.parametrize("family", FAMILIES)
def test_shapes_from_the_checkpoint_before_loading_match_the_loaded_model(family, family_model_for, family_path_for):
    loaded = Shapes.from_model(family_model_for(family))
    read = Shapes.from_config(family_path_for(family), torch.float32)
    assert read is not None
    for field in ("n_layers", "d_model", "n_heads", "n_kv_heads", "d_head", "d_vocab", "gated", "dtype_bytes"):
        assert getattr(read, field) == getattr(loaded, field), field
    assert abs(read.n_params / loaded.n_params - 1) < 0.02


@pytest.mark.parametrize("family", ["gpt2", "gemma2", "pythia"])
def test_shapes_before_loading_count_a_tied_unembedding_once_when_the_weights_stay_unprocessed(family,
                                                                                                family_path_for):
    """--no-processing keeps a tied unembedding tied (gpt2, gemma2; pythia's is untied): counting it twice
    had the check before loading refuse such a model in a budget it fits (1.3x its weights at GPT-2 small)."""
    loaded = Shapes.from_model(cw.load_model(str(family_path_for(family)), device="cpu", processing=False))
    read = Shapes.from_config(family_path_for(family), torch.float32, processing=False)
    assert read is not None and abs(read.n_params / loaded.n_params - 1) < 0.02


def test_a_batch_that_fits_fits_and_one_more_does_not():
    s = Shapes(n_layers=12, d_model=768, n_heads=12, n_kv_heads=12, d_head=64, d_mlp=3072, d_vocab=50257,
               gated=False, n_params=163_000_000, dtype_bytes=4)
    for stage in STAGES:
        budget = int(estimate(stage, s, 20, 10) + per_example(stage, s, 20) / 2)
        b = fit_batch(stage, s, 20, budget, prefer=64)
        assert b == 10, stage
        assert estimate(stage, s, 20, b) <= budget < estimate(stage, s, 20, b + 1)
        assert fit_batch(stage, s, 20, int(resident(s)) - 1, prefer=64) == 0
    half = Shapes(**{**s.__dict__, "dtype_bytes": 2, "n_params": s.n_params})
    assert all(estimate(st, half, 20, 8) < estimate(st, s, 20, 8) for st in STAGES)


def test_measured_peak_stays_under_the_estimate_on_every_stage(tmp_path):
    """Each stage's peak RSS (reset before it) against the plan's estimate, in a fresh process."""
    out = tmp_path / "cal.json"
    cmd = [sys.executable, str(ROOT / "bench" / "memory_calibration.py"), "--arch", "llama", "--heads", "8",
           "--d-model", "128", "--layers", "2", "--batches", "1,8", "--n", "8", "--json", str(out)]
    run = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    rows = json.loads(out.read_text())
    assert {r["stage"] for r in rows} == set(STAGES)
    over = [r for r in rows if r["measured"] > r["estimate"]]
    assert not over, over


def test_batches_shrink_to_the_budget_and_the_numbers_do_not_change(tmp_path, tiny_ckpt):
    task = cw.get_task("opposites", n=12)
    roomy = cw.load_model(str(tiny_ckpt), device="cpu")
    tok, _ = cw.tokenize_task(roomy, task, need_corrupted=True)
    T = int(tok.clean.shape[1])
    s = Shapes.from_model(roomy)
    tight_bytes = estimate("dla", s, T, 3) + 1  # +1: the estimate is rounded down to whole bytes
    tight = cw.load_model(str(tiny_ckpt), device="cpu", max_memory=tight_bytes)
    assert batch_for("dla", tight, T, prefer=64) == 3
    assert batch_for("dla", roomy, T, prefer=64) == 64
    a = cw.direct_logit_attribution(roomy, tok, batch_size=64)
    b = cw.direct_logit_attribution(tight, tok, batch_size=batch_for("dla", tight, T, prefer=64))
    torch.testing.assert_close(a.heads.values, b.heads.values, atol=1e-5, rtol=0)


def test_run_prints_the_plan_uses_its_batches_and_records_them(tmp_path):
    from circuitwise.config import RunConfig

    lines: list[str] = []
    cfg = RunConfig.build(task="opposites", model="bundled", n=16, out=tmp_path / "r", patching=("heads",),
                          max_memory="2GB")
    res = cw.run(cfg, progress=lines.append).results
    plan = res.plan.resources
    assert plan is not None and plan.budget_given and plan.budget_bytes == 2_000_000_000
    assert [s.stage for s in plan.stages] == ["baseline", "dla", "attribution", "patching", "edges", "evaluation"]
    assert all(s.memory_bytes <= plan.budget_bytes and 1 <= s.batch <= 16 for s in plan.stages)
    assert any(line.startswith("plan on cpu in float32, memory budget 2 GB") for line in lines)
    assert any(line.strip().startswith("edges: batch") for line in lines)


def test_a_run_that_cannot_fit_one_prompt_is_refused_before_any_work(tmp_path):
    from typer.testing import CliRunner

    from circuitwise.cli import _register, app

    _register()
    runner = CliRunner()
    keep = tmp_path / "earlier"
    keep.mkdir()
    (keep / "results.json").write_text("{}")
    # 150 MB: the bundled model itself cannot sit in it; 230 MB: it can, but a stage cannot fit even a one-token
    # prompt beside it (both refused from the checkpoint's shapes before loading; a budget that holds a one-token
    # prompt but not the task's is refused after tokenizing: test_a_budget_between_...).
    for budget, where in (("150MB", "nothing was loaded"), ("230MB", "nothing was loaded")):
        for command in (["run", "opposites"], ["patch", "opposites"], ["circuit", "opposites"],
                        ["benchmark", "opposites"], ["compare", "opposites", "--model-b", "bundled-llama"]):
            out = tmp_path / command[0]
            r = runner.invoke(app, [*command, "--model", "bundled", "--n", "4", "--max-memory", budget,
                                    "--out", str(out)])
            assert isinstance(r.exception, MemoryBudgetError), (command, budget, repr(r.exception), r.output)
            msg = str(r.exception)
            assert where in msg and "--dtype bfloat16" in msg and "--max-memory" in msg, msg
            assert "--device-map auto" in msg, msg  # issue 21: the fixes include splitting the model
            assert not out.exists(), f"{command[0]} wrote {list(out.iterdir())}"
    # compare too: its patching sweep is the stage at 230 MB.
    r = runner.invoke(app, ["compare", "opposites", "--model-b", "bundled-llama", "--model", "bundled", "--n", "4",
                            "--max-memory", "230MB", "--out", str(tmp_path / "cmp")])
    assert isinstance(r.exception, MemoryBudgetError) and "Fixes: --no-patching (no patching sweep)" in str(r.exception)
    # run names first how it would leave the stage out (the one at 230 MB is patching).
    r = runner.invoke(app, ["run", "opposites", "--model", "bundled", "--n", "4", "--max-memory", "230MB",
                            "--out", str(tmp_path / "skip")])
    assert isinstance(r.exception, MemoryBudgetError) and "its patching stage" in str(r.exception)
    assert "Fixes: --patch none (no patching sweeps), --dtype bfloat16" in str(r.exception)
    assert "shorter prompts" not in str(r.exception)  # not even a one-token prompt fits
    r = runner.invoke(app, ["run", "opposites", "--model", "bundled", "--max-memory", "lots", "--out", str(keep)])
    assert isinstance(r.exception, CircuitwiseError) and "8GB, 500MiB" in str(r.exception)
    assert (keep / "results.json").read_text() == "{}"


def test_a_budget_between_a_one_token_prompt_and_the_tasks_prompts_is_refused_after_tokenizing(tmp_path):
    """The check before loading takes a one-token prompt (the prompts' token counts need the tokenizer), so it
    never refuses what fits; the plan's check at the real length, before any stage, takes the rest."""
    from typer.testing import CliRunner

    from circuitwise.cli import _register, app
    from circuitwise.models.bundled import bundled_path
    from circuitwise.models.memory import Shapes, estimate
    from circuitwise.plan import run_stages_before_load
    from circuitwise.tasks import get_task, tokenize_task

    _register()
    m = cw.load_model("bundled", device="cpu")
    tok, _ = tokenize_task(m, get_task("opposites", n=4), on_invalid="drop")
    T = int(tok.clean.shape[1])
    before = Shapes.from_config(bundled_path("bundled"), torch.float32)
    assert before is not None
    stages = run_stages_before_load(cw.RunConfig.build(task="opposites", model="bundled"), tok.task)
    assert stages == ("baseline", "dla", "attribution", "patching")
    pre = max(estimate(st, before, 1, 1) for st in stages)
    post = estimate("patching", Shapes.from_model(m), T, 1)
    assert pre < post
    out = tmp_path / "run"
    r = CliRunner().invoke(app, ["run", "opposites", "--model", "bundled", "--n", "4", "--max-memory",
                                 str((pre + post) // 2), "--out", str(out)])
    assert isinstance(r.exception, MemoryBudgetError), (repr(r.exception), r.output)
    msg = " ".join(str(r.exception).split())
    assert f"for one prompt of {T} tokens" in msg and "shorter prompts" in msg and not out.exists()
    assert "loading model bundled" in r.output  # loaded, then refused before the baseline
    assert "baseline on" not in r.output


def test_a_model_that_cannot_sit_in_the_budget_is_refused_before_loading(tiny_ckpt, monkeypatch):
    import circuitwise.models.loading as loading

    def boom(*a, **k):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr("transformer_lens.model_bridge.TransformerBridge.boot_transformers", boom, raising=False)
    with pytest.raises(MemoryBudgetError, match="nothing was loaded"):
        loading.load_model(str(tiny_ckpt), device="cpu", max_memory=10_000_000)


def test_models_are_freed_after_the_engines_read_them():
    from circuitwise.circuits.forward import graph_model
    from circuitwise.models.weights import read_weights

    refs = []
    for _ in range(2):
        m = cw.load_model("bundled", device="cpu")
        read_weights(m)
        graph_model(m)
        refs.append(weakref.ref(m))
        del m
        gc.collect()
    assert all(r() is None for r in refs), "a cache keeps the model (and its memory) alive"


def test_loading_counts_the_checkpoints_stored_dtype(tiny_ckpt, tmp_path):
    """A float32 checkpoint loaded into bfloat16 is read in float32 first (measured at Llama-3.2-1B
    shapes: a 20.7 GB peak for 2.5 GB of bf16 weights), so the load estimate counts 4 bytes a weight."""
    import json
    import shutil

    import torch

    from circuitwise.models.memory import Shapes, load_peak

    s32 = Shapes.from_config(tiny_ckpt, torch.bfloat16)
    assert s32 is not None and s32.stored_bytes == 4 and s32.load_bytes == 2 * s32.weight_bytes
    half = tmp_path / "half"
    shutil.copytree(tiny_ckpt, half)
    cfg = json.loads((half / "config.json").read_text())
    cfg.pop("torch_dtype", None)
    cfg["dtype"] = "bfloat16"
    (half / "config.json").write_text(json.dumps(cfg))
    s16 = Shapes.from_config(half, torch.bfloat16)
    assert s16 is not None and s16.stored_bytes == 2 and s16.load_bytes == s16.weight_bytes
    assert load_peak(s32) > load_peak(s16)


def test_the_check_before_loading_sees_the_default_budget_the_plan_will_see(monkeypatch):
    """With no --max-memory the plan's budget is a share of what is free once the model is in, plus what the model
    holds (budget_of); loading takes at most what is free now, so the check before loading refuses only a stage
    that needs more than that share of the free memory beside the model: here one that needs more than 85% of the
    free memory counting the model passes, and one beyond 85% of it without the model is refused."""
    from circuitwise.models import memory
    from circuitwise.models.bundled import bundled_path
    from circuitwise.models.loading import check_stages_fit

    s = Shapes.from_config(bundled_path("bundled"), torch.float32)
    assert s is not None
    need, held = estimate("patching", s, 1, 1, "cpu"), resident(s, "cpu")
    free = int(need / memory.FREE_SHARE) - 1_000_000  # 85% of it is less than the stage needs
    monkeypatch.setattr(memory, "available_bytes", lambda device="cpu": free)
    assert memory.FREE_SHARE * free < need <= memory.FREE_SHARE * (free - held) + held
    check_stages_fit("bundled", ("baseline", "patching"), device="cpu")  # fits: the plan would accept it
    short = int((need - held) / memory.FREE_SHARE) - 1  # not even the stage beside the model fits its share
    monkeypatch.setattr(memory, "available_bytes", lambda device="cpu": short)
    with pytest.raises(MemoryBudgetError, match="patching stage needs about .* beside the model even for a one-token "
                                                "prompt, more than .*; nothing was loaded"):
        check_stages_fit("bundled", ("baseline", "patching"), device="cpu")


def test_the_check_before_loading_never_refuses_a_run_the_plan_accepts(monkeypatch, tmp_path):
    """The model's estimate (its weights 2.25 times and the runtime, on a CPU) bounds what loading takes from
    above, so the check before loading cannot take it off the free memory: with a stage that fits 85% of what
    is free beside the model but not 85% of what would be left after the estimate, the plan accepts the run
    (it was refused before loading, though it fits)."""
    from typer.testing import CliRunner

    from circuitwise.cli import _register, app
    from circuitwise.models import memory
    from circuitwise.models.bundled import bundled_path

    s = Shapes.from_config(bundled_path("bundled"), torch.float32)
    assert s is not None
    held, extra = resident(s, "cpu"), estimate("patching", s, 1, 1, "cpu") - resident(s, "cpu")
    free = int(held + extra / memory.FREE_SHARE) - 1_000_000
    assert memory.FREE_SHARE * (free - held) < extra < memory.FREE_SHARE * free / 2
    monkeypatch.setattr(memory, "available_bytes", lambda device="cpu": free)
    _register()
    out = tmp_path / "run"
    r = CliRunner().invoke(app, ["run", "opposites", "--model", "bundled", "--n", "4", "--circuit", "none",
                                 "--out", str(out)])
    assert r.exit_code == 0, (repr(r.exception), r.output)
    assert (out / "results.json").is_file()
