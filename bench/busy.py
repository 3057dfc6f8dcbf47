"""Benchmark (issue 21 item 6): how much a command slows beside other PyTorch jobs.

A researcher's laptop is rarely idle. This runs a circuitwise command alone, then beside ``--jobs``
other PyTorch processes that keep the cores busy, and reports the slowdown (busy wall time over
idle wall time) against the fair share: with J other jobs on C cores a job's share is C/(J+1)
cores, so beside two jobs on two cores a command that keeps its idle efficiency takes 3x its idle
time; more than that is time lost to threads that wait on each other.

The other jobs are training-like loops (``--load train``: a small MLP's forward and backward, torch's
default thread count) or plain matrix products (``--load matmul``). Each starts in its own session
(``setsid``), as jobs started from other terminals are: Linux's autogroup scheduler then shares the
CPU between sessions, not between threads. ``--same-session`` keeps them in this one (then every
thread counts alike, and a one-thread command gets 1/(1 + jobs x threads) of the cores).

For each thread setting (``--threads``: ``auto`` is the command's own choice from the idle cores,
a number sets CIRCUITWISE_THREADS), the command's wall time, its CPU time (children's user+sys),
and the load average; results go to a JSON in bench/results/ and a table is printed.

    python bench/busy.py -- circuit /tmp/copy100.jsonl --model CKPT --out /tmp/busy-circuit
    python bench/busy.py --threads auto,1,2 --load matmul -- patch opposites --model bundled --out /tmp/p
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

LOADS = {
    "train": (
        "import torch\n"
        "net = torch.nn.Sequential(torch.nn.Linear(512, 2048), torch.nn.GELU(), torch.nn.Linear(2048, 512))\n"
        "opt = torch.optim.SGD(net.parameters(), lr=1e-4)\n"
        "x = torch.randn(256, 512)\n"
        "while True:\n"
        "    opt.zero_grad(); net(x).pow(2).mean().backward(); opt.step()\n"
    ),
    "matmul": "import torch\na = torch.randn(1024, 1024)\nwhile True:\n    a @ a\n",
}


def run_command(cmd: list[str], threads: str, out: Path | None) -> dict:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    env.pop("CIRCUITWISE_THREADS", None)
    if threads != "auto":
        env["CIRCUITWISE_THREADS"] = threads
    if out is not None and out.exists():
        shutil.rmtree(out)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    load0 = os.getloadavg()[0]
    t = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    rec = {"threads": threads, "wall_s": wall, "cpu_s": cpu, "cpu_share": cpu / wall, "rc": proc.returncode,
           "load_start": load0, "load_end": os.getloadavg()[0]}
    if proc.returncode != 0:
        rec["stderr_tail"] = proc.stderr[-2000:]
    return rec


def start_load(kind: str, jobs: int, same_session: bool) -> list[subprocess.Popen]:
    procs = []
    for _ in range(jobs):
        procs.append(subprocess.Popen([sys.executable, "-c", LOADS[kind]], stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL, start_new_session=not same_session))
    time.sleep(3.0)  # past torch's import: the cores are busy when the command starts
    return procs


def stop_load(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        p.kill()
    for p in procs:
        p.wait()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", default="auto", help="comma-separated: auto and/or numbers")
    ap.add_argument("--load", choices=sorted(LOADS), default="train")
    ap.add_argument("--jobs", type=int, default=2, help="other PyTorch jobs beside the command")
    ap.add_argument("--same-session", action="store_true", help="the other jobs in this session (no autogroup)")
    ap.add_argument("--skip-idle", action="store_true")
    ap.add_argument("--save", type=Path, help="JSON (default bench/results/busy-<command>-<date>.json)")
    ap.add_argument("command", nargs=argparse.REMAINDER, help="-- then the circuitwise command and its arguments")
    a = ap.parse_args()
    args = a.command[1:] if a.command[:1] == ["--"] else a.command
    if not args:
        ap.error("give the command after --, e.g. -- circuit TASK --model CKPT --out DIR")
    exe = str(Path(sys.executable).parent / "circuitwise")
    cmd = [exe, *args]
    out = Path(args[args.index("--out") + 1]) if "--out" in args else None
    cores = os.cpu_count() or 1
    res: dict = {"command": " ".join(["circuitwise", *args]), "cores": cores, "load": a.load, "jobs": a.jobs,
                 "same_session": a.same_session, "date": dt.datetime.now(dt.UTC).isoformat(timespec="minutes"),
                 "runs": []}
    # J other jobs and this one share C cores: C/(J+1) cores each, so a command that used every core
    # when idle takes J+1 times as long at its fair share.
    res["fair_slowdown"] = float(a.jobs + 1)
    print(f"{res['command']}\n{cores} cores; beside {a.jobs} '{a.load}' job(s)"
          f"{' in this session' if a.same_session else ' in their own sessions'}; fair share: "
          f"{res['fair_slowdown']:.1f}x the idle time", flush=True)
    for threads in a.threads.split(","):
        row: dict = {"threads": threads}
        if not a.skip_idle:
            row["idle"] = run_command(cmd, threads, out)
            print(f"  threads {threads}: idle {row['idle']['wall_s']:.1f} s "
                  f"(cpu {row['idle']['cpu_s']:.1f} s, load {row['idle']['load_start']:.2f})", flush=True)
        procs = start_load(a.load, a.jobs, a.same_session)
        try:
            row["busy"] = run_command(cmd, threads, out)
        finally:
            stop_load(procs)
        b = row["busy"]
        ratio = b["wall_s"] / row["idle"]["wall_s"] if "idle" in row else float("nan")
        row["slowdown"] = ratio
        print(f"  threads {threads}: busy {b['wall_s']:.1f} s (cpu {b['cpu_s']:.1f} s = {b['cpu_share']:.2f} "
              f"cores, load {b['load_end']:.2f}): {ratio:.2f}x idle", flush=True)
        res["runs"].append(row)
        time.sleep(5.0)  # let the load average settle
    name = (args[0] if args else "command")
    path = a.save or ROOT / "bench" / "results" / f"busy-{name}-{a.load}-{dt.date.today().isoformat()}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(res, indent=1))
    print(f"saved {path}")


if __name__ == "__main__":
    main()
