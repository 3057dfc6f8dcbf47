"""Figures drawn in headless Chromium: the exported SVGs parse and hold the figures' marks, the PNGs have
the asked size, and in the report itself (offline) every figure's download buttons exist and plotly.js
draws each figure to SVG and PNG, with the same marks as the exported files.

Skipped without Chromium; CIRCUITWISE_REQUIRE_BROWSER=1 (CI) turns that into a failure.
"""

from __future__ import annotations

import html
import json
import os
import re
import struct
import subprocess
import xml.etree.ElementTree as ET

import pytest

from circuitwise.reports import export, style
from circuitwise.schema import load_results
from tests.unit.reports.test_export import RUN_FIGURES, run_dir  # noqa: F401  (the run folder fixture)

pytestmark = pytest.mark.browser
WIDTH, SCALE = 640, 1.5


def _browser() -> str:
    browser = export.find_browser()
    if browser is None:
        if os.environ.get("CIRCUITWISE_REQUIRE_BROWSER") == "1":
            pytest.fail("chromium is not installed; .ci/run installs Debian's chromium package")
        pytest.skip("chromium not installed (apt-get install chromium)")
    return browser


@pytest.fixture(scope="module")
def exported(run_dir, tmp_path_factory):  # noqa: F811
    _browser()
    out = tmp_path_factory.mktemp("exported") / "figs"
    paths = export.save_figures(run_dir, out, width=WIDTH, scale=SCALE)
    return out, paths


def _marks(root: ET.Element) -> dict[str, object]:
    """What a drawn plotly figure shows, counted by plotly's class names (the same in the page and an SVG)."""
    classes = [c.split() for el in root.iter() if (c := el.attrib.get("class"))]
    count = lambda name: sum(1 for c in classes if name in c)  # noqa: E731
    title = next(("".join(el.itertext()) for el in root.iter() if "gtitle" in el.attrib.get("class", "").split()), "")
    return {"points": count("point"), "texts": count("textpoint"), "heatmaps": count("hm"), "title": title}


def test_exported_svgs_parse_and_hold_every_mark_of_the_figure(exported, run_dir):  # noqa: F811
    out, paths = exported
    assert sorted(paths) == sorted(f"{n}.{f}" for n in RUN_FIGURES for f in ("svg", "png"))
    figs = export.figures(run_dir)
    r = load_results(run_dir)
    for name, fig in figs.items():
        root = ET.parse(out / f"{name}.svg").getroot()
        assert root.tag == "{http://www.w3.org/2000/svg}svg"
        assert root.attrib["width"] == str(WIDTH) and root.attrib["height"] == str(fig.layout.height)
        marks = _marks(root)
        assert marks["title"] == html.unescape(fig.layout.title.text), name
    # A bar per layer component, a marker per logit-lens point, one heatmap with a tick per head and layer.
    assert _marks(ET.parse(out / "dla-layers.svg").getroot())["points"] == len(r.dla.layers.values)
    assert _marks(ET.parse(out / "logit-lens.svg").getroot())["points"] == len(r.dla.logit_lens.values)
    heads = ET.parse(out / "dla-heads.svg").getroot()
    assert _marks(heads)["heatmaps"] == 1
    # The attention views' twins: one heatmap of a block a head, each head's name above its block.
    att = ET.parse(out / "attention-top-heads.svg").getroot()
    assert _marks(att)["heatmaps"] == 1
    assert set(r.attention.heads) <= {"".join(e.itertext()) for e in att.iter()}
    ticks = lambda axis: ["".join(e.itertext()) for e in heads.iter() if e.attrib.get("class") == axis]  # noqa: E731
    assert ticks("xtick") == [str(h) for h in range(len(r.dla.heads[0]))]
    assert sorted(ticks("ytick")) == [str(layer) for layer in range(len(r.dla.heads))]
    # The agreement plot: one point per shortlisted edge; the circuit drawing: a text per labelled node.
    agreement = r.circuit.figures["agreement"]["data"][0]
    assert _marks(ET.parse(out / "agreement.svg").getroot())["points"] == len(agreement["x"])
    circuit_texts = sum(len(t.get("text") or []) for t in r.circuit.figures["circuit"]["data"]
                        if "text" in (t.get("mode") or ""))
    assert _marks(ET.parse(out / "circuit.svg").getroot())["texts"] == circuit_texts > 0


