"""Edge pruning cold (every log α at init_log_alpha) against warm-started from EAP-IG's ranking
(`-O warm_start=eap-ig`), on the bundled models, at a few step budgets: the learned circuit's
faithfulness at EAP-IG's circuit size, and seconds (one thread). Writes bench/results/."""

from __future__ import annotations

import json
import sys
import time
from datetime import date
from pathlib import Path

import torch

import circuitwise as cw
from circuitwise.circuits import find_circuit, score_edges
from circuitwise.circuits.edge_pruning import learned_circuit
from circuitwise.evaluation.faithfulness import faithfulness_of_masks

torch.set_num_threads(1)
STEPS = [int(s) for s in sys.argv[1:]] or [50, 100, 200, 400]
rows = []
for model_name in ("bundled", "bundled-llama"):
    model = cw.load_model(model_name, device="cpu")
    tok, _ = cw.tokenize_task(model, cw.get_task("opposites", n=64, seed=0), need_corrupted=True)
    ref = find_circuit(model, tok, method="eap-ig", target=0.9)
    kept = ref.circuit.n_edges
    for steps in STEPS:
        for warm in ("none", "eap-ig"):
            t0 = time.perf_counter()
            s = score_edges(model, tok, "edge-pruning", kept=kept, steps=steps, warm_start=warm)
            secs = time.perf_counter() - t0
            f = faithfulness_of_masks(model, tok, learned_circuit(s)[None])[0].faithfulness
            rows.append({"model": model_name, "kept": kept, "steps": steps, "warm_start": warm,
                         "faithfulness": round(float(f), 4), "seconds": round(secs, 2),
                         "eap_ig_circuit_faithfulness": round(float(ref.circuit.selection["faithfulness"]), 4)})
            print(rows[-1], flush=True)
out = Path(__file__).parent / "results" / f"edge-pruning-warm-start-{date.today()}.json"
out.write_text(json.dumps({"task": "opposites", "n": 64, "threads": 1, "rows": rows}, indent=1))
print(out)
