"""Every figure of a report as SVG and PNG files, rebuilt from the run folder's files alone.

:func:`figures` builds the folder's page (the run report from results.json, or compare.html's from
compare.json) and keeps each figure it draws, styled as the page draws it
(:func:`circuitwise.reports.style.recording`): the exported figures are the page's, by construction.
:func:`save_figures` draws them with plotly.js in the system's headless Chromium (the copy of plotly.js
the pages inline; no kaleido, no network) in one browser run for all of a folder's figures, and
swaps the files into the output folder whole.
"""

from __future__ import annotations

import base64
import html
import json
import os
import re
import shutil
import subprocess
import tempfile
import urllib.parse
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

import plotly.graph_objects as go

from circuitwise.errors import CircuitwiseError, ConfigError, OutputError
from circuitwise.reports import style
from circuitwise.runfolder import MARKER, RunFolder, atomic_write_json, output_error, read_marker

Format = Literal["svg", "png"]
FORMATS: tuple[Format, ...] = get_args(Format)
BROWSER_ENV = "CIRCUITWISE_CHROMIUM"
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
COMMAND = "figures"
# One browser run draws every figure; a few seconds per figure at most on a slow machine.
BROWSER_TIMEOUT_S = 300


@dataclass(frozen=True)
class ExportOptions:
    """How the figures are drawn: the defaults of :func:`save_figures` and ``circuitwise figures``."""

    formats: tuple[Format, ...] = FORMATS
    # None: the figure's own size where it has one (the heatmaps' heights grow with their rows),
    # else style.WIDTH × style.HEIGHT.
    width: int | None = None
    height: int | None = None
    # PNG pixels per unit of width and height (SVG is vector: width × height).
    scale: float = style.SCALE

    def __post_init__(self) -> None:
        bad = [f for f in self.formats if f not in FORMATS]
        if bad or not self.formats:
            raise ConfigError(f"Unknown figure format(s) {bad or 'none given'}: choose from {', '.join(FORMATS)}.")
        for name in ("width", "height"):
            v = getattr(self, name)
            if v is not None and not 10 <= v <= 10000:
                raise ConfigError(f"--{name} {v} is out of range: give pixels between 10 and 10000.")
        if not 0.1 <= self.scale <= 10:
            raise ConfigError(f"--scale {self.scale} is out of range: give a factor between 0.1 and 10.")


# ---- the figures ---------------------------------------------------------------------------------

# The run report's div ids, as file names (the rest: the id without "fig-").
RUN_NAMES = {"fig-logit-lens": "logit-lens", "fig-layers": "dla-layers", "fig-heads": "dla-heads"}
RUN_PREFIXES = (("fig-patch-", "patching-"), ("fig-circuit-", ""), ("fig-", ""))
COMPARE_PREFIXES = (("fig-cmp-", ""), ("fig-", ""))


