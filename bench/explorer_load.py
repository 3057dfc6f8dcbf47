"""How fast the report's explorer opens on a large run: the page's load event and the explorer's own drawing.

A tiny run (2 layers, GPT-2's tokenizer) has its results.json tiled to ``--prompts`` prompts (a real
2,000-prompt run takes minutes here), its report is built, and headless Chromium opens it several times
with the browser tests' click script. Reported: the best and median load event (ms after navigation),
the explorer's init and first-draw times, and the machine's load average beside them. The budget the
explorer was built to (load under 2 s, drawing under 200 ms on 2,000 prompts) is checked here, not in a
timed test: a shared CI machine decides wall time, not the page.

    .venv/bin/python bench/explorer_load.py --prompts 2000 --repeats 5 --out bench/results/explorer-load-DATE.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prompts", type=int, default=2000)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()

    import circuitwise as cw
    from circuitwise.config import RunConfig
    from circuitwise.pipeline import run
    from circuitwise.reports.build import build_page
    from circuitwise.schema.circuit import CircuitFile
    from circuitwise.schema.results import RunResults
    from tests.helpers import make_gpt2_checkpoint
    from tests.unit.reports.test_explorer import grow
    from tests.unit.reports.test_explorer_browser import CHROMIUM, _clicked

    if CHROMIUM is None:
        sys.exit("chromium is not installed (apt-get install chromium)")
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        ckpt = make_gpt2_checkpoint(tmp_path / "tiny", n_layer=2, n_head=4, n_embd=64, seed=0)
        model = cw.load_model(str(ckpt), device="cpu")
        out = tmp_path / "run"
        run(RunConfig(task="opposites-seed", model="tiny", out=out, top_k=2), model=model)
        results = RunResults.model_validate(grow(json.loads((out / "results.json").read_text("utf-8")), args.prompts))
        page = tmp_path / "report.html"
        build_page(results, CircuitFile.load(out / "circuit.json")).write(page)
        page_bytes = page.stat().st_size
        loads, inits, draws, walls = [], [], [], []
        for _ in range(args.repeats):
            got, console, wall = _clicked(page, tmp_path, virtual_time=False)
            if got["errors"] or console:
                sys.exit("the page reported errors: " + "\n".join(got["errors"] + console))
            ((drawn, init),) = got["drawn"]
            loads.append(got["load"])
            inits.append(init)
            draws.append(drawn)
            walls.append(wall)
    record = {
        "prompts": args.prompts, "repeats": args.repeats, "page_bytes": page_bytes,
        "load_event_ms": {"best": min(loads), "median": statistics.median(loads), "all": loads},
        "explorer_init_ms": {"best": min(inits), "median": statistics.median(inits)},
        "explorer_drawn_ms": {"best": min(draws), "median": statistics.median(draws)},
        "chromium_wall_s": {"best": min(walls), "median": statistics.median(walls)},
        "loadavg_1min": os.getloadavg()[0], "cpus": os.cpu_count(),
        "budget": {"load_event_ms": 2000, "explorer_init_ms": 200},
        "within_budget": min(loads) < 2000 and min(inits) < 200,
    }
    text = json.dumps(record, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
