"""The report opens in headless Chromium with no console errors, its figures drawn.

Chromium runs offline (no network flags), so a report that loaded anything from a CDN would
fail to draw. CI installs Debian's chromium and sets CIRCUITWISE_REQUIRE_BROWSER=1, which turns a
missing browser into a failure instead of a skip.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest

from circuitwise.config import RunConfig
from circuitwise.pipeline import run

pytestmark = pytest.mark.browser

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


def _headless(url: str, tmp_path) -> tuple[str, list[str]]:
    if CHROMIUM is None:
        if os.environ.get("CIRCUITWISE_REQUIRE_BROWSER") == "1":
            pytest.fail("chromium is not installed; .ci/run installs Debian's chromium package")
        pytest.skip("chromium not installed (apt-get install chromium)")
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           "--disable-dev-shm-usage", f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr",
           "--v=0", "--virtual-time-budget=15000", "--dump-dom", url]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    console = [line for line in proc.stderr.splitlines() if ":CONSOLE" in line]
    return proc.stdout, console


def test_report_renders_with_figures_and_no_console_errors(tmp_path, tiny_model):
    cfg = RunConfig(task="opposites-seed", model="tiny", out=tmp_path / "run", top_k=2)
    outputs = run(cfg, model=tiny_model)
    dom, console = _headless(outputs.report.resolve().as_uri(), tmp_path)
    assert console == [], "console messages:\n" + "\n".join(console)
    # Each plotly figure draws an <svg class="main-svg"> into its div once plotly.js has run.
    for fig in ("fig-logit-lens", "fig-layers", "fig-heads", "fig-patch-resid_pre", "fig-patch-heads",
                "fig-patch-heads_by_pos", "fig-circuit-faithfulness_curve"):
        m = re.search(rf'<div id="{fig}"[^>]*class="[^"]*plotly-graph-div[^"]*"[^>]*>(.{{0,3000}})', dom, re.S)
        assert m and "main-svg" in m.group(1), f"figure {fig} was not drawn"
    # circuitsvis renders its React view into the div (it is empty until its script has run).
    for cv in ("cv-positive", "cv-negative", "cv-patching"):
        m = re.search(rf'<div id="{cv}" class="cv">(.{{0,400}})', dom, re.S)
        assert m and "Head Selector" in m.group(1), f"attention view {cv} was not drawn"
    # The circuit explorer replaces the static circuit figure: its SVG and edges are drawn.
    m = re.search(r'<div class="cwx" id="cwx"[^>]*>(.*)', dom, re.S)
    assert m and 'class="cwx-svg"' in m.group(1) and 'class="cwx-edge' in m.group(1), "the explorer was not drawn"
    assert "Summary" in dom and "Direct logit attribution" in dom
