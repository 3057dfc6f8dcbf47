"""Benchmark: the circuit-evaluation stages of `circuitwise run opposites --model bundled --n 2000`.

What `pipeline._circuit_stage` runs after the EAP-IG scores: growing the circuit to faithfulness
0.9, then the evaluation — circuit, complement and 10 random circuits, the 16-point curve with 3
random circuits per point, a 20-edge exact shortlist (and, since issue 13, MIB's two ten-budget
curves). Two ways, compared number for number:

- ``--before`` (run it on the code before issue 13, e.g. ``BENCH_SRC=/tmp/old/src`` from
  ``git archive 180de0f src``): each measurement its own engine call, as `evaluate_circuit`
  made them, with the old 384 MB variant stacks; ``--save before.json``.
- default (this code): the same growth, then `evaluate_circuit` — every edge set in one
  stacked call, distinct sets once, cache-sized stacks; ``--compare before.json`` asserts the
  same numbers (to 1e-5: a stack of one variant and of several round differently) and prints
  the ratios. It ranks by the before run's saved EAP-IG scores, so both measure the same edges. ``--separate`` also times today's separate functions.

Wall time and process CPU time per stage (2 threads use up to 2 s of CPU per second); the load
average is printed, since the machine is shared.

    git archive 180de0f src | tar -x -C /tmp/old
    BENCH_SRC=/tmp/old/src python bench/evaluation.py --before --threads 1 --save /tmp/before.json
    python bench/evaluation.py --threads 1 --compare /tmp/before.json

Measured 2026-12-01 21:00-21:26 UTC on the shared 2-core box (load average 5-8 from other
helpers' jobs, so wall time is ~2-4x CPU time; one thread), 2,000 opposites prompts of up to 14
tokens, batch 64, the before run's EAP-IG scores for both; CPU seconds (wall in brackets):

    stage                                        before (180de0f)   now
    growing the circuit (target 0.9)               37.8 (87.7)      14.9 (34.6)
    circuit, complement, 10 random circuits        21.1 (48.8)   }
    faithfulness curve (16 sizes x 4)             116.4 (214.5)  }  78.7 (146.8), one stack,
    exact shortlist (20 edges)                     37.3 (88.2)   }  MIB's 21 edge sets included
    growing + evaluation                          212.5 (439.2)     93.6 (181.4): 2.27x cpu, 2.42x wall

Every number identical (max |diff| 0): the grown circuit and its trace, faithfulness, random
circuits, the curve and its random means, the shortlist's exact effects. Where it comes from:
the patched forward is memory-bound (each receiver's input is a copy of the residual), so
cache-sized stacks (16 MB instead of 384 MB) about halve it; distinct edge sets run once and
every-edge-kept / no-edge sets are the clean / corrupted runs; batches group prompts of similar
length (20% fewer padded positions); one call instead of four saves little here. That left the forward
itself, ~1.6x from the issue's one-minute target.

Then (2026-12-01 23:20 UTC, issue 13 item 5, `--compare` against a save of the code at 0eb433a, one
thread, the other core busy with a training run): the patched forward computes the positions
before the prompts' first clean/corrupted difference once (every patched run shares them), the
last layer's queries and MLP at the last position only, and the first layer's q/k/v from two
projections (the input or its replacement) instead of one per receiver:

    stage                                        0eb433a        now
    growing the circuit (target 0.9)             23.8 (28.0)    7.2 (14.0)
    evaluate_circuit (one stack, with MIB)       93.2 (181.9)  25.9 (51.4)
    growing + evaluation                        117.0 (209.9)  33.1 (65.3): 3.53x cpu, 3.21x wall

with every number the same to 2e-6 (the shortlist's exact effects; the rest to 1e-7). Stacks of
8, 16 and 32 MB measured again at one thread: 16 MB is still the fastest (11.3, 11.1, 12.0 s cpu).
The whole run is timed by `bench/run.py`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from contextlib import contextmanager
from typing import Any, Iterator

import torch

sys.path.insert(0, os.environ.get("BENCH_SRC") or os.path.join(os.path.dirname(__file__), "..", "src"))

from circuitwise.circuits import select_circuit  # noqa: E402
from circuitwise.circuits.eap_ig import eap_ig  # noqa: E402
from circuitwise.config import RunConfig, default_batch_size  # noqa: E402
from circuitwise.evaluation import faithfulness_curve, shortlist_agreement  # noqa: E402
from circuitwise.evaluation.curve import default_sizes, random_masks  # noqa: E402
from circuitwise.evaluation.faithfulness import faithfulness_of_masks  # noqa: E402
from circuitwise.pipeline import prepare  # noqa: E402

TIMES: dict[str, tuple[float, float]] = {}


@contextmanager
def timed(label: str) -> Iterator[None]:
    w, c = time.perf_counter(), time.process_time()
    yield
    TIMES[label] = (time.perf_counter() - w, time.process_time() - c)
    print(f"  {label:40s} {TIMES[label][0]:7.2f} s wall  {TIMES[label][1]:7.2f} s cpu", flush=True)


def close(a: Any, b: Any, what: str, tol: float = 1e-5) -> None:
    a, b = torch.as_tensor(a, dtype=torch.float64), torch.as_tensor(b, dtype=torch.float64)
    diff = float((a - b).abs().max()) if a.numel() else 0.0
    if a.shape != b.shape or not diff <= tol:
        raise SystemExit(f"MISMATCH {what}: shapes {tuple(a.shape)} {tuple(b.shape)}, max |diff| {diff:.3g}")
    print(f"  same {what}: max |diff| {diff:.1e}")


def separate(model: Any, tok: Any, scores: Any, circuit: Any, bs: int) -> dict[str, list[float]]:
    gen = torch.Generator().manual_seed(0)
    with timed("circuit, complement, 10 random circuits"):
        masks = torch.cat([circuit.edges[None], (~circuit.edges)[None],
                           random_masks(circuit.graph, circuit.n_edges, 10, gen)])
        f = faithfulness_of_masks(model, tok, masks, batch_size=bs)
    sizes = default_sizes(max(int((~scores.scores.isnan()).sum()), 1), points=16)
    with timed("faithfulness curve (16 sizes x 4)"):
        crv = faithfulness_curve(model, tok, scores, random_samples=3, seed=0, batch_size=bs, check=False, sizes=sizes)
    with timed("exact shortlist (20 edges)"):
        agr = shortlist_agreement(model, tok, scores, k=20, batch_size=bs, check=False)
    return {"faithfulness": [r.faithfulness for r in f], "curve": crv.faithfulness, "curve_random": crv.random_mean,
            "shortlist": agr.exact}


def bench(a: argparse.Namespace) -> None:
    torch.set_num_threads(a.threads)
    if a.before:
        print("before: the old code's 384 MB stacks, one engine call per measurement")
    prep = prepare(RunConfig(task="opposites", model="bundled", n=a.n), need_corrupted=True)
    model, tok = prep.model, prep.tok
    bs = default_batch_size(model)
    print(f"{len(tok)} prompts x {tok.clean.shape[1]} tokens, {a.threads} thread(s), batch {bs}, "
          f"load average {os.getloadavg()[0]:.2f}", flush=True)
    if a.compare:  # the before run's scores: both runs rank, grow and evaluate the very same edges
        from circuitwise.circuits.graph import graph_of
        from circuitwise.circuits.scores import EdgeScores

        scores = EdgeScores(graph_of(model), torch.tensor(json.loads(open(a.compare).read())["scores"]), "eap-ig")
    else:
        with timed("EAP-IG scores (5 steps)"):
            scores = eap_ig(model, tok, steps=5, batch_size=bs)
    with timed("growing the circuit (target 0.9)"):
        circuit = select_circuit(scores, "target", model=model, tok=tok, target=0.9, batch_size=bs, check=False)
    out: dict[str, Any] = {"scores": scores.scores.tolist(), "circuit_edges": circuit.edges.nonzero().flatten().tolist(),
                           "trace": [s["faithfulness"] for s in circuit.selection["trace"]]}
    if a.before or a.separate:
        out.update(separate(model, tok, scores, circuit, bs))
    if not a.before:
        from circuitwise.evaluation import evaluate_circuit

        with timed("evaluate_circuit: one stack (with MIB)"):
            ev = evaluate_circuit(model, tok, circuit, scores=scores, random_samples=10, shortlist=20, batch_size=bs)
        print(f"  circuit: {circuit.n_edges} of {circuit.graph.n_edges} edges, faithfulness "
              f"{ev.faithfulness.faithfulness:.4f}; MIB CPR {ev.mib.cpr:.4f}, CMD {ev.mib.cmd:.4f}")
        now = {"faithfulness": [ev.faithfulness.faithfulness, ev.completeness.complement.faithfulness,
                                *ev.random.random_faithfulness],
               "curve": ev.curve.faithfulness, "curve_random": ev.curve.random_mean, "shortlist": ev.agreement.exact}
        for k, v in now.items():
            if k in out:
                close(out[k], v, f"{k} (separate vs one stack)")
        out.update(now)
    out["times"] = TIMES
    out["load_after"] = os.getloadavg()[0]
    if a.compare:
        before = json.loads(open(a.compare).read())
        if before["circuit_edges"] != out["circuit_edges"]:
            raise SystemExit("MISMATCH: the grown circuit differs")
        for k in ("trace", "faithfulness", "curve", "curve_random", "shortlist"):
            close(before[k], out[k], f"{k} (before vs now)")
        bt, nt = before["times"], TIMES
        # A --before file times each measurement apart; a file of this code, the one stack.
        old = [bt["growing the circuit (target 0.9)"]] + ([bt[k] for k in bt if k.startswith(("circuit,", "faith", "exact"))]
                                                         or [bt["evaluate_circuit: one stack (with MIB)"]])
        new = [nt["growing the circuit (target 0.9)"], nt["evaluate_circuit: one stack (with MIB)"]]
        ow, oc = sum(t[0] for t in old), sum(t[1] for t in old)
        nw, nc = sum(t[0] for t in new), sum(t[1] for t in new)
        print(f"  growing + evaluation: before {ow:.1f} s wall / {oc:.1f} s cpu (load {before['load_after']:.1f}), "
              f"now {nw:.1f} s wall / {nc:.1f} s cpu (load {out['load_after']:.1f}): {ow / nw:.2f}x wall, "
              f"{oc / nc:.2f}x cpu")
    print(f"  load average {os.getloadavg()[0]:.2f}")
    if a.save:
        with open(a.save, "w") as fh:
            json.dump(out, fh)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--before", action="store_true", help="the old code's way (run with BENCH_SRC=old src)")
    ap.add_argument("--separate", action="store_true", help="also time each measurement's own function")
    ap.add_argument("--save", help="write the numbers and times to this JSON file")
    ap.add_argument("--compare", help="a --save file to check the numbers against and take ratios with")
    bench(ap.parse_args())


if __name__ == "__main__":
    main()
