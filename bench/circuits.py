"""Benchmark: circuitwise's EAP, EAP-IG and faithfulness against TransformerLens 4.3.

GPT-2-small shapes (12 layers, 12 heads, d_model 768, GPT-2's tokenizer) with random weights,
in this one process on the same model and tokens:

- TransformerLens ``attribution_patch(granularity="edge")`` (one pair at a time) against
  circuitwise EAP and EAP-IG (5 steps) on the seed's six pairs; the EAP scores must equal TL's
  summed over positions.
- TransformerLens ``faithfulness`` of a 200-edge circuit (each circuitwise edge at every position,
  one pair at a time) against circuitwise ``faithfulness``; the patched metrics must agree.
- circuitwise on 100 prompts of the ``opposites`` task.

Targets (issue 6): EAP ≥ 5× faster than TL's edge attribution; EAP-IG with 5 steps under twice
EAP's time per step; faithfulness ≥ 20× faster than TL's.

Measured (2 shared CPU cores, load average 1–3, torch 2.13 CPU, 2026-11-27):
  TL edge attribution 23.1 s wall / 33.8 s cpu; circuitwise EAP 0.36 s / 0.71 s (64x wall,
  48x cpu; one thread 0.67 s), equal to TL to 1.5e-6; EAP-IG 5 steps 1.18 s (0.66x EAP per step);
  once per model (read weights, check against the bridge) 0.28 s.
  TL faithfulness of a 200-edge circuit (2200 positional edges) 1000 s wall / 965 s cpu;
  circuitwise 0.30 s / 0.61 s (over 1000x), metrics equal to 5.8e-6.
  100 prompts (opposites, up to 14 tokens): EAP 6.6 s, EAP-IG 25.5 s, faithfulness 6.3 s
  (one thread: 11.8 s, 45.6 s, 10.9 s).

    python bench/circuits.py                 # everything (TL's faithfulness takes minutes)
    python bench/circuits.py --threads1      # also circuitwise's times with one thread
    python bench/circuits.py --skip-tl-faithfulness

A benchmark, not a test: on a shared machine wall time moves with other load (and so, on a busy
VM, does CPU time); circuitwise's timings are the best of ``--repeat`` runs, TransformerLens's
(minutes each) are single runs. Set CIRCUITWISE_BENCH_CKPT to a folder to keep the checkpoint between runs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

import circuitwise as cw  # noqa: E402
from circuitwise.circuits import eap, eap_ig, select_circuit  # noqa: E402
from circuitwise.circuits.forward import check_against_bridge, graph_model  # noqa: E402
from circuitwise.evaluation import faithfulness  # noqa: E402

TARGETS = {"eap": 5.0, "ig_per_step": 2.0, "faithfulness": 20.0}


REPEAT = 1  # set from --repeat: circuitwise's timings are the best of this many runs


def timed(fn: Callable[[], Any], repeat: int | None = None) -> tuple[Any, float, float]:
    """Result, wall and CPU seconds of the fastest of ``repeat`` runs."""
    best = (float("inf"), float("inf"))
    out = None
    for _ in range(repeat or REPEAT):
        w, c = time.perf_counter(), time.process_time()
        out = fn()
        best = min(best, (time.perf_counter() - w, time.process_time() - c))
    return out, best[0], best[1]


def tl_names(w: Any, r: Any) -> tuple[str, str]:
    s = {"embed": "input", "attn_head_out": f"L{w.layer}H{w.head}", "mlp_out": f"MLP{w.layer}"}[w.kind]
    if r.kind in ("q_input", "k_input", "v_input"):
        return s, f"L{r.layer}H{r.head}.{r.kind[0]}"
    return s, {"mlp_in": f"MLP{r.layer}", "logits": "logits"}[r.kind]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads1", action="store_true", help="repeat circuitwise's timings with one thread")
    ap.add_argument("--skip-tl-faithfulness", action="store_true", help="skip TransformerLens's faithfulness (minutes)")
    ap.add_argument("--circuit-edges", type=int, default=200)
    ap.add_argument("--prompts", type=int, default=100)
    ap.add_argument("--repeat", type=int, default=3, help="circuitwise timings: best of this many runs")
    ap.add_argument("--json", type=Path, help="also write the numbers here")
    args = ap.parse_args()
    global REPEAT
    REPEAT = max(1, args.repeat)

    from transformer_lens.tools.analysis.attribution_patching import (
        EdgeAttributionConfig,
        Node,
        attribution_patch,
    )
    from transformer_lens.tools.analysis.attribution_patching import faithfulness as tl_faithfulness

    from tests.helpers import gpt2_small_checkpoint

    ckpt_dir = os.environ.get("CIRCUITWISE_BENCH_CKPT")
    tmp = None
    if ckpt_dir is None:
        tmp = tempfile.TemporaryDirectory()
        ckpt_dir = tmp.name
    ckpt = Path(ckpt_dir)
    if not (ckpt / "config.json").exists():
        gpt2_small_checkpoint(ckpt)
    model = cw.load_model(str(ckpt), device="cpu")
    tok, _ = cw.tokenize_task(model, cw.get_task("opposites-seed"), need_corrupted=True)
    assert tok.same_length and tok.corrupted is not None
    P = tok.clean.shape[1]
    print(f"GPT-2-small shapes, random weights; {len(tok)} pairs x {P} tokens; torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, {os.cpu_count()} CPUs visible; load average {os.getloadavg()[0]:.2f}")
    out: dict[str, Any] = {"threads": torch.get_num_threads(), "load_average_start": os.getloadavg()[0]}

    def metric_for(i: int) -> Callable[[torch.Tensor], torch.Tensor]:
        a = tok.answers[i]
        return lambda logits: logits[0, -1, a[0]] - logits[0, -1, a[1]]

    # -- edge attribution --------------------------------------------------------------------
    for p in model.parameters():  # TL's attribution needs a graph through the weights
        p.requires_grad_(True)

    def tl_eap() -> dict[tuple[str, str], float]:
        tot: dict[tuple[str, str], float] = {}
        for i in range(len(tok)):
            res = attribution_patch(model, tok.clean[i:i + 1], tok.corrupted[i:i + 1], metric_for(i),
                                    EdgeAttributionConfig(granularity="edge"))
            for (w, r), v in res.edge_scores.items():
                key = tl_names(w, r)
                tot[key] = tot.get(key, 0.0) + v / len(tok)
        return tot

    tl_scores, tl_w, tl_c = timed(tl_eap, repeat=1)
    for p in model.parameters():
        p.requires_grad_(False)

    def setup() -> None:  # once per model: read the weights, check our forward against the bridge
        check_against_bridge(model, graph_model(model), tok.clean, tok.last, tok.answers)

    _, s_w, s_c = timed(setup, repeat=1)
    ours, e_w, e_c = timed(lambda: eap(model, tok))
    g = ours.graph
    ref = torch.zeros(g.n_edges, dtype=torch.float64)
    for (s, r), v in tl_scores.items():
        ref[g.edge_id(s, r)] = v
    diff = float((ours.scores.double() - ref).abs().max())
    ig, ig_w, ig_c = timed(lambda: eap_ig(model, tok, steps=5))
    one: dict[str, tuple[float, float]] = {}
    if args.threads1:  # the same, one thread: steadier on a shared machine
        default = torch.get_num_threads()
        torch.set_num_threads(1)
        one["eap"] = timed(lambda: eap(model, tok))[1:]
        one["eap_ig"] = timed(lambda: eap_ig(model, tok, steps=5))[1:]
        torch.set_num_threads(default)
    print(f"\nEdge attribution, {g.n_edges} edges ({g.n_edges * P} per-position edges per pair in TL):")
    print(f"  TransformerLens attribution_patch(edge)   wall {tl_w:7.2f} s   cpu {tl_c:7.2f} s")
    print(f"  circuitwise once per model (weights, check) wall {s_w:5.2f} s   cpu {s_c:7.2f} s   (cached afterwards)")
    print(f"  circuitwise EAP                           wall {e_w:7.2f} s   cpu {e_c:7.2f} s   "
          f"speed-up {tl_w / e_w:5.1f}x wall, {tl_c / e_c:5.1f}x cpu (target {TARGETS['eap']:g}x); "
          f"max |diff| {diff:.2e}")
    per_step = (ig_w / 5) / e_w
    print(f"  circuitwise EAP-IG, 5 steps               wall {ig_w:7.2f} s   cpu {ig_c:7.2f} s   "
          f"per step {per_step:.2f}x EAP's time (target < {TARGETS['ig_per_step']:g}x)")
    if one:
        (w1, c1), (wi, ci) = one["eap"], one["eap_ig"]
        print(f"  one thread: EAP wall {w1:.2f} s cpu {c1:.2f} s ({tl_c / c1:.1f}x TL's cpu); EAP-IG wall {wi:.2f} s "
              f"cpu {ci:.2f} s, per step {(ci / 5) / c1:.2f}x EAP's cpu")
        out["one_thread"] = {"eap_wall": w1, "eap_cpu": c1, "eap_ig_wall": wi, "eap_ig_cpu": ci,
                             "ig_per_step_over_eap_cpu": (ci / 5) / c1}
    out["setup"] = {"wall": s_w, "cpu": s_c}
    out["eap"] = {"tl_wall": tl_w, "tl_cpu": tl_c, "wall": e_w, "cpu": e_c, "speedup_wall": tl_w / e_w,
                  "speedup_cpu": tl_c / e_c, "max_abs_diff": diff}
    out["eap_ig"] = {"steps": 5, "wall": ig_w, "cpu": ig_c, "per_step_over_eap": per_step}

    # -- faithfulness --------------------------------------------------------------------------
    circuit = select_circuit(ours, "top-n", n=args.circuit_edges, prune=False, model=model, tok=tok)
    f, f_w, f_c = timed(lambda: faithfulness(model, tok, circuit))
    if args.threads1:
        default = torch.get_num_threads()
        torch.set_num_threads(1)
        _, f1_w, f1_c = timed(lambda: faithfulness(model, tok, circuit))
        torch.set_num_threads(default)
        out["one_thread_faithfulness"] = {"wall": f1_w, "cpu": f1_c}
    print(f"\nFaithfulness of a {circuit.n_edges}-edge circuit ({circuit.n_edges * P} per-position TL edges):")
    print(f"  circuitwise faithfulness                  wall {f_w:7.2f} s   cpu {f_c:7.2f} s   "
          f"faithfulness {f.faithfulness:+.4f}")
    if args.threads1:
        print(f"  circuitwise faithfulness, one thread      wall {f1_w:7.2f} s   cpu {f1_c:7.2f} s")
    out["faithfulness"] = {"edges": circuit.n_edges, "wall": f_w, "cpu": f_c, "value": f.faithfulness}
    if not args.skip_tl_faithfulness:
        s_idx, r_idx = g.edge_index
        tl_circuit = []
        for i in circuit.edges.nonzero().flatten().tolist():
            snd = g.senders[int(s_idx[i])].tl_node()
            rec = g.receivers[int(r_idx[i])].tl_node(g.n_layers)
            tl_circuit += [(Node(position=p, **snd), Node(position=p, **rec)) for p in range(P)]

        def tl_faith() -> list[float]:
            metrics = []
            for i in range(len(tok)):
                r = tl_faithfulness(model, tok.clean[i:i + 1], tok.corrupted[i:i + 1], metric_for(i), tl_circuit)
                metrics.append(r.corrupt_metric + r.recovered * (r.full_metric - r.corrupt_metric))
            return metrics

        tl_m, tf_w, tf_c = timed(tl_faith, repeat=1)
        fdiff = float((torch.tensor(tl_m) - f.per_example).abs().max())
        print(f"  TransformerLens faithfulness              wall {tf_w:7.2f} s   cpu {tf_c:7.2f} s   "
              f"speed-up {tf_w / f_w:5.1f}x wall, {tf_c / f_c:5.1f}x cpu (target {TARGETS['faithfulness']:g}x); "
              f"max |metric diff| {fdiff:.2e}")
        out["faithfulness"].update({"tl_wall": tf_w, "tl_cpu": tf_c, "speedup_wall": tf_w / f_w,
                                    "speedup_cpu": tf_c / f_c, "max_abs_metric_diff": fdiff})

    # -- 100 prompts ---------------------------------------------------------------------------
    big, dropped = cw.tokenize_task(model, cw.get_task("opposites", n=args.prompts, corruption="flip"),
                                    need_corrupted=True, on_invalid="drop")
    print(f"\n{len(big)} prompts of `opposites` (flip; {len(dropped)} dropped), up to {big.clean.shape[1]} tokens:")
    runs: dict[str, Callable[[], Any]] = {
        "EAP": lambda: eap(model, big),
        "EAP-IG, 5 steps": lambda: eap_ig(model, big, steps=5),
        f"faithfulness ({circuit.n_edges} edges)": lambda: faithfulness(model, big, circuit),
    }
    thread_settings = [torch.get_num_threads()] + ([1] if args.threads1 else [])
    default = torch.get_num_threads()
    out["prompts"] = {"n": len(big)}
    for threads in thread_settings:
        torch.set_num_threads(threads)
        for name, fn in runs.items():
            _, w, c = timed(fn)
            print(f"  {name:34s} {threads} thread(s)  wall {w:7.2f} s   cpu {c:7.2f} s")
            out["prompts"][f"{name} [{threads} threads]"] = {"wall": w, "cpu": c}
    torch.set_num_threads(default)
    out["load_average_end"] = os.getloadavg()[0]
    print(f"\nload average at the end {out['load_average_end']:.2f} (the machine is shared; wall times move with it)")
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
