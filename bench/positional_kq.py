"""Cost of the key × query split of position-aware edges (circuits.positional_kq, issue 24).

Measures, on one model and task: EAP-IG with ``positions`` (tokens or roles) alone, and with
``kv_positions=key-query`` added (time, process CPU time, peak RSS; bench/_measure.py), and checks
the split's invariant on the run (key/value triples summed over queries against the per-key-position
scores, the largest gap relative to the largest score). One thread: CPU time is comparable across runs.

    PYTHONPATH=/work/main .venv/bin/python bench/positional_kq.py [--arch gpt2] [--task ioi] [--n 16] \
        [--positions roles] [--steps 5]

Writes bench/results/positional-kq-<arch>-<date>.json.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
from pathlib import Path

import torch

from bench._measure import measure
from bench._models import BenchModel


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", default="gpt2")
    ap.add_argument("--task", default="ioi")
    ap.add_argument("--n", type=int, default=16)
    ap.add_argument("--positions", default="roles", choices=["tokens", "roles"])
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--batch-size", type=int, default=8)
    args = ap.parse_args()
    torch.set_num_threads(1)

    import circuitwise as cw
    from circuitwise.circuits import score_edges

    record: dict = {"args": vars(args), "torch": torch.__version__,
                    "machine": platform.processor() or platform.machine(), "threads": 1}
    with BenchModel(args.arch) as model:
        tok = cw.tokenize_task(model, cw.get_task(args.task, n=args.n), need_corrupted=True)[0]
        record["prompts"] = len(tok)
        record["tokens"] = int(tok.clean.shape[1])
        common = dict(steps=args.steps, positions=args.positions, batch_size=args.batch_size)
        score_edges(model, tok.slice(0, 2), "eap-ig", steps=1, positions=args.positions)  # warm the caches
        pos = measure("eap-ig positions", lambda: score_edges(model, tok, "eap-ig", **common), "cpu", record)
        kq = measure("eap-ig positions + key-query",
                     lambda: score_edges(model, tok, "eap-ig", kv_positions="key-query", **common), "cpu", record)
    if pos is not None and kq is not None:
        gap = (kq.by_pair.double().sum(-1) - pos.by_position.double()[kq.kv_edges]).abs().max()
        record["columns"] = len(kq.positions.labels)
        record["kv_edges"] = len(kq.kv_edges)
        record["edges"] = kq.graph.n_edges
        record["sum_over_queries_gap_relative"] = float(gap / pos.by_position.abs().max())
        record["cpu_ratio"] = record["eap-ig positions + key-query"]["cpu_s"] / record["eap-ig positions"]["cpu_s"]
        record["top_units"] = [list(u) for u in kq.top_units(10)]
        print(f"  columns {record['columns']}, kv edges {record['kv_edges']}, CPU ratio {record['cpu_ratio']:.2f}, "
              f"sum-over-queries gap {record['sum_over_queries_gap_relative']:.1e} of the largest score")
    out = Path(__file__).parent / "results" / f"positional-kq-{args.arch}-{datetime.date.today()}.json"
    out.write_text(json.dumps(record, indent=1, default=str))
    print(out)


if __name__ == "__main__":
    main()
