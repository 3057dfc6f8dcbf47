"""Benchmark: circuitwise's exact patching sweeps against TransformerLens's ``patching`` module.

GPT-2-small shapes (12 layers, 12 heads, d_model 768, GPT-2's tokenizer) with random weights,
the seed's six prompts and their flip corruptions. Both run in this one process, on the same
model and tokens; each sweep prints wall and CPU time, the speed-up, and the largest difference
between the two results (they must agree to ~1e-4).

    python bench/patching.py                       # resid_pre, heads, heads_by_pos
    python bench/patching.py --what heads --threads1   # also CPU time with one thread
    python bench/patching.py --all                 # every sweep

A benchmark, not a test: on a shared machine wall time moves with other load; CPU time and
``--threads1`` are steadier. Set CIRCUITWISE_BENCH_CKPT to a folder to keep the checkpoint.

Measured 2026-11-27 on the shared 2-core CI box (load average 2-7 from other jobs), full sweeps,
max |diff| <= 2.6e-6 everywhere (TL wall / circuitwise wall, CPU ratio in brackets):

    2 threads: resid_pre 79.1s / 3.8s = 21.0x (19.8x), heads 259s / 19.3s = 13.5x (10.7x),
               heads_by_pos 1234s / 44.2s = 27.9x (32.8x)
    1 thread:  resid_pre 44.5s / 4.0s = 11.2x (11.3x), heads 48.5s / 7.6s = 6.4x (6.3x),
               heads_by_pos 457s / 22.9s = 20.0x (22.7x)
    attribution patching: ~1.3 s per sweep; Pearson r with exact 0.74 / 0.97 / 0.97
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

import circuitwise as cw  # noqa: E402
from circuitwise.patching import SWEEPS, activation_patching, attribution_patching  # noqa: E402

TARGETS = {"heads_by_pos": 10.0, "resid_pre": 5.0, "heads": 2.5}


def timed(fn):
    w, c = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - w, time.process_time() - c


def _sampled_tl(fn, model, tok, clean_cache, metric, ours, n_cells):
    """TL's time on ``n_cells`` evenly spaced cells, scaled to the whole sweep; and their largest gap."""
    from transformer_lens.patching import generic_activation_patch, make_df_from_ranges

    kw = fn.keywords
    names = list(kw["index_axis_names"])
    sizes = {"layer": model.cfg.n_layers, "pos": tok.clean.shape[1], "head": model.cfg.n_heads,
             "head_index": model.cfg.n_heads}
    full = make_df_from_ranges([sizes[n] for n in names], names)
    step = max(1, len(full) // n_cells)
    df = full.iloc[::step].reset_index(drop=True)
    got, w, c = timed(lambda: generic_activation_patch(
        model, tok.corrupted, clean_cache, metric, kw["patch_setter"], kw["activation_name"], index_df=df))
    cells = tuple(torch.tensor(df[n].to_numpy()) for n in names)
    diff = float((ours[cells] - got.cpu()).abs().max())
    scale = len(full) / len(df)
    return w * scale, c * scale, diff


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--what", action="append", choices=list(SWEEPS), help="sweep(s) to time")
    ap.add_argument("--all", action="store_true", help="time every sweep")
    ap.add_argument("--threads1", action="store_true", help="repeat with torch.set_num_threads(1)")
    ap.add_argument("--no-attribution", action="store_true", help="skip attribution patching")
    ap.add_argument("--engine", choices=["auto", "cone", "hooks"], default="auto",
                    help="circuitwise engine to time (hooks: the architecture-generic fallback)")
    ap.add_argument("--tl-cells", type=int, default=None, metavar="N",
                    help="time TransformerLens on N evenly spaced cells of each sweep and extrapolate "
                         "(each cell is one full forward, so its cost is the same everywhere); default: all")
    args = ap.parse_args()
    whats = list(SWEEPS) if args.all else (args.what or ["resid_pre", "heads", "heads_by_pos"])

    from transformer_lens import patching as tl_patching

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
    _, clean_cache = model.run_with_cache(tok.clean)
    answers = tok.answers

    def tl_metric(logits: torch.Tensor) -> torch.Tensor:
        a = logits[:, -1].gather(-1, answers)
        return (a[:, 0] - a[:, 1]).mean()

    if args.tl_cells is not None:
        print(f"TransformerLens timed on about {args.tl_cells} cells per sweep and scaled to the whole sweep.")
    print(f"GPT-2-small shapes, random weights; {len(tok)} prompts x {tok.clean.shape[1]} tokens; "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs visible; "
          f"load average {os.getloadavg()[0]:.2f}")
    thread_settings = [torch.get_num_threads()] + ([1] if args.threads1 else [])
    default_threads = torch.get_num_threads()
    for threads in thread_settings:
        torch.set_num_threads(threads)
        print(f"\n== {threads} thread(s) ==")
        print(f"{'sweep':14s} {'TL wall':>9s} {'TL cpu':>9s} {'cw wall':>9s} {'cw cpu':>9s} "
              f"{'wall x':>7s} {'cpu x':>7s} {'target':>6s} {'max |diff|':>10s}")
        for what in whats:
            fn = getattr(tl_patching, SWEEPS[what].tl_function)
            res, cw_w, cw_c = timed(lambda: activation_patching(model, tok, what, normalize=False,
                                                                      engine=args.engine))
            if args.tl_cells is None:
                ref, tl_w, tl_c = timed(lambda: fn(model, tok.corrupted, clean_cache, tl_metric))
                diff = float((res.values - ref.cpu()).abs().max())
            else:
                tl_w, tl_c, diff = _sampled_tl(fn, model, tok, clean_cache, tl_metric, res.values, args.tl_cells)
            target = TARGETS.get(what)
            print(f"{what:14s} {tl_w:8.2f}s {tl_c:8.2f}s {cw_w:8.2f}s {cw_c:8.2f}s {tl_w / cw_w:6.1f}x "
                  f"{tl_c / cw_c:6.1f}x {'' if target is None else f'{target:.1f}x':>6s} {diff:10.2e}",
                  flush=True)
            if not args.no_attribution and threads == default_threads:
                attr, a_w, a_c = timed(lambda: attribution_patching(model, tok, what, normalize=False))
                print(f"{'  attribution':14s} {'':9s} {'':9s} {a_w:8.2f}s {a_c:8.2f}s  "
                      f"corr. with exact {attr.correlation(res):.3f}", flush=True)
    torch.set_num_threads(default_threads)
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
