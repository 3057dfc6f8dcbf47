"""Benchmark: a whole `circuitwise run opposites --model bundled --n 2000`, stage by stage.

Issue 13's target: the 2,000-prompt run in under a minute on 2 cores, with the same numbers.
This times ``pipeline.run`` (what the command runs, minus the CLI's start-up) per stage, as wall
and process CPU time, and with ``--compare`` checks every number of results.json against an
earlier run's (to 1e-4: stacked variants round differently) and prints the ratios.

    git archive 0eb433a src | tar -x -C /tmp/old            # the code before this benchmark
    BENCH_SRC=/tmp/old/src python bench/run.py --threads 1 --out /tmp/old_run --save /tmp/old.json
    python bench/run.py --threads 1 --out /tmp/new_run --compare /tmp/old.json

One thread is the number to compare (the machine is shared: a second thread's time depends on
what else runs); ``--threads 2`` on a quiet 2-core machine is the command's own setting. Compare
runs of one thread count: with another, near-tied logits of the baseline's top-k can swap.

Measured 2026-12-02 00:02-00:10 UTC, quiet 2-core machine, the retrained bundled model in both
trees (0eb433a's src with today's model folders copied in), seconds wall (CPU the same at one
thread):

    stage                                  0eb433a, 1 thread   now, 1 thread   now, 2 threads
    loading the model, tokenizing               6.4                 7.8             6.2
    baseline (+ corrupted), DLA                 5.5                 4.6             2.7
    activation + attribution patching          27.6                16.3            10.0
    EAP-IG, growing, evaluation, circuit.json 131.7                43.8            28.9
    report                                      3.3                 1.1             1.4
    total                                     174.6                73.8            49.3

2.37x at one thread, all 339,454 numbers of results.json the same (largest relative difference
4.6e-6). The command itself (`time circuitwise run opposites --model bundled --n 2000`, start-up
included) took 50.2 s on the two idle cores.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

sys.path.insert(0, os.environ.get("BENCH_SRC") or os.path.join(os.path.dirname(__file__), "..", "src"))


def run(a: argparse.Namespace) -> dict[str, Any]:
    import torch

    torch.set_num_threads(a.threads)
    from circuitwise import pipeline
    from circuitwise.config import RunConfig

    marks: list[tuple[float, float, str]] = []
    t0, c0 = time.perf_counter(), time.process_time()

    def say(msg: str) -> None:
        marks.append((time.perf_counter() - t0, time.process_time() - c0, msg))

    def steps(label: str, done: int, total: int) -> None:
        pass

    load = os.getloadavg()[0]
    pipeline.run(RunConfig(task="opposites", model="bundled", n=a.n, out=a.out), progress=say, steps=steps)
    say("end")
    stages = {}
    for (w, c, m), (w2, c2, _) in zip(marks, marks[1:]):
        key = m.split(":")[0] if m.startswith(("activation patching", "attribution patching")) else m
        if key.startswith("note"):
            key = "baseline on prompts"
        prev = stages.get(key, (0.0, 0.0))
        stages[key] = (prev[0] + w2 - w, prev[1] + c2 - c)
    for k, (w, c) in stages.items():
        print(f"  {k[:50]:50s} {w:7.2f} s wall {c:7.2f} s cpu")
    total = (marks[-1][0], marks[-1][1])
    print(f"  {'total':50s} {total[0]:7.2f} s wall {total[1]:7.2f} s cpu  ({a.threads} thread(s), "
          f"load {load:.2f} -> {os.getloadavg()[0]:.2f})")
    return {"stages": stages, "total": total, "threads": a.threads,
            "results": json.loads(open(os.path.join(a.out, "results.json")).read())}


def numbers(x: Any, path: str = "") -> dict[str, float]:
    """Every number of results.json by its path (times, figures and the run's own paths left out)."""
    out: dict[str, float] = {}
    if isinstance(x, dict):
        for k, v in x.items():
            if k in ("seconds", "scoring_seconds", "figures", "rerun", "file"):
                continue
            out.update(numbers(v, f"{path}.{k}"))
    elif isinstance(x, list):
        for i, v in enumerate(x):
            out.update(numbers(v, f"{path}[{i}]"))
    elif isinstance(x, (int, float)) and not isinstance(x, bool):
        out[path] = float(x)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default="/tmp/bench_run")
    ap.add_argument("--save", help="write the times and results to this JSON file")
    ap.add_argument("--compare", help="a --save file: same numbers, and the ratios")
    a = ap.parse_args()
    now = run(a)
    if a.compare:
        before = json.loads(open(a.compare).read())
        old, new = numbers(before["results"]), numbers(now["results"])
        missing = sorted(set(old) ^ set(new))
        if missing:
            raise SystemExit(f"MISMATCH: numbers only on one side, e.g. {missing[:5]}")
        worst = max(((abs(old[k] - new[k]) / max(1.0, abs(old[k])), k) for k in old), default=(0.0, ""))
        if worst[0] > 1e-4:
            raise SystemExit(f"MISMATCH {worst[1]}: {old[worst[1]]} vs {new[worst[1]]}")
        print(f"  same {len(old)} numbers (largest relative difference {worst[0]:.1e} at {worst[1] or '-'})")
        bw, bc = before["total"]
        nw, nc = now["total"]
        print(f"  total: before {bw:.1f} s wall / {bc:.1f} s cpu, now {nw:.1f} s wall / {nc:.1f} s cpu: "
              f"{bw / nw:.2f}x wall, {bc / nc:.2f}x cpu")
    if a.save:
        with open(a.save, "w") as fh:
            json.dump(now, fh)


if __name__ == "__main__":
    main()
