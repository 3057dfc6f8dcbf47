"""Issue 21's "How it will be checked", replayed independently on random checkpoints of real shapes.

Each check is written here from the README's claims, not from the project's own tests:

1. ``--dtype bfloat16`` against float32 (baseline logit difference, DLA and its closure, exact and
   attribution patching, EAP-IG's top edges, a circuit's metric) within the README's "Precision"
   bounds, computed here (eps = 2^-7; values within max(4, n_layers) eps (1 + max |logit diff|)); and the bf16
   baseline against TransformerLens's own bf16 forward (a bridge booted and processed here, each
   prompt run alone, tokenized by TransformerLens).
2. Peak memory of ``circuitwise run`` / ``circuit`` subprocesses (VmHWM polled from /proc, and
   getrusage's ru_maxrss) against the plan's estimate written in results.json / circuit.json.
3. Every command under a far too small ``--max-memory``: exit 2, the fixes named, no stage output,
   no folder left.
4. Prompts of different lengths batched (batch 8) against one by one (each prompt its own task) on
   the rotary families' fixtures: baseline, patching values, EAP-IG scores (max |diff| <= 1e-4).
5. The default ``run`` against ``--exhaustive`` on the bundled model, 200 prompts: top heads, circuit,
   times (reported, not asserted: the machine is shared).
6. ``--device-map sequential --n-devices 2`` on a CPU, and ``--max-memory`` parsing.

    python bench/scale_acceptance.py --checks 1,2,3,4,5,6     # about 15 min on two cores

Results merge into bench/results/scale-acceptance-<date>.json (one key per check).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import torch  # noqa: E402

CLI = str(ROOT / ".venv" / "bin" / "circuitwise")
BF16_EPS = 2.0 ** -7


def value_bound(scale: float, n_layers: int) -> float:
    """README, "Precision": values in logits within max(4, n_layers) eps (1 + max |logit difference|) of float32."""
    return max(4, n_layers) * BF16_EPS * (1 + scale)


def checkpoints(root: Path) -> dict[str, Path]:
    """GPT-2-small shapes and Qwen2.5-0.5B shapes at half depth (rotary, 14 heads / 2 kv), GPT-2 BPE."""
    from _models import build_checkpoint
    from scale import build

    out = {"gpt2-small": root / "gpt2-small", "qwen2.5-0.5b-half": root / "qwen2-half"}
    if not (out["gpt2-small"] / "config.json").exists():
        build("gpt2-small", out["gpt2-small"], gpt2_vocab=True)
    if not (out["qwen2.5-0.5b-half"] / "config.json").exists():
        build_checkpoint("qwen2", out["qwen2.5-0.5b-half"])
    return out


def maxdiff(a: Any, b: Any) -> float:
    return float((torch.as_tensor(a).float() - torch.as_tensor(b).float()).abs().max())


# --- 1. precision -------------------------------------------------------------------------------


def tl_bf16_logit_diffs(path: Path, task: Any) -> tuple[torch.Tensor, dict]:
    """TransformerLens's own bf16 forward, processed as the README says circuitwise processes it."""
    from transformer_lens.model_bridge import TransformerBridge

    b = TransformerBridge.boot_transformers(str(path), dtype=torch.bfloat16, device="cpu")
    cfg = b.cfg
    ln = getattr(cfg, "normalization_type", None) in ("LN", "LNPre")
    rotary = getattr(cfg, "positional_embedding_type", None) == "rotary"
    ask = dict(fold_ln=True, center_writing_weights=ln, center_unembed=True, refactor_factored_attn_matrices=not rotary)
    b.enable_compatibility_mode(disable_warnings=True, **ask)
    out = []
    with torch.no_grad():
        for ex in task.examples:
            toks = b.to_tokens(ex.clean)
            good, bad = b.to_single_token(ex.correct), b.to_single_token(ex.incorrect)
            logits = b(toks)[0, -1].float()
            out.append(logits[good] - logits[bad])
    del b
    return torch.stack(out), ask