def figure_name(div_id: str, kind: Literal["run", "compare"] = "run") -> str:
    """The file name (without suffix) of the figure a page draws in the div ``div_id``."""
    names, prefixes = (RUN_NAMES, RUN_PREFIXES) if kind == "run" else ({}, COMPARE_PREFIXES)
    name = names.get(div_id)
    if name is None:
        name = next((new + div_id[len(old):] for old, new in prefixes if div_id.startswith(old)), div_id)
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def folder_kind(run_dir: Path) -> Literal["run", "compare", "study", "patch"]:
    """Which page a folder's figures come from; a clear error for anything else."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        what = "does not exist" if not run_dir.exists() else "is a file, not a folder"
        raise ConfigError(f"{run_dir} {what}: give the folder a `circuitwise run` (or `compare`) wrote, "
                          "the one holding results.json (or compare.json).")
    if (run_dir / "results.json").is_file():
        return "run"
    if (run_dir / "compare.json").is_file():
        return "compare"
    if (run_dir / "evaluation.json").is_file():
        return "study"  # `circuitwise circuit` / `evaluate --out`: circuit.html's figures, kept in evaluation.json
    if (run_dir / "patching.json").is_file():
        return "patch"  # `circuitwise patch`: each sweep's heatmap, drawn as the run report draws it
    raise ConfigError(f"{run_dir} holds no results.json, compare.json, evaluation.json or patching.json, so there "
                      "are no figures to export. Give the folder of a `circuitwise run`, `compare`, `circuit`, "
                      "`evaluate --out` or `patch`.")


def figures(run_dir: str | Path) -> dict[str, go.Figure]:
    """Every figure the folder's page shows, by file name, styled as the page draws it.

    A run folder (results.json): ``logit-lens``, ``dla-layers``, ``dla-heads``, ``attention-top-heads``,
    ``patching-<sweep>`` for each patching sweep, ``attention-patching``, and the circuit's (``circuit``,
    ``faithfulness_curve``, ``mib``, ``agreement``) as far as the run made them. A compare folder
    (compare.json): compare.html's figures (``baseline``, ``lens``, ``layers``, ``heads-a``, ``heads-b``,
    ``heads-diff``, ``patch-…``, ``circuit-a``/``-b``). A patch folder (patching.json): ``patching-<sweep>``
    and ``patching-<sweep>-attribution``. Only the folder's files are read.
    """
    run_dir = Path(run_dir)
    kind = folder_kind(run_dir)
    stored: dict[str, go.Figure] = {}
    with style.recording() as drawn:
        if kind == "run":
            from circuitwise.reports.build import build_page
            from circuitwise.schema import load_results

            results = load_results(run_dir)
            build_page(results)
            # The circuit's stored figures export even where the page does not draw them as they are
            # (the static drawing of the circuit, where the page shows an interactive view instead).
            circuit_figures = results.circuit.figures if results.circuit else {}
            stored = {name: style.styled(fig) for name, fig in circuit_figures.items()}
        elif kind == "study":
            from circuitwise.schema import EvaluationFile

            ev = EvaluationFile.load(run_dir)
            if not ev.figures:
                raise ConfigError(f"{run_dir / 'evaluation.json'} was written before evaluation files kept their "
                                  "figures. Re-check the circuit into a fresh folder to get them: `circuitwise "
                                  f"evaluate {run_dir / 'circuit.json'} TASK --out NEW_DIR` (its circuit.html's "
                                  "download buttons work either way).")
            stored = {name: style.styled(go.Figure(fig)) for name, fig in ev.figures.items()}
        elif kind == "patch":
            from circuitwise.reports.build import sweep_figure
            from circuitwise.schema.patching import PatchingFile

            # The run report's names (patching-<sweep>); a sweep's attribution estimate beside its exact values.
            for what, entry in PatchingFile.load(run_dir).sweeps.items():
                for suffix, sweep in (("", entry.exact), ("-attribution", entry.attribution)):
                    if sweep is not None:
                        stored[f"patching-{what}{suffix}"] = style.styled(sweep_figure(what, sweep))
        else:
            from circuitwise.reports.compare import build_compare_page
            from circuitwise.schema import load_compare

            build_compare_page(load_compare(run_dir).model_dump(mode="json"))
    out = {figure_name(div_id, "compare" if kind == "compare" else "run"): fig for div_id, fig in drawn.items()}
    missing = {name: fig for name, fig in stored.items() if name not in out}
    if not missing:
        return out
    # In the report's order: the circuit's figures where its first one is drawn (else last).
    first = next((i for i, name in enumerate(out) if name in stored), len(out))
    items = list(out.items())
    merged = items[:first] + [(n, stored[n] if n in missing else out[n]) for n in stored] + \
        [(n, f) for n, f in items[first:] if n not in stored]
    return dict(merged)


def select(figs: dict[str, go.Figure], only: Iterable[str] | None) -> dict[str, go.Figure]:
    """The figures named in ``only`` (all when None or empty); an unknown name is an error naming the others."""
    wanted = list(dict.fromkeys(only or ()))
    if not wanted:
        return figs
    unknown = [n for n in wanted if n not in figs]
    if unknown:
        raise ConfigError(f"No figure named {', '.join(unknown)} in this folder; its figures are: "
                          f"{', '.join(figs) or 'none'}.")
    return {n: figs[n] for n in wanted}


# ---- drawing in the browser ----------------------------------------------------------------------

def find_browser() -> str | None:
    """The Chromium to draw with: $CIRCUITWISE_CHROMIUM, else the first of BROWSERS on the PATH."""
    given = os.environ.get(BROWSER_ENV)
    if given:
        found = shutil.which(given)
        if found is None:
            raise ConfigError(f"${BROWSER_ENV} is {given!r}, which is not an executable browser. Point it at "
                              "Chromium or Chrome (e.g. /usr/bin/chromium), or unset it to search the PATH.")
        return found
    return next((p for p in map(shutil.which, BROWSERS) if p), None)


def _require_browser() -> str:
    browser = find_browser()
    if browser is None:
        raise CircuitwiseError(
            "Exporting figures needs Chromium (or Chrome), run headless; none was found on the PATH "
            f"({', '.join(BROWSERS)}). Install it (Debian/Ubuntu: apt-get install chromium; macOS: brew install "
            f"--cask chromium) or point ${BROWSER_ENV} at one. Without it, every figure of the HTML report "
            "still saves itself: the download buttons in each figure's toolbar (PNG and SVG) work offline.")
    return browser


_DRAW_JS = """
(async function () {
  var out = document.getElementById("out");
  function put(job, attr, text) {
    var p = document.createElement("pre");
    p.setAttribute("data-job", String(job)); p.setAttribute("data-kind", attr); p.textContent = text;
    out.appendChild(p);
  }
  for (var i = 0; i < JOBS.length; i++) {
    var j = JOBS[i], fig = FIGURES[j.figure];
    try {
      var url = await Plotly.toImage({data: fig.data, layout: fig.layout},
                                     {format: j.format, width: j.width, height: j.height, scale: j.scale});
      put(i, "image", url);
    } catch (e) { put(i, "error", String(e && e.message || e)); }
  }
  document.getElementById("done").textContent = "done";
})();
"""
_PAGE = ('<!DOCTYPE html><html><head><meta charset="utf-8"><script src="plotly.js"></script>'
         '<script src="figures.js"></script></head><body><div id="out"></div><div id="done"></div>'
         '<script src="draw.js"></script></body></html>')
_RESULT = re.compile(r'<pre data-job="(\d+)" data-kind="(image|error)">(.*?)</pre>', re.S)


def _size(fig: go.Figure, opts: ExportOptions) -> tuple[int, int]:
    width = opts.width or fig.layout.width or style.WIDTH
    height = opts.height or fig.layout.height or style.HEIGHT
    return int(width), int(height)


def draw(figs: dict[str, go.Figure], options: ExportOptions | None = None,
         browser: str | None = None) -> dict[tuple[str, Format], bytes]:
    """Each figure in each format, drawn by plotly.js in one headless Chromium run: ``{(name, format): bytes}``."""
    opts = options or ExportOptions()
    browser = browser or _require_browser()
    names = list(figs)
    jobs: list[dict[str, Any]] = []
    keys: list[tuple[str, Format]] = []
    for name in names:
        width, height = _size(figs[name], opts)
        for fmt in opts.formats:
            keys.append((name, fmt))
            jobs.append({"figure": name, "format": fmt, "width": width, "height": height,
                         "scale": opts.scale if fmt == "png" else 1})
    # Chromium's helpers may still be writing their profile when Ctrl-C stops the command: cleaning up
    # must not turn the interrupt into a traceback.
    with tempfile.TemporaryDirectory(prefix="circuitwise-figures-", ignore_cleanup_errors=True) as tmp:
        d = Path(tmp)
        (d / "plotly.js").write_text(style.plotly_js(), encoding="utf-8")
        data = "{" + ",".join(f"{json.dumps(n)}:{figs[n].to_json()}" for n in names) + "}"
        (d / "figures.js").write_text(f"var FIGURES={data};\nvar JOBS={json.dumps(jobs)};\n", encoding="utf-8")
        (d / "draw.js").write_text(_DRAW_JS, encoding="utf-8")
        (d / "page.html").write_text(_PAGE, encoding="utf-8")
        dom, stderr = _dump_dom(browser, d)
    found: dict[int, tuple[str, str]] = {int(m.group(1)): (m.group(2), html.unescape(m.group(3)))
                                         for m in _RESULT.finditer(dom)}
    out: dict[tuple[str, Format], bytes] = {}
    for i, (name, fmt) in enumerate(keys):
        kind, text = found.get(i, ("error", "not drawn (the browser stopped before it)"))
        if kind == "error" or "," not in text:
            tail = "\n".join(stderr.strip().splitlines()[-5:])
            raise CircuitwiseError(f"Chromium ({browser}) could not draw figure {name} as {fmt}: "
                                   f"{text}. Check that it runs headless (`{browser} --headless --dump-dom "
                                   f"about:blank`).{' Its last messages: ' + tail if tail else ''}")
        head, payload = text.split(",", 1)
        out[(name, fmt)] = (base64.b64decode(payload) if head.endswith(";base64")
                                               else urllib.parse.unquote(payload).encode("utf-8"))
    return out


def _dump_dom(browser: str, folder: Path) -> tuple[str, str]:
    cmd = [browser, "--headless", "--disable-gpu", "--no-first-run", "--no-default-browser-check",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           "--disable-extensions", "--disable-dev-shm-usage", "--allow-file-access-from-files",
           f"--user-data-dir={folder / 'profile'}", "--virtual-time-budget=60000", "--dump-dom",
           (folder / "page.html").as_uri()]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.insert(2, "--no-sandbox")  # Chromium refuses to start as root with its sandbox
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=BROWSER_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        raise CircuitwiseError(f"Chromium ({browser}) did not finish drawing the figures in {BROWSER_TIMEOUT_S} s. "
                               "Export fewer at a time with --only, or check that it runs headless.") from None
    except OSError as e:
        raise CircuitwiseError(f"Cannot start {browser}: {e}. Set ${BROWSER_ENV} to a working Chromium.") from None
    if 'id="done">done<' not in proc.stdout:
        tail = "\n".join(proc.stderr.strip().splitlines()[-5:])
        raise CircuitwiseError(f"Chromium ({browser}) exited ({proc.returncode}) before drawing the figures. "
                               f"Its last messages:\n{tail}")
    return proc.stdout, proc.stderr


# ---- writing ------------------------------------------------------------------------------------

def default_out(run_dir: str | Path) -> Path:
    """Beside the run folder, not in it: a run replaces its folder whole and keeps no subfolders of others."""
    run_dir = Path(os.path.abspath(run_dir))
    return run_dir.parent / f"{run_dir.name}-figures"


def check_out(out: Path, run_dir: Path) -> None:
    """Refuse, before any work, an --out that would mix with or replace files that are not exported figures."""
    out, run_dir = Path(os.path.abspath(out)), Path(os.path.abspath(run_dir))
    if out == run_dir or out in run_dir.parents or run_dir in out.parents:
        # A later run into that folder replaces it whole, and refuses subfolders it did not write.
        raise OutputError(f"--out {out} is, holds or lies in the run folder; give a folder of its own, e.g. "
                          f"--out {default_out(run_dir)}.")
    if out.exists() and not out.is_dir():
        raise OutputError(f"--out {out} is a file, not a folder. Choose a folder path (it is created if needed).")
    # A folder another command recorded as its own is refused by RunFolder, naming that command.
    if out.is_dir() and any(out.iterdir()) and read_marker(out) is None:
        raise OutputError(f"--out {out} holds files `circuitwise figures` did not write; the export replaces its "
                          "folder whole, so give a new or empty folder (or one an earlier export wrote).")


def write(images: dict[tuple[str, Format], bytes], out: Path, settings: dict[str, Any]) -> dict[str, Path]:
    """Stage the files beside ``out`` and swap them in: ``out`` holds the previous export or this one, whole."""
    out = Path(os.path.abspath(out))
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    except OSError as e:
        raise output_error(e, out.parent, "create") from None
    old = out.parent / f".{out.name}.old-{os.getpid()}"
    try:
        paths = {}
        for (name, fmt), data in images.items():
            (staging / f"{name}.{fmt}").write_bytes(data)
            paths[f"{name}.{fmt}"] = out / f"{name}.{fmt}"
        atomic_write_json(staging / MARKER, {"command": COMMAND, "settings": settings, "complete": True})
        os.chmod(staging, 0o777 & ~_umask())  # mkdtemp makes 0700; the folder is as readable as any
        if out.exists():
            os.rename(out, old)
        try:
            os.rename(staging, out)
        except OSError:
            if old.exists():
                os.rename(old, out)  # put the previous export back before reporting
            raise
    except OSError as e:
        raise output_error(e, out) from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)
    return paths


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def save_figures(run_dir: str | Path, out: str | Path | None = None,
                 formats: Sequence[Format] = ExportOptions.formats, width: int | None = ExportOptions.width,
                 height: int | None = ExportOptions.height, scale: float = ExportOptions.scale,
                 only: Iterable[str] | None = None, force: bool = False) -> dict[str, Path]:
    """Write every figure of ``run_dir`` (or those named in ``only``) as ``<name>.svg`` / ``<name>.png``
    into ``out`` (default: ``<run_dir>-figures`` beside it) and return their paths by file name.

    Everything is checked before Chromium starts (the folder, the names, the options, --out), and
    ``out`` is replaced whole at the end: an error leaves it as it was. An export of other settings
    there is replaced only with ``force``; a second export into ``out`` at the same time is refused.
    """
    run_dir = Path(run_dir)
    opts = ExportOptions(tuple(dict.fromkeys(formats)), width, height, scale)
    out = Path(out) if out is not None else default_out(run_dir)
    figs = select(figures(run_dir), only)
    check_out(out, run_dir)
    if not figs:
        raise ConfigError(f"{run_dir} has no figures to export (its results hold no figure yet).")
    settings = {"run_dir": str(Path(os.path.abspath(run_dir))), "formats": list(opts.formats),
                "width": opts.width, "height": opts.height, "scale": opts.scale, "figures": list(figs)}
    # RunFolder for its checks and lock only (write() stages and swaps the files itself).
    with RunFolder(out, command=COMMAND, settings=settings, force=force):
        images = draw(figs, opts)
        return write(images, out, settings)


__all__ = ["BROWSERS", "BROWSER_ENV", "FORMATS", "ExportOptions", "Format", "check_out", "default_out", "draw",
           "figure_name", "figures", "find_browser", "folder_kind", "save_figures", "select", "write"]
