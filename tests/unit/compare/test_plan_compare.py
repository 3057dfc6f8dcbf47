"""A comparison plans before it works: what cannot apply is skipped with a note, never a crash part-way."""

from __future__ import annotations

import json

import circuitwise as cw
from circuitwise.reports.compare import build_compare_page
from circuitwise.runfolder import RunFolder
from tests.unit.compare.conftest import invoke
from tests.unit.compare.known_forms import ROUTES, form_task


def test_tasks_without_corrupted_prompts_skip_patching_and_circuits_with_notes(tmp_path, two_route):
    _, _, model = two_route
    plain = [cw.Task(t.name, tuple(cw.Example(e.clean, e.correct, e.incorrect, meta=e.meta) for e in t.examples))
             for t in (form_task("upper"), form_task("lower"))]
    out = cw.compare(*plain, model=model, out=tmp_path / "plain", pairing="paired")  # Tasks and a loaded model
    r = out.results
    assert r.complete and r.patching is None and r.circuits is None and r.a.patching is None
    assert any("no corrupted prompts" in n for n in r.notes) and r.circuits_skipped
    assert set(r.heads.flagged()) == {ROUTES["upper"], ROUTES["lower"]}
    assert "Circuits" in out.page.read_text()


def test_models_of_other_shapes_are_shown_side_by_side_without_a_difference(tmp_path, two_route, small_model):
    root, _, model = two_route
    out = cw.compare(str(root / "upper.jsonl"), model=model, model_b=small_model, out=tmp_path / "shapes",
                     patching=False, circuit=None)
    r = out.results
    assert r.pairing.kind == "same-prompts"  # one task on two models: paired
    assert r.heads is None and r.logit_diff is not None and r.attention is None
    assert len(r.b.heads_dla) == 4 and len(r.a.heads_dla) == 2
    assert any("different layers × heads" in n for n in r.notes)
    # 2 layers against 4: the lens and the layers are compared by relative depth, and said so
    assert r.lens is not None and "0_pre ~ 1_pre" in r.lens.cells and "final_post" in r.lens.cells
    assert any("relative depth" in n for n in r.notes)
    html = build_compare_page(r.model_dump(mode="json")).render()
    assert "fig-cmp-lens" in html and "fig-cmp-heads-b" in html
    assert "fig-cmp-heads-diff" not in html


def test_a_folder_another_command_is_writing_is_exit_4_and_left_alone(tmp_path, two_route):
    root, ckpt, _ = two_route
    out = tmp_path / "busy"
    with RunFolder(out):
        r = invoke("compare", root / "upper.jsonl", "--model", ckpt, "--out", out, "--no-patching", "--circuit", "none")
    assert r.exit_code == 4 and "Another circuitwise command" in r.output
    assert not (out / "compare.json").exists()


def test_compare_json_is_strict_json_and_the_sweeps_resumable(forms_run):
    out, r = forms_run
    text = (out / "compare.json").read_text()
    json.loads(text, parse_constant=lambda c: (_ for _ in ()).throw(ValueError(c)))  # no NaN/Infinity
    assert r["patching"] is not None and any((out / ".patching").iterdir())  # checkpoints of both sides' sweeps


def test_a_corruption_that_changes_nothing_is_noted_not_a_crash(tmp_path, two_route):
    _, _, model = two_route
    same = [cw.Task(t.name, tuple(cw.Example(e.clean, e.correct, e.incorrect, corrupted=e.clean, meta=e.meta)
                                  for e in t.examples)) for t in (form_task("upper"), form_task("lower"))]
    r = cw.compare(*same, model=model, out=tmp_path / "degenerate", pairing="paired").results
    assert r.complete and r.patching is None and r.circuits is None
    assert r.a.patching_degenerate and all(v is None for row in r.a.patching for v in row)  # empty, never clipped
    assert any("almost the same logit difference" in n for n in r.notes)
    assert any("Circuit discovery was skipped" in n for n in r.notes)
    assert set(r.heads.flagged()) == {ROUTES["upper"], ROUTES["lower"]}  # the rest of the comparison stands