def check_precision(ckpts: dict[str, Path], n: int) -> dict:
    import circuitwise as cw
    from circuitwise.patching import activation_patching, attribution_patching

    task = cw.get_task("opposites").subset(range(n))
    res: dict[str, Any] = {}
    for name, path in ckpts.items():
        t0 = time.perf_counter()
        r: dict[str, Any] = {}
        m32 = cw.load_model(str(path), device="cpu", dtype="float32")
        m16 = cw.load_model(str(path), device="cpu", dtype="bfloat16")
        r["dtypes"] = [str(m32.W_E.dtype), str(m16.W_E.dtype)]
        tok32, _ = cw.tokenize_task(m32, task, need_corrupted=True)
        tok16, _ = cw.tokenize_task(m16, task, need_corrupted=True)
        b32, b16 = cw.baseline(m32, tok32), cw.baseline(m16, tok16)
        scale = float(b32.logit_diff.abs().max())
        bound = value_bound(scale, int(m32.cfg.n_layers))
        r["bound_logits"] = bound
        r["max_abs_logit_diff_f32"] = scale
        r["baseline_ld"] = maxdiff(b16.logit_diff, b32.logit_diff)
        d32, d16 = cw.direct_logit_attribution(m32, tok32), cw.direct_logit_attribution(m16, tok16)
        r["dla_closure_bf16"] = {"error": float(d16.closure_error), "rounding": float(d16.rounding),
                                 "ok": float(d16.closure_error) <= float(d16.rounding)}
        r["dla_heads"] = maxdiff(d16.heads.values, d32.heads.values)
        r["dla_layers"] = maxdiff(d16.layers.values, d32.layers.values)
        for what in ("resid_pre", "heads"):
            p32 = activation_patching(m32, tok32, what, normalize=False)
            p16 = activation_patching(m16, tok16, what, normalize=False)
            r[f"patching_{what}"] = maxdiff(p16.raw, p32.raw)
            r[f"patching_{what}_engines"] = [p32.config.get("engine"), p16.config.get("engine")]
            if what == "resid_pre":
                kept = p16
        # Is a gap the engines' or bfloat16's? TransformerLens's own hook patching in bfloat16.
        h16 = activation_patching(m16, tok16, "resid_pre", normalize=False, engine="hooks")
        r["patching_resid_pre_bf16_cone_vs_hooks"] = maxdiff(kept.raw, h16.raw)
        a32 = attribution_patching(m32, tok32, "heads", normalize=False)
        a16 = attribution_patching(m16, tok16, "heads", normalize=False)
        r["attribution_heads"] = maxdiff(a16.values, a32.values)
        f32 = cw.find_circuit(m32, tok32, method="eap-ig", selection="top-n", n=10)
        f16 = cw.find_circuit(m16, tok16, method="eap-ig", selection="top-n", n=10)
        s32, s16 = f32.scores.scores.float(), f16.scores.scores.float()
        top32, top16 = set(s32.abs().topk(10).indices.tolist()), set(s16.abs().topk(10).indices.tolist())
        r["eap_ig_top10_shared"] = len(top32 & top16)
        r["eap_ig_scores_dtype"] = str(f16.scores.scores.dtype)
        e32 = cw.evaluate_circuit(m32, tok32, f32.circuit, random_samples=0, curve=False, mib=False)
        e16 = cw.evaluate_circuit(m16, tok16, cw.circuits.Circuit.from_json(f32.circuit.to_json(), m16),
                                  random_samples=0, curve=False, mib=False)
        fa32, fa16 = e32.faithfulness, e16.faithfulness
        r["circuit_metric"] = abs(fa16.circuit_metric - fa32.circuit_metric)
        r["clean_metric"] = abs(fa16.clean_metric - fa32.clean_metric)
        r["faithfulness"] = {"f32": fa32.faithfulness, "bf16": fa16.faithfulness,
                             "gap_f32": fa32.clean_metric - fa32.corrupted_metric}
        tl, ask = tl_bf16_logit_diffs(path, task)
        r["tl_processing"] = ask
        r["cw_processing"] = str(getattr(m16, "circuitwise_processing", None))
        r["tokens_same_as_tl"] = True
        r["bf16_vs_transformerlens"] = maxdiff(b16.logit_diff, tl)
        r["f32_vs_transformerlens_bf16"] = maxdiff(b32.logit_diff, tl)
        values = ("baseline_ld", "dla_heads", "dla_layers", "patching_resid_pre", "patching_heads",
                  "attribution_heads", "circuit_metric", "clean_metric")
        r["within_bounds"] = {k: r[k] <= bound for k in values}
        r["eps_multiples"] = {k: r[k] / (BF16_EPS * (1 + scale)) for k in values}
        r["passes"] = (all(r["within_bounds"].values()) and r["dla_closure_bf16"]["ok"]
                       and r["eap_ig_top10_shared"] >= 8 and r["bf16_vs_transformerlens"] == 0.0)
        r["seconds"] = time.perf_counter() - t0
        res[name] = r
        print(name, json.dumps(r, indent=1, default=str), flush=True)
        del m32, m16
    return res