def test_pngs_have_the_png_signature_and_the_asked_size(exported, run_dir):  # noqa: F811
    out, _ = exported
    figs = export.figures(run_dir)
    for name, fig in figs.items():
        data = (out / f"{name}.png").read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR", name
        width, height = struct.unpack(">II", data[16:24])
        assert (width, height) == (round(WIDTH * SCALE), round(fig.layout.height * SCALE)), name


def test_cli_writes_only_the_asked_format_and_figures(run_dir, tmp_path):  # noqa: F811
    from tests.unit.cli.conftest import invoke

    _browser()
    out = tmp_path / "figs"
    r = invoke("figures", run_dir, "--format", "svg", "--only", "dla-heads", "--only", "circuit", "--height", "300",
               "--out", out)
    assert r.exit_code == 0 and "Wrote 2 files" in r.output
    assert sorted(os.listdir(out)) == [".circuitwise.json", "circuit.svg", "dla-heads.svg"]
    assert ET.parse(out / "circuit.svg").getroot().attrib["height"] == "300"


_CHECK = """
<script>
window.addEventListener("load", async function () {
  await new Promise(function (r) { setTimeout(r, 200); });
  var out = {}, pending = [], download = Plotly.downloadImage;
  // The SVG button's click saves through Plotly.downloadImage: watch it finish (headless keeps no file).
  Plotly.downloadImage = function (gd, opts) { var p = download(gd, opts); pending.push(p); return p; };
  for (const gd of document.querySelectorAll(".plotly-graph-div")) {
    var count = function (sel) { return gd.querySelectorAll(sel).length; };
    var title = gd.querySelector(".gtitle");
    var r = {points: count(".point"), texts: count(".textpoint"), heatmaps: count(".hm"),
             title: title ? title.textContent : "",
             png_button: count('.modebar-btn[data-title="Download plot as a PNG"]'),
             svg_button: count('.modebar-btn[data-title="SVG_TITLE"]')};
    var svg = await Plotly.toImage(gd, {format: "svg", width: 500, height: 300});
    var png = await Plotly.toImage(gd, {format: "png", width: 500, height: 300});
    r.svg = decodeURIComponent(svg.slice(svg.indexOf(",") + 1)).slice(0, 200);
    r.png = png.slice(0, 22);
    pending = [];
    gd.querySelector('.modebar-btn[data-title="SVG_TITLE"]').click();
    r.svg_download = pending.length ? await pending[0] : null;
    out[gd.id] = r;
  }
  var pre = document.createElement("pre"); pre.id = "cw-check"; pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});
</script>
""".replace("SVG_TITLE", style.SVG_TITLE)


def test_the_pages_buttons_and_plotly_to_image_work_offline_and_match_the_export(exported, run_dir,  # noqa: F811
                                                                                   tmp_path):
    out, _ = exported
    page = (run_dir / "report.html").read_text(encoding="utf-8")
    checked = tmp_path / "report.html"
    checked.write_text(page.replace("</body>", _CHECK + "</body>"), encoding="utf-8")
    # As the report test opens it: offline, logging the console (a console message is a failure).
    cmd = [_browser(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           "--disable-dev-shm-usage", f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr",
           "--v=0", "--virtual-time-budget=30000", "--dump-dom", checked.as_uri()]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    console = [line for line in proc.stderr.splitlines() if ":CONSOLE" in line]
    assert console == [], "console messages:\n" + "\n".join(console)
    m = re.search(r'<pre id="cw-check">(.*?)</pre>', proc.stdout, re.S)
    assert m, "the check script did not finish"
    drawn = json.loads(html.unescape(m.group(1)))
    names = {div_id: export.figure_name(div_id) for div_id in drawn}
    assert set(names.values()) <= set(RUN_FIGURES) and len(names) >= len(RUN_FIGURES) - 1
    for div_id, d in drawn.items():
        assert d["png_button"] == 1 and d["svg_button"] == 1, div_id
        assert d["svg_download"] == f"{div_id}.svg", div_id
        assert d["svg"].startswith("<svg") and d["png"] == "data:image/png;base64,", div_id
        # The exported file shows what the page shows: the same title and the same marks.
        exported_marks = _marks(ET.parse(out / f"{names[div_id]}.svg").getroot())
        assert {k: d[k] for k in exported_marks} == exported_marks, div_id
