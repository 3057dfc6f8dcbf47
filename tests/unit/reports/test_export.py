"""Figures out (reports/export.py, reports/style.py, `circuitwise figures`): the exported figures are the
page's, styled as the page draws them, each with its download buttons; bad folders, names and options are
refused before any work, and an export folder is replaced whole or not at all. The drawing itself (SVG and
PNG through headless Chromium) is tested in test_export_browser.py."""

from __future__ import annotations

import json
import os
import re

import plotly.graph_objects as go
import pytest

from circuitwise.config import RunConfig
from circuitwise.errors import CircuitwiseError, ConfigError, OutputError, SchemaError
from circuitwise.pipeline import run
from circuitwise.reports import export, style
from circuitwise.reports.html import figure_html
from circuitwise.schema import load_results
from tests.unit.cli.conftest import invoke

RUN_FIGURES = ["logit-lens", "dla-layers", "dla-heads", "attention-top-heads", "patching-resid_pre", "patching-heads",
               "patching-heads_by_pos", "attention-patching", "circuit", "faithfulness_curve", "mib", "agreement"]


@pytest.fixture(scope="session")
def run_dir(tmp_path_factory, tiny_model):
    """A whole run of the tiny model (every stage: DLA, three sweeps, a circuit with its evaluation)."""
    out = tmp_path_factory.mktemp("export") / "run"
    run(RunConfig(task="opposites-seed", model="tiny", out=out, top_k=2), model=tiny_model)
    return out


def _page_figure_ids(run_dir) -> list[str]:
    text = (run_dir / "report.html").read_text(encoding="utf-8")
    return re.findall(r'<div id="(fig-[^"]+)" class="plotly-graph-div"', text)


def test_every_figure_of_the_page_is_exported_under_its_name(run_dir):
    figs = export.figures(run_dir)
    assert list(figs) == RUN_FIGURES
    # Every figure the written report draws is exported; beyond them only the circuit's stored figures
    # (the static drawing, where the page shows the circuit interactively instead).
    on_page = [export.figure_name(div_id) for div_id in _page_figure_ids(run_dir)]
    assert on_page == [n for n in RUN_FIGURES if n in on_page] and len(on_page) >= len(RUN_FIGURES) - 1
    assert set(figs) - set(on_page) <= set(load_results(run_dir).circuit.figures)