# --- subprocess helpers -------------------------------------------------------------------------


def run_cli(args: list[str], env: dict | None = None, poll: float = 0.05) -> dict:
    """Run the CLI; its peak RSS from /proc/<pid>/status (VmHWM, polled) and from getrusage."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    p = subprocess.Popen([CLI, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         env={**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})})
    hwm = 0
    import threading

    chunks: dict[str, str] = {}

    def drain(name: str, stream: Any) -> None:
        chunks[name] = stream.read()

    threads = [threading.Thread(target=drain, args=(k, s)) for k, s in (("out", p.stdout), ("err", p.stderr))]
    for t in threads:
        t.start()
    while p.poll() is None:
        try:
            for line in Path(f"/proc/{p.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    hwm = max(hwm, int(line.split()[1]) * 1024)
        except (FileNotFoundError, ProcessLookupError, ValueError):
            pass
        time.sleep(poll)
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {"args": args, "rc": p.returncode, "wall_s": wall,
            "cpu_s": (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime),
            "vmhwm": hwm, "ru_maxrss": after.ru_maxrss * 1024, "stdout": chunks.get("out", ""),
            "stderr": chunks.get("err", "")}


# --- 2. peak memory against the plan ------------------------------------------------------------


PLAN_LINE = re.compile(r"^\s*(\w+): batch (\d+), ≤ ([\d.]+) (GB|MB|kB|B)\b")
UNIT = {"GB": 1e9, "MB": 1e6, "kB": 1e3, "B": 1}


def printed_plan(text: str) -> dict[str, int]:
    """The plan the command printed before any work: each stage's estimated peak (bytes)."""
    out = {}
    for line in text.splitlines():
        m = PLAN_LINE.match(line)
        if m:
            out[m.group(1)] = int(float(m.group(3)) * UNIT[m.group(4)])
    return out


def fill_circuit_estimate(res: dict, name: str) -> None:
    """``circuit`` prints no plan (only ``run`` does): its stages' estimates are those ``run`` printed for
    the same model, task and prompts (edges: scoring; evaluation), the largest of them its bound."""
    run, circ = res.get(f"{name}/run"), res.get(f"{name}/circuit")
    if not run or not circ or circ.get("printed_plan") or not run.get("printed_plan"):
        return
    stages = {k: v for k, v in run["printed_plan"].items() if k in ("baseline", "edges", "evaluation")}
    circ["estimate_from_run_plan"] = stages
    circ["max_estimate"] = max(stages.values())
    circ["peak_over_max_estimate"] = circ["vmhwm"] / circ["max_estimate"]
    circ["passes"] = circ["rc"] == 0 and circ["vmhwm"] <= circ["max_estimate"]


