"""The vendored plotly.js (reports/vendor): plotly.py's own version, and every trace type circuitwise draws."""

from __future__ import annotations

import re
from pathlib import Path

from circuitwise.reports import style

SRC = Path(style.__file__).parents[1]


def test_the_bundle_is_the_plotly_js_version_plotly_py_embeds():
    from plotly.offline import get_plotlyjs

    ours = re.search(r"plotly\.js \(cartesian - minified\) v([0-9.]+)", style.plotly_js()[:400])
    theirs = re.search(r"plotly\.js v([0-9.]+)", get_plotlyjs()[:400])
    assert ours and theirs and ours.group(1) == theirs.group(1), \
        "plotly.py was upgraded: vendor the cartesian bundle of its plotly.js (reports/vendor/README.md)"


def test_every_trace_type_circuitwise_draws_is_in_the_bundle():
    used = set()
    for path in SRC.rglob("*.py"):
        used |= {name.lower() for name in re.findall(r"\bgo\.([A-Z][a-z0-9]+)\(", path.read_text(encoding="utf-8"))}
    used -= {"figure"}
    assert {"bar", "box", "heatmap", "scatter"} <= used  # the scan finds the figures' traces
    bundle = style.plotly_js()
    missing = [t for t in sorted(used) if f'moduleType:"trace",name:"{t}"' not in bundle]
    assert not missing, f"{missing} are not in the cartesian bundle: vendor a bundle that has them"
