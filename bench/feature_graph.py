"""Attribution graphs on the bundled models (their shipped transcoders) and at GPT-2-small shapes
(random TopK skip transcoders, the issue's prototype setting), one thread, CPU:

- logits of the frozen replacement with error nodes against the model's (max |gap|);
- edges against ablations in the frozen model (the target row, every sender);
- seconds and peak RSS for one graph (LogitDiff target) and for pruning it;
- on the opposites task: single-feature ablations of the graph's top features in the unfrozen model,
  and in it with norm scales frozen, against the graph's prediction (correlation, mean |gap|, sign).

``python bench/feature_graph.py [bundled bundled-llama gpt2]``; writes bench/results/feature-graph-MODELS-DATE.json.
"""

from __future__ import annotations

import json
import sys
import time
from datetime import date
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import circuitwise as cw  # noqa: E402
from bench._measure import measure  # noqa: E402
from bench._models import BenchModel  # noqa: E402
from circuitwise.features import LogitDiff, attribution_graph, intervene, prune_graph  # noqa: E402
from circuitwise.features.replacement import clean_run, replacement_logits  # noqa: E402
from circuitwise.features.transcoder import Transcoder, TranscoderSet  # noqa: E402

torch.set_num_threads(1)


def random_topk_skip(model, width: int, k: int, seed: int = 0) -> TranscoderSet:
    g = torch.Generator().manual_seed(seed)
    d = model.cfg.d_model
    out = []
    for l in range(model.cfg.n_layers):
        r = lambda *s: torch.randn(*s, generator=g)  # noqa: E731
        out.append(Transcoder(l, r(d, width) / d ** 0.5, 0.1 * r(width), r(width, d) / width ** 0.5, 0.1 * r(d),
                              activation="topk", k=k, W_skip=r(d, d) / d))
    return TranscoderSet(tuple(out), model="random")


def run(name: str) -> dict:
    rec: dict = {"model": name}
    ctx = BenchModel("gpt2") if name == "gpt2" else None
    model = ctx.__enter__() if ctx else cw.load_model(name, device="cpu")
    width, k = (6144, 32) if name == "gpt2" else (4 * model.cfg.d_model, 16)
    tcs = None
    if name != "gpt2":
        try:  # the shipped trained set, where the transcoders helper has added one
            from circuitwise.features.formats import load_transcoders

            tcs = load_transcoders(name)
            meta = {k_: v for k_, v in tcs.meta.items() if isinstance(v, (int, float, str))}
            rec["transcoders"] = {"trained": name, **meta}
        except Exception as e:  # noqa: BLE001 - not shipped (yet): random ones, and say so
            rec["trained_transcoders"] = f"not available: {type(e).__name__}"
    if tcs is None:
        tcs = random_topk_skip(model, width, k)
        rec["transcoders"] = {"random": True, "width": width, "k": k, "skip": True}
    task = cw.get_task("opposites", n=8, seed=0)
    tt, _ = cw.tokenize_task(model, task)
    toks = tt.clean[0, : int(tt.last[0]) + 1]
    a, b = (int(x) for x in tt.answers[0])
    runs = clean_run(model, tcs, toks)
    rec["logit_gap"] = float((replacement_logits(runs, tcs) - model(toks[None])[0]).abs().max())
    g = measure("graph", lambda: attribution_graph(model, tcs, toks, LogitDiff(a, b)), "cpu", rec)
    rec["n_nodes"], rec["n_features"] = g.n_nodes, g.features.stop
    rec["adjacency_mb"] = g.meta["adjacency_bytes"] / 2 ** 20
    recv = list(range(g.features.stop)) + [g.target_nodes.start]
    rec["row_sum_gap"] = float((g.adjacency[recv].sum(1) + g.bias[recv] - g.values.float()[recv]).abs().max())
    p = measure("prune", lambda: prune_graph(g, 0.8, 0.98), "cpu", rec)
    rec["pruned_nodes"], rec["scores"] = p.n_nodes, p.scores
    row = g.adjacency[g.target_nodes.start, g.features]
    top = row.abs().argsort(descending=True)[:10].tolist()
    t0 = time.perf_counter()
    res = [intervene(model, tcs, g, [i]) for i in top]
    rec["interventions_s"] = time.perf_counter() - t0
    P = torch.tensor([r.predicted for r in res])
    A = torch.tensor([r.actual for r in res])
    F = torch.tensor([r.actual_frozen_norms for r in res])
    corr = lambda x, y: float(torch.corrcoef(torch.stack([x, y]))[0, 1])  # noqa: E731
    rec["ablation"] = {"n": len(res), "corr": corr(P, A), "corr_frozen_norms": corr(P, F),
                       "mean_abs_gap": float((P - A).abs().mean()), "mean_abs_actual": float(A.abs().mean()),
                       "mean_abs_gap_frozen_norms": float((P - F).abs().mean()),
                       "sign_agree": float(((P * A) > 0).float().mean()),
                       "sign_agree_frozen_norms": float(((P * F) > 0).float().mean())}
    if ctx:
        ctx.__exit__(None, None, None)
    print(json.dumps({k_: v for k_, v in rec.items() if k_ not in ("graph", "prune")}, indent=1), flush=True)
    return rec


if __name__ == "__main__":
    names = sys.argv[1:] or ["bundled", "bundled-llama"]
    out = [run(n) for n in names]
    path = Path(__file__).parent / "results" / f"feature-graph-{'-'.join(names)}-{date.today()}.json"
    path.write_text(json.dumps(out, indent=1))
    print(path)