def check_memory(ckpts: dict[str, Path], work: Path, n: int) -> dict:
    res: dict[str, Any] = {}
    for name, path in ckpts.items():
        for cmd, extra, fname in (("run", ["--patch", "heads"], "results.json"), ("circuit", [], "circuit.json")):
            out = work / f"mem-{name}-{cmd}"
            shutil.rmtree(out, ignore_errors=True)
            r = run_cli([cmd, "opposites", "--model", str(path), "--n", str(n), "--out", str(out), *extra])
            row: dict[str, Any] = {k: r[k] for k in ("rc", "wall_s", "cpu_s", "vmhwm", "ru_maxrss")}
            row["printed_plan"] = printed_plan(r["stdout"] + "\n" + r["stderr"])
            if r["rc"] == 0:
                doc = json.loads((out / fname).read_text())
                row["plan_in_output"] = (doc.get("plan") or {}).get("resources")  # circuit.json has none
            if row["printed_plan"]:
                row["max_estimate"] = max(row["printed_plan"].values())
                row["peak_over_max_estimate"] = row["vmhwm"] / row["max_estimate"]
                row["passes"] = row["rc"] == 0 and row["vmhwm"] <= row["max_estimate"]
            row["stderr_tail"] = r["stderr"][-1500:]
            res[f"{name}/{cmd}"] = row
            fill_circuit_estimate(res, name)
            print(name, cmd, {k: row.get(k) for k in ("rc", "wall_s", "vmhwm", "max_estimate", "printed_plan")},
                  flush=True)
    return res


# --- 3. refusal under a small --max-memory ------------------------------------------------------

FIXES = ("--dtype bfloat16", "--device-map", "shorter prompts", "fewer positions", "--max-memory")


def check_refusal(ckpts: dict[str, Path], work: Path) -> dict:
    circuit_dir = work / "refuse-src"
    if not (circuit_dir / "circuit.json").exists():
        shutil.rmtree(circuit_dir, ignore_errors=True)
        r = run_cli(["circuit", "opposites", "--model", "bundled", "--n", "8", "--out", str(circuit_dir)])
        assert r["rc"] == 0, r["stderr"][-2000:]
    cases: dict[str, list[str]] = {
        "run": ["run", "opposites", "--n", "8"],
        "circuit": ["circuit", "opposites", "--n", "8"],
        "patch": ["patch", "opposites", "--n", "8"],
        "evaluate": ["evaluate", str(circuit_dir / "circuit.json"), "opposites", "--n", "8"],
        "benchmark": ["benchmark", "opposites", "--n", "8"],
        "compare": ["compare", "numbers-digits", "numbers-words", "--n", "8"],
        "graph": ["graph", "A tortoise is old, but a kitten is", "--transcoders", "bundled"],
        "mib": ["mib", "--task", "ioi", "--n", "8"],
    }
    res: dict[str, Any] = {}
    # Far too small for the model itself; and at GPT-2-small shapes (1.66 GB resident by the plan's
    # own count) a budget the model just fits in but no stage's batch of one prompt does.
    for model, cap in (("bundled", "1MB"), (str(ckpts["gpt2-small"]), "560MB"),
                       (str(ckpts["gpt2-small"]), "1.67GB")):
        for cmd, args in cases.items():
            if cmd == "graph" and model != "bundled":  # the bundled transcoders fit the bundled model only
                continue
            out = work / f"refuse-{cmd}"
            shutil.rmtree(out, ignore_errors=True)
            margs = [*args, "--model", f"m={model}" if cmd == "mib" else model, "--max-memory", cap,
                     "--out", str(out)]
            r = run_cli(margs)
            text = " ".join((r["stdout"] + r["stderr"]).split())  # rich wraps lines mid-option
            named = [f for f in FIXES if f in text]
            row = {"rc": r["rc"], "wall_s": r["wall_s"], "fixes_named": named, "folder_left": out.exists(),
                   "stage_output": [w for w in ("baseline:", "patching", "scoring", "evaluation:") if
                                    w in r["stdout"].split("plan")[-1]][:3],
                   "message": text[-900:]}
            row["passes"] = row["rc"] == 2 and "--dtype bfloat16" in named and not row["folder_left"]
            res[f"{cmd}@{cap}"] = row
            print(cmd, cap, row["rc"], named, row["folder_left"], flush=True)
    return res