def test_the_exported_figures_hold_the_results_numbers(run_dir):
    r = load_results(run_dir)
    figs = export.figures(run_dir)
    assert list(figs["logit-lens"].data[0].y) == r.dla.logit_lens.values
    assert list(figs["logit-lens"].data[0].x) == r.dla.logit_lens.labels
    assert list(figs["dla-layers"].data[0].y) == r.dla.layers.values
    assert [list(row) for row in figs["dla-heads"].data[0].z] == r.dla.heads
    assert [list(row) for row in figs["patching-resid_pre"].data[0].z] == r.patching["resid_pre"].values
    # The circuitsvis attention views' twins: one heatmap a head, its query × key pattern as results.json has it.
    from circuitwise.reports.figures import ATTENTION_COLUMNS

    for name, att in (("attention-top-heads", r.attention), ("attention-patching", r.patching_attention)):
        (trace,) = figs[name].data  # one heatmap, a block a head (ATTENTION_COLUMNS a row), each titled
        T = len(att.tokens)
        blocks = [[list(row[(i % ATTENTION_COLUMNS) * (T + 1):][:T])
                   for row in trace.z[(i // ATTENTION_COLUMNS) * (T + 2):][:T]] for i in range(len(att.heads))]
        assert blocks == att.patterns
        assert [a.text for a in figs[name].layout.annotations] == att.heads
        assert list(figs[name].layout.xaxis.ticktext[:T]) == att.tokens
    # The circuit's figures come from results.json as stored (built by the evaluation), restyled only.
    stored = go.Figure(r.circuit.figures["faithfulness_curve"])
    assert [list(t.y) for t in figs["faithfulness_curve"].data] == [list(t.y) for t in stored.data]
    assert figs["faithfulness_curve"].layout.title.text == stored.layout.title.text


def test_one_style_for_the_page_and_the_exports(run_dir):
    figs = export.figures(run_dir)
    for name, fig in figs.items():
        assert fig.layout.template == style.TEMPLATE, name
    t = style.TEMPLATE.layout
    assert t.font.family == style.FONT and t.margin.l == style.MARGIN["l"] and t.colorscale.diverging
    # The page draws the same template: every figure's JSON in report.html carries its font.
    html = (run_dir / "report.html").read_text(encoding="utf-8")
    assert html.count(json.dumps(style.FONT)[1:-1]) >= len(figs)
    # A figure built elsewhere with plotly's own template (the evaluation's curves) is restyled, not left as is.
    plain = go.Figure(go.Scatter(y=[1, 2]), layout=dict(template="plotly_dark", height=321))
    restyled = style.styled(plain)
    assert restyled.layout.template == style.TEMPLATE and restyled.layout.height == 321
    assert plain.layout.template != style.TEMPLATE  # the caller's figure is not changed


def test_every_figure_on_a_page_has_png_and_svg_download_buttons():
    out = str(figure_html(go.Figure(go.Bar(x=[1], y=[2])), "fig-x"))
    config = re.search(r'"toImageButtonOptions": (\{[^}]*\})', out)
    assert config and json.loads(config.group(1)) == {"format": "png", "filename": "fig-x", "scale": style.SCALE}
    # The SVG button is JavaScript (a click function), placed where the config's marker was.
    assert "__circuitwise_svg_button__" not in out
    assert f'"title":"{style.SVG_TITLE}"' in out
    assert 'Plotly.downloadImage(gd,{"format": "svg", "filename": "fig-x"})' in out
    # ... inside the drawing that waits for plotly.js (Plotly.Icons is only defined once it is there).
    assert out.index("cwQueue") < out.index("Plotly.Icons")


def test_only_picks_figures_and_a_wrong_name_lists_the_others(run_dir):
    figs = export.figures(run_dir)
    assert list(export.select(figs, ["circuit", "dla-heads", "circuit"])) == ["circuit", "dla-heads"]
    assert export.select(figs, None) is figs
    with pytest.raises(ConfigError, match="No figure named dla-head, bogus.*its figures are: logit-lens"):
        export.select(figs, ["dla-head", "bogus"])


def test_folders_without_figures_are_refused_with_what_to_give(tmp_path, run_dir):
    with pytest.raises(ConfigError, match="does not exist"):
        export.figures(tmp_path / "missing")
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match="is a file"):
        export.figures(tmp_path / "file")
    alone = tmp_path / "alone"
    alone.mkdir()
    (alone / "circuit.json").write_text("{}")
    with pytest.raises(ConfigError, match="no results.json, compare.json, evaluation.json or patching.json"):
        export.figures(alone)
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "results.json").write_text('{"format": "something else"}')
    with pytest.raises(SchemaError):
        export.figures(bad)


def test_options_out_of_range_are_refused():
    for kwargs, message in (({"formats": ("jpg",)}, "Unknown figure format"), ({"formats": ()}, "none given"),
                            ({"width": 5}, "--width 5"), ({"scale": 0}, "--scale 0")):
        with pytest.raises(ConfigError, match=message):
            export.ExportOptions(**kwargs)


def test_out_must_be_its_own_folder(tmp_path, run_dir):
    for bad in (run_dir, run_dir / "figures", run_dir.parent):
        with pytest.raises(OutputError, match="run folder"):
            export.check_out(bad, run_dir)
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "mine.txt").write_text("keep")
    with pytest.raises(OutputError, match="did not write"):
        export.check_out(notes, run_dir)
    export.check_out(tmp_path / "new", run_dir)
    assert export.default_out(run_dir) == run_dir.parent / "run-figures"


def test_an_export_replaces_the_previous_one_whole_or_not_at_all(tmp_path, run_dir):
    out = tmp_path / "figs"
    first = export.write({("a", "svg"): b"<svg/>", ("b", "png"): b"png"}, out, {"n": 1})
    assert sorted(p.name for p in first.values()) == ["a.svg", "b.png"]
    export.check_out(out, run_dir)  # a folder an export wrote may be written again
    export.write({("c", "svg"): b"<svg/>"}, out, {"n": 2})
    assert sorted(os.listdir(out)) == [".circuitwise.json", "c.svg"]  # no figure of the last export lingers
    # A write that fails half-way (the second file cannot be created) leaves the previous export as it was.
    with pytest.raises(OutputError):
        export.write({("d", "svg"): b"<svg/>", ("no/such", "svg"): b"<svg/>"}, out, {"n": 3})
    assert sorted(os.listdir(out)) == [".circuitwise.json", "c.svg"]
    assert sorted(os.listdir(tmp_path)) == ["figs"]  # no staging folder left behind


def test_without_a_browser_the_error_says_how_to_install_one(tmp_path, run_dir, monkeypatch):
    monkeypatch.delenv(export.BROWSER_ENV, raising=False)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(CircuitwiseError, match="apt-get install chromium.*download buttons.*work offline") as e:
        export.save_figures(run_dir, tmp_path / "figs")
    assert type(e.value) is CircuitwiseError
    assert not (tmp_path / "figs").exists()
    monkeypatch.setenv(export.BROWSER_ENV, str(tmp_path / "no-chromium"))
    with pytest.raises(ConfigError, match="CIRCUITWISE_CHROMIUM"):
        export.find_browser()


def test_cli_refuses_bad_input_before_any_work(tmp_path, run_dir):
    out = tmp_path / "figs"
    r = invoke("figures", tmp_path / "missing", "--out", out)
    assert r.exit_code == 2 and "does not exist" in r.output
    r = invoke("figures", run_dir, "--only", "bogus", "--out", out)
    assert r.exit_code == 2 and "No figure named bogus" in r.output and "dla-heads" in r.output
    r = invoke("figures", run_dir, "--format", "jpg", "--out", out)
    assert r.exit_code == 2 and "svg, png, both" in r.output
    r = invoke("figures", run_dir, "--out", run_dir / "figures")
    assert r.exit_code == 3 and "run folder" in r.output
    r = invoke("figures", run_dir, "--width", "3", "--out", out)
    assert r.exit_code == 2 and "--width 3" in r.output
    assert not out.exists() and not (run_dir / "figures").exists()


def _fake_browser(tmp_path, script: str):
    path = tmp_path / "fake-chromium"
    path.write_text("#!/bin/sh\n" + script)
    path.chmod(0o755)
    return path


def test_a_browser_that_fails_leaves_nothing_written(tmp_path, run_dir, monkeypatch):
    out = tmp_path / "figs"
    monkeypatch.setenv(export.BROWSER_ENV, str(_fake_browser(tmp_path, "echo broken >&2; exit 1\n")))
    with pytest.raises(CircuitwiseError, match=r"(?s)exited \(1\) before drawing the figures.*broken"):
        export.save_figures(run_dir, out)
    # One that draws nothing for a figure (plotly.js threw) names the figure and the format.
    dom = '<pre data-job="0" data-kind="error">Error: bad figure</pre><div id="done">done</div>'
    monkeypatch.setenv(export.BROWSER_ENV, str(_fake_browser(tmp_path, f"echo '{dom}'\n")))
    with pytest.raises(CircuitwiseError, match="could not draw figure dla-heads as svg: Error: bad figure"):
        export.save_figures(run_dir, out, formats=("svg",), only=["dla-heads"])
    assert sorted(os.listdir(tmp_path)) == ["fake-chromium"]


def test_a_circuit_folders_figures_export_from_its_evaluation_json(tmp_path, tiny_model):
    """`circuitwise circuit` keeps circuit.html's figures in evaluation.json; they export from the file alone,
    equal to the figures the evaluation drew; a file from before that is refused with the way to a new one."""
    import json

    import circuitwise as cw
    from circuitwise.circuits import find_circuit
    from circuitwise.evaluation import evaluate_circuit
    from circuitwise.reports.study import write_outputs

    tok, _ = cw.tokenize_task(tiny_model, cw.get_task("opposites-seed"), need_corrupted=True)
    found = find_circuit(tiny_model, tok, method="eap", selection="top-n", n=6)
    ev = evaluate_circuit(tiny_model, tok, found.circuit, scores=found.scores, random_samples=2, shortlist=0)
    out = tmp_path / "study"
    write_outputs(out, found.circuit, ev, found.scores)
    figs = export.figures(out)
    assert list(figs) == list(ev.figures()) and figs
    for name, fig in ev.figures().items():
        assert [t.type for t in figs[name].data] == [t.type for t in fig.data]
        assert len(figs[name].data) == len(fig.data)
    data = json.loads((out / "evaluation.json").read_text())
    del data["figures"]
    (out / "evaluation.json").write_text(json.dumps(data))
    with pytest.raises(ConfigError, match="written before evaluation files kept their figures.*evaluate"):
        export.figures(out)


def test_a_patch_folders_sweeps_export_as_the_run_report_draws_them(tmp_path):
    """A `patch` folder holds patching.json only: each sweep exports under the run report's name
    (patching-<sweep>, and -attribution for its estimate), holding the file's numbers."""
    from circuitwise.schema.patching import PatchingFile

    out = tmp_path / "p"
    r = invoke("patch", "opposites", "--model", "bundled", "--n", "6", "--patch", "heads", "--patch", "resid_pre",
               "--method", "both", "--out", out)
    assert r.exit_code == 0, r.output
    pf = PatchingFile.load(out)
    figs = export.figures(out)
    assert set(figs) == {f"patching-{w}{s}" for w in ("heads", "resid_pre") for s in ("", "-attribution")}
    for what, entry in pf.sweeps.items():
        assert [list(row) for row in figs[f"patching-{what}"].data[0].z] == entry.exact.values
        assert [list(row) for row in figs[f"patching-{what}-attribution"].data[0].z] == entry.attribution.values


def _drawing_browser(tmp_path):
    """A stand-in Chromium that 'draws' every job as a tiny SVG (the folder logic, not the drawing, is tested)."""
    rows = "".join(f'<pre data-job="{i}" data-kind="image">data:image/svg+xml,%3Csvg%2F%3E</pre>' for i in range(64))
    return _fake_browser(tmp_path, f"echo '{rows}<div id=\"done\">done</div>'\n")


def test_an_export_of_other_settings_is_replaced_only_with_force(tmp_path, run_dir, monkeypatch):
    # It was replaced silently (the PNGs of `--format both` gone after `--format svg`), and figures had no --force.
    monkeypatch.setenv(export.BROWSER_ENV, str(_drawing_browser(tmp_path)))
    out = tmp_path / "figs"
    assert invoke("figures", run_dir, "--out", out).exit_code == 0
    before = _files_of(out)
    assert len(before) > 10  # more than RunFolder allows of files it does not know: still this export's own
    r = invoke("figures", run_dir, "--format", "svg", "--out", out)
    assert r.exit_code == 3 and "other settings" in r.output and "formats" in r.output and "--force" in r.output
    assert _files_of(out) == before
    assert invoke("figures", run_dir, "--format", "svg", "--out", out).exit_code == 3  # still refused
    r = invoke("figures", run_dir, "--format", "svg", "--out", out, "--force")
    assert r.exit_code == 0, r.output
    assert not any(name.endswith(".png") for name in _files_of(out))
    assert invoke("figures", run_dir, "--format", "svg", "--out", out).exit_code == 0  # the same settings: again
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fake-chromium", "figs"]  # no lock, no staging


def test_figures_into_another_commands_folder_names_it_and_a_busy_one_is_exit_4(tmp_path, run_dir, monkeypatch):
    from circuitwise.runfolder import MARKER, RunFolder

    monkeypatch.setenv(export.BROWSER_ENV, str(_drawing_browser(tmp_path)))
    mib = tmp_path / "mib"
    (mib / "eap" / "t_m").mkdir(parents=True)
    (mib / MARKER).write_text(json.dumps({"command": "mib", "settings": {}, "complete": True}))
    r = invoke("figures", run_dir, "--out", mib)
    # It said the folder held 'files circuitwise did not write'.
    assert r.exit_code == 3 and "holds the results of `circuitwise mib`" in r.output, r.output
    out = tmp_path / "figs"
    with RunFolder(out, command="figures"):
        r = invoke("figures", run_dir, "--out", out)
    assert r.exit_code == 4 and "Another circuitwise command" in r.output, r.output
    assert not out.exists()


def test_ctrl_c_while_drawing_is_exit_130_and_leaves_no_lock(tmp_path, run_dir, monkeypatch):
    def stopped(*_a, **_k):
        raise KeyboardInterrupt

    monkeypatch.setattr(export, "_dump_dom", stopped)
    monkeypatch.setenv(export.BROWSER_ENV, str(_drawing_browser(tmp_path)))
    r = invoke("figures", run_dir, "--out", tmp_path / "figs")
    assert r.exit_code == 130 and "Nothing was written" in r.output, r.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fake-chromium"]


def _files_of(out):
    return {p.name: p.read_bytes() for p in out.iterdir() if p.name != ".circuitwise.json"}
