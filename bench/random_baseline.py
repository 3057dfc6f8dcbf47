"""Benchmark: what the random baseline costs at GPT-2-small shapes, by number of random circuits.

Issue 23 made the random circuits *connected* (every edge on an input→logits path), so they no
longer prune to the empty circuit, which the engine ran for free: each now costs a patched forward.
This times `evaluate_circuit` (circuit, complement, ``--samples`` random circuits, the 24-point
curve with min(samples, 3) random circuits a point, a 20-edge shortlist, MIB) after EAP-IG and
taking the top ``--edges`` (pruned), one configuration per process (the engine remembers edge sets within a
process, so a second call in the same one would be cheaper than any real run):

    python bench/random_baseline.py --samples 20
    python bench/random_baseline.py --samples 100
    BENCH_SRC=/tmp/old/src python bench/random_baseline.py --samples 20   # the uniform null, before

Prints the evaluation's wall and process CPU seconds, one torch thread (CIRCUITWISE_THREADS=1 is
set here), 100 copy-task prompts, random-weight GPT-2 small (``CIRCUITWISE_BENCH_CKPT`` keeps the
checkpoint between runs). Measured results are in the README's *Uncertainty* section.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

os.environ.setdefault("CIRCUITWISE_THREADS", "1")
ROOT = os.path.join(os.path.dirname(__file__), "..")
sys.path.insert(0, os.environ.get("BENCH_SRC") or os.path.join(ROOT, "src"))
sys.path.insert(1, ROOT)

import torch  # noqa: E402

from bench._copy_task import copy_task  # noqa: E402
from bench._models import BenchModel  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--samples", type=int, default=100)
    ap.add_argument("--n", type=int, default=100)
    # On random weights the target-0.9 circuit is the one input->logits edge, the only connected
    # circuit of its size (p = 1, and every random circuit is that edge, run once): a top-n circuit
    # of this many edges (pruned) gives random circuits that cost what they do on a trained model.
    ap.add_argument("--edges", type=int, default=100)
    args = ap.parse_args()
    torch.set_num_threads(1)
    import circuitwise as cw
    from circuitwise.circuits import find_circuit
    from circuitwise.evaluation import evaluate_circuit

    with BenchModel("gpt2") as model:
        tok, _ = cw.tokenize_task(model, copy_task(args.n), need_corrupted=True)
        found = find_circuit(model, tok, method="eap-ig", selection="top-n", n=args.edges)
        w0, c0 = time.perf_counter(), time.process_time()
        ev = evaluate_circuit(model, tok, found.circuit, scores=found.scores, random_samples=args.samples,
                              shortlist=20)
        wall, cpu = time.perf_counter() - w0, time.process_time() - c0
    r = ev.random
    print(f"src={os.environ.get('BENCH_SRC') or 'this'} samples={args.samples} circuit={found.circuit.n_edges} edges "
          f"faithfulness={ev.faithfulness.faithfulness:.3f} random_mean={r.mean if r else float('nan'):.3f} "
          f"p={r.p_value if r else float('nan'):.4f} evaluation wall={wall:.1f}s cpu={cpu:.1f}s "
          f"load={os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