# --- 4. padding ---------------------------------------------------------------------------------


def check_padding(work: Path, n: int) -> dict:
    import circuitwise as cw
    from circuitwise.patching import activation_patching
    from tests.families import make_family_checkpoint

    base = cw.get_task("opposites")
    # Prompts of as many different token lengths as possible among the first 200.
    m0 = cw.load_model("bundled", device="cpu")
    tok0, _ = cw.tokenize_task(m0, base.subset(range(200)), need_corrupted=True)
    by_len: dict[int, list[int]] = {}
    for i, last in enumerate(tok0.last.tolist()):
        by_len.setdefault(last, []).append(i)
    picked: list[int] = []
    while len(picked) < n:
        for idxs in by_len.values():
            if idxs and len(picked) < n:
                picked.append(idxs.pop(0))
    task = base.subset(picked)
    res: dict[str, Any] = {"prompts": picked, "lengths": sorted({int(tok0.last[i]) + 1 for i in picked}),
                           "raw_shape_note": "patching raw is [prompt, ...]: compared row by row"}
    for family in ("llama", "qwen2", "gemma2", "phi3"):
        path = make_family_checkpoint(family, work / f"fam-{family}", seed=3)
        m = cw.load_model(str(path), device="cpu")
        tok, _ = cw.tokenize_task(m, task, need_corrupted=True)
        singles = [cw.tokenize_task(m, task.subset([i]), need_corrupted=True)[0] for i in range(len(task))]
        r: dict[str, Any] = {"padded_shape": list(tok.clean.shape),
                             "pad_side": "right" if int(tok.last.min()) < tok.clean.shape[1] - 1 else "none"}
        bl8 = cw.baseline(m, tok, batch_size=8)
        bl1 = torch.cat([cw.baseline(m, s, batch_size=1).logit_diff for s in singles])
        r["baseline"] = maxdiff(bl8.logit_diff, bl1)
        for what in ("resid_pre", "heads", "heads_by_pos"):
            try:
                # Positions aligned by the task's roles, so that a prompt alone has the same axis.
                p8 = activation_patching(m, tok, what, normalize=False, batch_size=8, align="role")
                p1 = activation_patching(m, tok, what, normalize=False, batch_size=1, align="role")
                r[f"patching_{what}_b8_vs_b1"] = maxdiff(p8.raw, p1.raw)
                # raw is per prompt: each prompt's row against that prompt patched alone, unpadded.
                each = torch.cat([activation_patching(m, s, what, normalize=False, batch_size=1, align="role")
                                  .raw.float() for s in singles])
                r[f"patching_{what}_b8_vs_one_by_one"] = maxdiff(p8.raw, each)
            except Exception as e:  # a sweep the task does not admit is recorded, not fatal
                r[f"patching_{what}"] = f"{type(e).__name__}: {e}"[:300]
        f8 = cw.find_circuit(m, tok, method="eap-ig", selection="top-n", n=10, batch_size=8)
        f1 = cw.find_circuit(m, tok, method="eap-ig", selection="top-n", n=10, batch_size=1)
        r["eap_ig_b8_vs_b1"] = maxdiff(f8.scores.scores, f1.scores.scores)
        each_s = torch.stack([cw.find_circuit(m, s, method="eap-ig", selection="top-n", n=10, batch_size=1)
                              .scores.scores.float() for s in singles])
        r["eap_ig_b8_vs_one_by_one_mean"] = maxdiff(f8.scores.scores, each_s.mean(0))
        r["eap_ig_b8_vs_one_by_one_sum"] = maxdiff(f8.scores.scores, each_s.sum(0))
        r["eap_ig_scale"] = float(f8.scores.scores.abs().max())
        nums = {k: v for k, v in r.items() if isinstance(v, float) and k != "eap_ig_scale"}
        nums.pop("eap_ig_b8_vs_one_by_one_sum" if r["eap_ig_b8_vs_one_by_one_mean"] <
                 r["eap_ig_b8_vs_one_by_one_sum"] else "eap_ig_b8_vs_one_by_one_mean")
        r["max"] = max(nums.values())
        r["passes"] = r["max"] <= 1e-4
        res[family] = r
        print(family, json.dumps(r, default=str), flush=True)
    return res


