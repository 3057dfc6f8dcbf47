"""Each stage's measured peak memory against the plan's estimate (circuitwise.models.memory).

For a few architectures and batch sizes, runs one stage at a time in this process and reads the
peak RSS (``/proc/self/status`` VmHWM, reset before each stage, freed heap returned first). The
stage's footprint is the peak less the RSS before the model was loaded (the estimate counts the
loaded model and the runtime). Prints measured / estimated per stage: every ratio must stay below 1.

    python bench/memory_calibration.py --arch gpt2 --layers 4 --d-model 256 --batches 1,8,32
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import circuitwise as cw  # noqa: E402
from bench._copy_task import copy_task  # noqa: E402
from circuitwise.models.memory import Shapes, estimate, human, peak_rss, reset_peak, resident  # noqa: E402
from circuitwise.patching.attribution import attribution_sweeps  # noqa: E402
from tests.families import make_family_checkpoint  # noqa: E402

SHAPES = {
    "gpt2": lambda d, L, H: {"n_embd": d, "n_layer": L, "n_head": H, "n_positions": 256},
    "llama": lambda d, L, H: {"hidden_size": d, "num_hidden_layers": L, "num_attention_heads": H,
                              "num_key_value_heads": max(1, H // 4), "intermediate_size": int(2.75 * d),
                              "head_dim": d // H},
    "pythia": lambda d, L, H: {"hidden_size": d, "num_hidden_layers": L, "num_attention_heads": H,
                               "intermediate_size": 4 * d},
}


def stages(model, tok, B):
    from circuitwise.circuits import find_circuit

    found = {}

    def edges():
        found["c"] = find_circuit(model, tok, method="eap-ig", selection="top-n", n=20, batch_size=B)

    return {
        "baseline": lambda: cw.baseline(model, tok, batch_size=B),
        "dla": lambda: cw.direct_logit_attribution(model, tok, batch_size=B),
        "patching": lambda: [cw.activation_patching(model, tok, w, batch_size=B) for w in ("resid_pre", "heads", "heads_by_pos")],
        "attribution": lambda: attribution_sweeps(model, tok, ("resid_pre", "heads", "heads_by_pos"), batch_size=B),
        "edges": edges,
        "evaluation": lambda: cw.evaluate_circuit(model, tok, found["c"].circuit, scores=found["c"].scores,
                                                  random_samples=10, shortlist=0, batch_size=B),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--arch", default="gpt2", choices=sorted(SHAPES))
    ap.add_argument("--d-model", type=int, default=256)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--batches", default="1,8,32")
    ap.add_argument("--n", type=int, default=32)
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--prefix", type=int, default=0, help="Lengthen every prompt by this many filler sentences.")
    args = ap.parse_args()
    torch.set_num_threads(1)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        shapes = SHAPES[args.arch](args.d_model, args.layers, args.heads)
        ck = make_family_checkpoint(args.arch, Path(tmp) / args.arch, seed=0, n_layers=args.layers, shapes=shapes)
        gc.collect()
        start = reset_peak()  # the process before the model: what the estimate's "resident" adds to
        model = cw.load_model(str(ck), device="cpu", dtype=args.dtype)
        loaded = peak_rss() - start
        s = Shapes.from_model(model)
        task = copy_task(args.n)
        if args.prefix:
            filler = "The weather was mild and the streets were quiet that day. " * args.prefix
            task = cw.Task(task.name, tuple(replace(e, clean=filler + e.clean, corrupted=filler + e.corrupted)
                                            for e in task.examples))
        tok, _ = cw.tokenize_task(model, task, need_corrupted=True)
        T = int(tok.clean.shape[1])
        print(f"{args.arch}: loading peaked at {human(loaded)}; resident estimate {human(resident(s))}; T={T}")
        for B in [int(b) for b in args.batches.split(",")]:
            for name, fn in stages(model, tok, B).items():
                gc.collect()
                reset_peak()
                t0 = time.perf_counter()
                fn()
                seconds = time.perf_counter() - t0
                used = peak_rss() - start
                est = estimate(name, s, T, min(B, len(tok)))
                rows.append({"arch": args.arch, "batch": B, "stage": name, "measured": used, "estimate": est,
                             "ratio": used / est, "seconds": seconds})
                print(f"{args.arch:7s} B={B:3d} {name:12s} measured {human(used):>9s} estimate {human(est):>9s} "
                      f"ratio {used / est:5.2f}  {seconds:6.1f}s", flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    worst = max(r["ratio"] for r in rows)
    print(f"worst measured/estimate: {worst:.2f}")


if __name__ == "__main__":
    main()
