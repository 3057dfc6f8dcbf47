"""The default `circuitwise run` at real shapes: its time, and its agreement with `--exhaustive`.

Builds (once) a random-weight checkpoint of a real shape (bench/scale.py's shapes, GPT-2 tokenizer
vocabulary by default so the opposites prompts tokenize as they do on GPT-2), then runs

    circuitwise run opposites --model CKPT --out OUT/default
    circuitwise run opposites --model CKPT --out OUT/exhaustive --exhaustive

as separate processes (wall time, and CPU time of the process), and compares what a reader takes
from each: the top heads (DLA), and the top cells of every patching sweep. Writes a JSON beside the
printed table (bench/results/default_run-<shape>-<date>.json).

    python bench/default_run.py --shape gpt2-small              # ~10 min on two idle cores (exhaustive ~8)
    python bench/default_run.py --shape gpt2-small --skip-exhaustive
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from scale import SHAPES, build  # noqa: E402


def run_cli(args: list[str], threads: int | None) -> dict:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    if threads:
        env["CIRCUITWISE_THREADS"] = str(threads)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    p = subprocess.run([str(ROOT / ".venv" / "bin" / "circuitwise"), *args], capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"args": args, "rc": p.returncode, "wall_s": wall, "cpu_s": cpu, "stderr_tail": p.stderr[-3000:],
            "stdout_tail": p.stdout[-1500:]}


def summary(folder: Path) -> dict:
    r = json.loads((folder / "results.json").read_text())
    out = {"top_heads": [h["label"] for h in r["top_heads"]["positive"]] + [h["label"] for h in r["top_heads"]["negative"]],
           "notes": r.get("notes", []), "plan": r["plan"].get("resources"), "sweeps": {}}
    for what, sw in (r.get("patching") or {}).items():
        out["sweeps"][what] = {"top": [c["cell"] for c in sw.get("top", [])[:5]],
                               "exact_cells": sw["config"].get("exact_cells"), "degenerate": sw.get("degenerate")}
    if r.get("circuit"):
        out["circuit"] = sorted(f"{e['sender']}->{e['receiver']}" for e in r["circuit"]["top_edges"])
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shape", default="gpt2-small", choices=sorted(SHAPES))
    ap.add_argument("--task", default="opposites")
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--threads", type=int, default=None, help="CIRCUITWISE_THREADS for the runs (default: the CLI's choice)")
    ap.add_argument("--skip-exhaustive", action="store_true")
    ap.add_argument("--ckpt-root", type=Path, default=Path(os.environ.get("CIRCUITWISE_BENCH_CKPT", "/tmp/cw-bench-ckpt")))
    ap.add_argument("--out", type=Path, default=Path("/tmp/cw-default-run"))
    args = ap.parse_args()
    ckpt = args.ckpt_root / f"{args.shape}-gpt2vocab"
    if not (ckpt / "config.json").exists():
        build(args.shape, ckpt, gpt2_vocab=True)
    rec = {"shape": args.shape, "task": args.task, "n": args.n, "threads": args.threads,
           "load_average_start": os.getloadavg()[0], "runs": {}}
    common = ["run", args.task, "--model", str(ckpt), "--n", str(args.n)]
    kinds = [("default", [])] + ([] if args.skip_exhaustive else [("exhaustive", ["--exhaustive"])])
    for name, extra in kinds:
        out = args.out / name
        res = run_cli([*common, "--out", str(out), *extra], args.threads)
        if res["rc"] == 0:
            res["summary"] = summary(out)
        rec["runs"][name] = res
        print(f"{name}: rc {res['rc']}, wall {res['wall_s']:.1f} s, cpu {res['cpu_s']:.1f} s", flush=True)
    if {"default", "exhaustive"} <= rec["runs"].keys() and all("summary" in r for r in rec["runs"].values()):
        a, b = rec["runs"]["default"]["summary"], rec["runs"]["exhaustive"]["summary"]
        rec["same_top_heads"] = a["top_heads"] == b["top_heads"]
        rec["same_top_cells"] = {w: a["sweeps"][w]["top"] == b["sweeps"][w]["top"] for w in a["sweeps"]}
        rec["same_circuit"] = a.get("circuit") == b.get("circuit")
        print(f"same top heads: {rec['same_top_heads']}; same top cells: {rec['same_top_cells']}; "
              f"same circuit: {rec['same_circuit']}")
    rec["load_average_end"] = os.getloadavg()[0]
    dest = ROOT / "bench" / "results" / f"default_run-{args.shape}-{dt.date.today()}.json"
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(json.dumps(rec, indent=1))
    print(f"wrote {dest}")


if __name__ == "__main__":
    main()