# --- 5. default run against --exhaustive ----------------------------------------------------------


def summarize_run(folder: Path) -> dict:
    r = json.loads((folder / "results.json").read_text())
    th = r.get("top_heads") or {}
    out = {"top_heads": {k: [h["label"] for h in v] for k, v in th.items() if isinstance(v, list)},
           "notes": r.get("notes", [])}
    circ = r.get("circuit") or {}
    out["circuit_edges"] = sorted(f"{e['sender']}->{e['receiver']}" for e in circ.get("top_edges", []))
    if (folder / "circuit.json").exists():
        c = json.loads((folder / "circuit.json").read_text())
        edges = c.get("edges") or c.get("circuit", {}).get("edges") or []
        out["circuit_json_edges"] = len(edges)
        out["circuit_json_edge_set"] = sorted(json.dumps(e, sort_keys=True) for e in edges)
    sweeps = r.get("patching") or {}
    out["sweep_top"] = {w: [c["cell"] for c in (s.get("top") or [])[:5]] for w, s in sweeps.items()}
    return out


def check_default_run(work: Path, n: int) -> dict:
    res: dict[str, Any] = {"load_average_start": os.getloadavg()[0]}
    sums = {}
    for kind, extra in (("default", []), ("exhaustive", ["--exhaustive"])):
        out = work / f"default-{kind}"
        shutil.rmtree(out, ignore_errors=True)
        r = run_cli(["run", "opposites", "--model", "bundled", "--n", str(n), "--out", str(out), *extra],
                    env={"CIRCUITWISE_THREADS": "1"})
        res[kind] = {k: r[k] for k in ("rc", "wall_s", "cpu_s", "vmhwm")}
        if r["rc"] == 0:
            sums[kind] = summarize_run(out)
            res[kind]["notes"] = sums[kind]["notes"]
        else:
            res[kind]["stderr"] = r["stderr"][-2000:]
        print(kind, res[kind], flush=True)
    if len(sums) == 2:
        a, b = sums["default"], sums["exhaustive"]
        res["same_top_heads"] = a["top_heads"] == b["top_heads"]
        res["same_circuit"] = (a["circuit_edges"] == b["circuit_edges"]
                               and a.get("circuit_json_edge_set") == b.get("circuit_json_edge_set"))
        res["circuit_edges"] = a.get("circuit_json_edges")
        res["same_sweep_top5"] = {w: a["sweep_top"][w] == b["sweep_top"].get(w) for w in a["sweep_top"]}
        res["top_heads"] = a["top_heads"]
    res["load_average_end"] = os.getloadavg()[0]
    return res


# --- 6. several devices bookkeeping ---------------------------------------------------------------


