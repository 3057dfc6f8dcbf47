"""Plan before work: unaligned prompts and degenerate corruptions adapt with a note, never fail part-way."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

import circuitwise as cw
from circuitwise.cli import _register, app
from circuitwise.config import RunConfig
from circuitwise.errors import TaskError
from circuitwise.patching import activation_patching
from circuitwise.plan import plan_run

_register()
runner = CliRunner()

ROWS = [
    ("A tortoise is old, but a kitten is", " young", " old", "A tortoise is young, but a kitten is"),
    ("The slow and very ancient tortoise is old, but the kitten is", " young", " old",
     "The slow and very ancient tortoise is young, but the kitten is"),
    ("A rock is hard, but, a sponge is", " soft", " hard", "A rock is soft, but, a sponge is"),
]


@pytest.fixture(scope="module")
def mixed(tiny_model):
    task = cw.Task("mixed", tuple(cw.Example(c, a, b, corrupted=x) for c, a, b, x in ROWS))
    tok, _ = cw.tokenize_task(tiny_model, task, need_corrupted=True)
    assert not tok.same_length and tok.roles is None
    return tok


def _cfg(**kw):
    return RunConfig.build(task="mixed", **kw)


def test_unaligned_prompts_keep_the_position_free_sweeps(tiny_model, mixed):
    plan = plan_run(_cfg(), mixed, tiny_model, gap=1.0)
    assert plan.sweeps == ("heads",) and plan.position_axis is None
    assert "different token lengths (11, 15)" in plan.notes[0] and "--align end" in plan.notes[0]
    only_positional = plan_run(_cfg(patching=("resid_pre",)), mixed, tiny_model, gap=1.0)
    assert only_positional.sweeps == ("heads",) and "'heads' sweep was run instead" in only_positional.notes[0]


def test_explicit_alignment_that_cannot_apply_fails_before_work(tiny_model, mixed):
    with pytest.raises(TaskError, match="different token lengths"):
        plan_run(_cfg(align="token"), mixed, tiny_model)
    with pytest.raises(TaskError, match="define no roles"):
        plan_run(_cfg(align="role"), mixed, tiny_model)


def test_degenerate_gap_skips_discovery_with_a_note(tiny_model, mixed):
    plan = plan_run(_cfg(align="end"), mixed, tiny_model, gap=1e-5)
    assert plan.degenerate and plan.circuit is None and plan.position_axis == "end"
    assert any("degenerate" in n for n in plan.notes) and any("Circuit discovery was skipped" in n for n in plan.notes)


def test_an_architecture_the_fast_engines_do_not_cover_is_planned_around(tiny_model, mixed, monkeypatch):
    """Decided before any work: patching falls back to the hook engine, discovery is skipped, both said."""
    import circuitwise.plan as plan_mod

    monkeypatch.setattr(plan_mod, "supports", lambda model: "ALiBi positions")
    plan = plan_run(_cfg(), mixed, tiny_model, gap=1.0)
    assert plan.circuit is None and plan.sweeps == ("heads",)
    assert any("Circuit discovery was skipped" in n and "ALiBi positions" in n for n in plan.notes)
    assert any("hook engine" in n and "ALiBi positions" in n for n in plan.notes)
    monkeypatch.undo()
    assert plan_run(_cfg(), mixed, tiny_model, gap=1.0).circuit == "eap-ig"  # GPT-2 is covered


@pytest.mark.parametrize("what", ["resid_pre", "heads_by_pos"])
def test_end_alignment_is_labelled_by_offset_and_engines_agree(tiny_model, mixed, what):
    fast = activation_patching(tiny_model, mixed, what, normalize=False, align="end", engine="cone")
    ref = activation_patching(tiny_model, mixed, what, normalize=False, align="end", engine="hooks")
    torch.testing.assert_close(fast.raw, ref.raw, atol=1e-4, rtol=0)
    assert fast.labels["pos"][-2:] == ["-2", "END"] and len(fast.labels["pos"]) == 11
    assert fast.config["align"] == "end"
    if what == "resid_pre":
        # Layer 0 at END patches each prompt's own last token: nothing else changes it.
        last = ref.raw[:, 0, -1]
        assert torch.isfinite(last).all()


def test_run_on_mixed_lengths_without_roles_completes_and_says_what_changed(tmp_path, tiny_ckpt):
    task = tmp_path / "mixed.jsonl"
    task.write_text("".join(json.dumps({"clean": c, "correct": a, "incorrect": b, "corrupted": x}) + "\n"
                            for c, a, b, x in ROWS))
    out = tmp_path / "run"
    r = runner.invoke(app, ["run", str(task), "--model", str(tiny_ckpt), "--out", str(out), "--circuit", "none"],
                      catch_exceptions=False)
    assert r.exit_code == 0, r.output
    res = json.loads((out / "results.json").read_text())
    assert res["complete"] and list(res["patching"]) == ["heads"]
    assert res["notes"] and "--align end" in res["notes"][0]
    html = (out / "report.html").read_text()
    assert "What this run adapted" in html and "different token lengths" in html


def test_degenerate_corruption_gives_a_whole_report(tmp_path, tiny_ckpt):
    task = tmp_path / "same.jsonl"
    task.write_text(json.dumps({"clean": ROWS[0][0], "correct": " young", "incorrect": " old",
                                "corrupted": ROWS[0][0]}) + "\n")
    out = tmp_path / "run"
    import warnings

    from circuitwise.patching.result import DegenerateNormalizationWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        r = runner.invoke(app, ["run", str(task), "--model", str(tiny_ckpt), "--out", str(out), "--patch", "heads"],
                          catch_exceptions=False)
    assert r.exit_code == 0, r.output
    # The plan's note says it once; no stage repeats it as a Python warning.
    assert not [w for w in caught if issubclass(w.category, DegenerateNormalizationWarning)]
    text = (out / "results.json").read_text()
    res = json.loads(text)  # strict JSON: no NaN
    assert "NaN" not in text and res["plan"]["degenerate"] and "circuit" not in res
    assert res["patching"]["heads"]["degenerate"]
    assert "Degenerate" in (out / "report.html").read_text()


def test_opposites_seed_on_the_bundled_model_completes(tmp_path):
    out = tmp_path / "run"
    r = runner.invoke(app, ["run", "opposites-seed", "--model", "bundled", "--out", str(out), "--ig-steps", "1"],
                      catch_exceptions=False)
    assert r.exit_code == 0, r.output
    res = json.loads((out / "results.json").read_text())
    assert res["complete"] and "heads" in res["patching"] and res["circuit"]["n_edges"] > 0
    assert any("different token lengths" in n for n in res["notes"])


def test_a_gap_too_small_for_faithfulness_skips_only_discovery(tiny_model, mixed):
    """Large logit differences: a 3e-3 gap is fine for patching but below faithfulness's 1e-4 relative floor."""
    plan = plan_run(_cfg(), mixed, tiny_model, gap=3e-3, scale=50.0)
    assert not plan.degenerate and plan.sweeps and plan.circuit is None
    assert any("Circuit discovery was skipped" in n for n in plan.notes)
    assert plan_run(_cfg(), mixed, tiny_model, gap=3e-3, scale=5.0).circuit == "eap-ig"
