"""The one look of circuitwise's figures, and the page's download buttons.

Every plotly figure passes through :func:`figure_div` on its way into a page (the run report, compare,
circuit.html, notebook displays), which applies :data:`TEMPLATE` (fonts, sizes, colours, margins) and
the figure config with its download buttons; :mod:`circuitwise.reports.export` draws the same styled
figures to SVG and PNG. A figure built elsewhere (evaluation's curves, the circuit drawing stored in
results.json) gets the same look here, where it is drawn, so no figure needs to know about the style.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from functools import lru_cache
from pathlib import Path
from typing import Any

import plotly.graph_objects as go
import plotly.io as pio

# The page's CSS font first (reports/html.py), then what every system has, so an SVG opened
# elsewhere falls back to a similar sans-serif.
FONT = "system-ui, -apple-system, 'Segoe UI', Roboto, 'Helvetica Neue', Arial, sans-serif"
FONT_SIZE = 13
TITLE_SIZE = 15
TEXT_COLOR = "#1d1d1f"
# Signed quantities (logit differences, restored fractions) centre a diverging scale on zero.
DIVERGING = "RdBu"
POSITIVE, NEGATIVE, NEUTRAL = "#2166ac", "#b2182b", "#888888"
# Quantities from 0 to 1 (attention weights) run white to the positive colour.
SEQUENTIAL = "Blues"
COLORWAY = ["#2166ac", "#c2410c", "#31a354", "#756bb1", "#4b5563", "#d62728", "#17becf", "#bcbd22"]
MARGIN = {"l": 60, "r": 20, "t": 50, "b": 60}
# An exported figure's size when neither the call nor the figure gives one (the report's column is
# about this wide); PNGs are drawn at SCALE times it, for sharp text on high-density screens.
WIDTH, HEIGHT, SCALE = 900, 400, 2


def _template() -> go.layout.Template:
    base = go.layout.Template(pio.templates["plotly_white"])
    base.layout.update(
        font={"family": FONT, "size": FONT_SIZE, "color": TEXT_COLOR},
        title={"font": {"size": TITLE_SIZE}, "x": 0.01, "xanchor": "left"},
        margin=MARGIN, colorway=COLORWAY, colorscale={"diverging": DIVERGING},
        legend={"font": {"size": FONT_SIZE - 1}}, hoverlabel={"font": {"family": FONT}},
    )
    return base


TEMPLATE = _template()
_TEMPLATE_JSON = TEMPLATE.to_plotly_json()


# plotly.js as every page and export inlines it: the official cartesian bundle of the version plotly.py
# embeds (vendor/README.md says why and where from), a third of the full bundle plotly.py ships.
PLOTLY_BUNDLE = Path(__file__).parent / "vendor" / "plotly-cartesian.min.js"


@lru_cache(maxsize=1)
def plotly_js() -> str:
    """The plotly.js source every page, notebook output and figure export inlines (never a CDN)."""
    return PLOTLY_BUNDLE.read_text(encoding="utf-8")


def styled(fig: go.Figure | dict[str, Any]) -> go.Figure:
    """A copy of ``fig`` in circuitwise's style (its own template, if any, replaced; its data and sizes kept)."""
    return go.Figure(_styled_json(fig))


def _styled_json(fig: go.Figure | dict[str, Any]) -> dict[str, Any]:
    # As plain JSON: assigning a Template object re-validates all of it, for every figure of a page.
    data = fig.to_plotly_json() if isinstance(fig, go.Figure) else fig
    return {**data, "layout": {**data.get("layout", {}), "template": _TEMPLATE_JSON}}


def config(name: str) -> dict[str, Any]:
    """The plotly config of a figure drawn as ``name``: the modebar's camera saves a PNG, a second
    button an SVG (both drawn in the browser, offline), named after the figure."""
    return {"displaylogo": False, "responsive": True,
            "toImageButtonOptions": {"format": "png", "filename": name, "scale": SCALE},
            "modeBarButtonsToAdd": [_SVG_BUTTON]}


# A modebar button's click is a function, which JSON cannot hold: the config carries this marker and
# figure_div puts the button's JavaScript in its place (it runs where Plotly is defined: the drawing
# waits for plotly.js).
_SVG_BUTTON = "__circuitwise_svg_button__"
SVG_TITLE = "Download plot as an SVG"


def _svg_button_js(name: str) -> str:
    opts = json.dumps({"format": "svg", "filename": name}).replace("<", "\\u003c")
    return ('{"name":"downloadSvg","title":' + json.dumps(SVG_TITLE) + ',"icon":Plotly.Icons["camera-retro"],'
            '"click":function(gd){Plotly.downloadImage(gd,' + opts + ");}}")


_recording: ContextVar[dict[str, go.Figure] | None] = ContextVar("circuitwise_figures", default=None)


@contextmanager
def recording() -> Iterator[dict[str, go.Figure]]:
    """Collect, by div id, every figure that :func:`figure_div` draws inside the block (styled): the
    figures of a page exactly as the page shows them."""
    figs: dict[str, go.Figure] = {}
    token = _recording.set(figs)
    try:
        yield figs
    finally:
        _recording.reset(token)


def figure_div(fig: go.Figure | dict[str, Any], div_id: str) -> str:
    """The figure's div and plotly's drawing script, styled and with the download buttons."""
    data = _styled_json(fig)
    figs = _recording.get()
    if figs is not None:
        figs[div_id] = go.Figure(data)
    out: str = pio.to_html(data, full_html=False, include_plotlyjs=False, div_id=div_id, config=config(div_id),
                           validate=False)
    return out.replace(json.dumps(_SVG_BUTTON), _svg_button_js(div_id))


__all__ = ["COLORWAY", "DIVERGING", "FONT", "HEIGHT", "MARGIN", "NEGATIVE", "NEUTRAL", "PLOTLY_BUNDLE", "POSITIVE",
           "SCALE", "SEQUENTIAL", "SVG_TITLE", "TEMPLATE", "WIDTH", "config", "figure_div", "plotly_js", "recording",
           "styled"]