def check_devices(work: Path) -> dict:
    import circuitwise as cw

    res: dict[str, Any] = {"cuda_devices": torch.cuda.device_count()}
    for extra in (["--device-map", "sequential", "--n-devices", "2"], ["--device-map", "sequential"],
                  ["--device-map", "bogus"], ["--device-map", "auto", "--device", "cpu"]):
        out = work / "dev"
        shutil.rmtree(out, ignore_errors=True)
        r = run_cli(["patch", "opposites", "--model", "bundled", "--n", "4", "--patch", "resid_pre", "--out",
                     str(out), *extra])
        res[" ".join(extra)] = {"rc": r["rc"], "message": (r["stdout"] + r["stderr"])[-600:],
                                "folder_left": out.exists()}
        print(extra, r["rc"], (r["stderr"])[-300:], flush=True)
    # A CPU-only "split" (TransformerLens places every block on the CPU): the same numbers as one device.
    vals = {}
    for name, extra in (("one", []), ("sequential", ["--device-map", "sequential"])):
        out = work / f"dev-{name}"
        shutil.rmtree(out, ignore_errors=True)
        r = run_cli(["patch", "opposites", "--model", "bundled", "--n", "4", "--patch", "heads", "--out", str(out),
                     *extra])
        if r["rc"] == 0:
            sw = json.loads((out / "patching.json").read_text())["sweeps"]
            vals[name] = json.dumps(sw, sort_keys=True)
    res["sequential_same_as_one_device"] = len(vals) == 2 and vals["one"] == vals["sequential"]
    for cap in ("2GB", "500MiB", "0", "abc", "-1GB", "1.5g"):
        out = work / "cap"
        shutil.rmtree(out, ignore_errors=True)
        r = run_cli(["run", "opposites", "--model", "bundled", "--n", "4", "--patch", "resid_pre", "--circuit",
                     "none", "--max-memory", cap, "--out", str(out)])
        text = r["stdout"] + r["stderr"]
        budget = next((ln.strip() for ln in text.splitlines() if "memory budget" in ln), None)
        res[f"max-memory {cap}"] = {"rc": r["rc"], "budget_line": budget,
                                    "message": text[-400:] if r["rc"] else None, "folder_left": out.exists()}
        print(cap, r["rc"], budget, flush=True)
    from circuitwise.sizes import parse_size

    res["parse_size"] = {}
    for s in ("2GB", "500MiB", "0", "abc", "1.5g", "8 GiB"):
        try:
            res["parse_size"][s] = parse_size(s)
        except ValueError as e:
            res["parse_size"][s] = f"ValueError: {e}"
    del cw
    return res


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--checks", default="1,2,3,4,5,6")
    ap.add_argument("--work", type=Path, default=Path("/tmp/cw-scale-acceptance"))
    ap.add_argument("--n-precision", type=int, default=6)
    ap.add_argument("--n-memory", type=int, default=20)
    ap.add_argument("--n-padding", type=int, default=8)
    ap.add_argument("--n-default", type=int, default=200)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / f"scale-acceptance-{dt.date.today()}.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    args.work.mkdir(parents=True, exist_ok=True)
    ckpts = checkpoints(args.work / "ckpt")
    doc = json.loads(args.out.read_text()) if args.out.exists() else {}
    doc["torch"] = torch.__version__
    checks = {
        "1": ("precision", lambda: check_precision(ckpts, args.n_precision)),
        "2": ("memory", lambda: check_memory(ckpts, args.work, args.n_memory)),
        "3": ("refusal", lambda: check_refusal(ckpts, args.work)),
        "4": ("padding", lambda: check_padding(args.work, args.n_padding)),
        "5": ("default_run", lambda: check_default_run(args.work, args.n_default)),
        "6": ("devices", lambda: check_devices(args.work)),
    }
    for c in args.checks.split(","):
        key, fn = checks[c]
        t0 = time.perf_counter()
        result = fn()
        doc[key] = {"seconds": time.perf_counter() - t0, "when": dt.datetime.now(dt.UTC).isoformat(),
                    "result": result}
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(doc, indent=1, default=str))
        print(f"check {c} ({key}) done in {doc[key]['seconds']:.0f} s -> {args.out}", flush=True)


if __name__ == "__main__":
    main()
