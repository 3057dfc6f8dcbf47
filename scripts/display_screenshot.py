"""Render docs/display.png: a notebook cell's DLA display on the bundled model, through headless Chromium.

    .venv/bin/python scripts/display_screenshot.py      # needs Debian's chromium; runs offline
"""

from __future__ import annotations

import html
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import circuitwise as cw

OUT = Path(__file__).resolve().parents[1] / "docs" / "display.png"
SOURCE = "dla = cw.direct_logit_attribution(model, tok)\nprint(repr(dla))\ndla"


def page() -> str:
    model = cw.load_model("bundled", device="cpu")
    tok, _ = cw.tokenize_task(model, cw.get_task("opposites-seed"))
    dla = cw.direct_logit_attribution(model, tok)
    # Laid out like a notebook cell: its number, its source, what it printed, its display.
    return ("<!DOCTYPE html><html><head><meta charset='utf-8'></head>"
            "<body style='margin:10px;font-family:sans-serif;background:#fff'><div style='display:flex'>"
            "<div style='width:70px;color:#307fc1;font:13px monospace;padding-top:6px'>[7]:</div><div style='flex:1'>"
            "<pre style='background:#f5f5f5;border:1px solid #e0e0e0;padding:6px 8px;margin:0 0 6px;font-size:13px'>"
            f"{html.escape(SOURCE)}</pre><pre style='margin:0 0 4px;font-size:12px'>{html.escape(repr(dla))}</pre>"
            f"{dla._repr_html_()}</div></div></body></html>")


def main() -> None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if chromium is None:
        sys.exit("chromium is not installed (apt-get install chromium)")
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "cell.html"
        src.write_text(page(), encoding="utf-8")
        subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                        "--disable-background-networking", f"--user-data-dir={tmp}/profile",
                        "--virtual-time-budget=15000", "--window-size=1000,1420", f"--screenshot={OUT}",
                        src.as_uri()], check=True, capture_output=True, timeout=180)
    sys.stdout.write(f"{OUT}\n")


if __name__ == "__main__":
    main()
