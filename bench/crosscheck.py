"""Cross-implementation check of edge scores: circuitwise against auto-circuit and circuitkit.

Each peer runs in its own virtual environment, made here on first use (``bench/.venvs/<tool>``:
``torch==2.13.0`` first, then the tool from the package index). The same random-weight GPT-2
checkpoint (with GPT-2's real tokenizer) and the same prompts go to every tool; each returns its
edge scores under our edge names, and this script prints, per convention, max |Δscore| against
circuitwise beside the wall-time ratio (peer / circuitwise). Peers load the checkpoint into their own
TransformerLens (``HookedTransformer`` with ``fold_ln``, ``center_writing_weights`` and
``center_unembed``; circuitwise runs on TL 4.3's bridge with the seed's processing — edge scores
do not depend on those function-preserving steps). The metric is MIB's loss, −logit difference,
for the peers: their ``(corrupted − clean)`` difference then gives our sign (``eap_ig_sign``).

Conventions compared (peer method ⇔ circuitwise):

- circuitkit ``EAP`` ⇔ ``eap --gradient clean``;
- circuitkit ``EAP-IG-inputs`` (α = k/n, k = 1…n) ⇔ ``eap-ig --quadrature right``;
- circuitkit ``EAP-IG-activations`` ⇔ ``eap-ig-activations --quadrature right``;
- circuitkit ``exact`` ⇔ ``exact --direction noise`` (small graphs only);
- auto-circuit ``mask_gradient_prune_scores(mask_val=0, grad_function="logit",
  answer_function="avg_diff")`` ⇔ ``eap --gradient clean``.

Not part of the test suite. Run: ``python bench/crosscheck.py [--shape tiny|small|gpt2-small]
[--tools auto-circuit circuitkit] [--methods EAP EAP-IG-inputs …]`` (``--install-only`` makes the venvs).

What it takes to run the peers here (installed by this script): auto-circuit 1.0.1 needs
``HookedTransformer``, gone in TransformerLens 4, so ``transformer-lens==2.18.0`` (which pins
numpy < 2, hence ``datasets<3`` and ``pyarrow<16``); circuitkit 0.2.0 brings its own
``transformer-lens==3.8.0`` and must be imported before it. Scale: EAP-IG (and circuitkit) divide
the summed scores by the number of examples, so the peers get a *summed* metric here; with MIB's
``mean=True`` metric their scores are ours divided by the batch size.

Figures, 2026-12-01, 2 cores shared with other jobs (times are wall, one thread per process, so the
ratios are rough), torch 2.13.0+cpu, the seed's six opposites pairs, 5 IG steps; "max|Δ|" over all
edges against circuitwise, beside the largest |score|:

    tiny GPT-2 (2 layers, 4 heads, d 64; 110 edges)
      auto-circuit EAP             max|Δ| 7.1e-08 (max|score| 4.0e-02)  peer/circuitwise time  6.8x
      circuitkit   EAP             max|Δ| 7.3e-08 (4.0e-02)                                   10.6x
      circuitkit   EAP-IG-inputs   max|Δ| 1.3e-07 (4.1e-02)                                   10.3x
      circuitkit   EAP-IG-activ.   max|Δ| 1.2e-07 (3.3e-02)                                   13.6x
      circuitkit   exact           fails inside circuitkit 0.2.0: TypeError: evaluate_graph() got an
                                   unexpected keyword argument 'pair_padding_side'
    small GPT-2 (4 layers, 8 heads, d 256; 1,519 edges)
      auto-circuit EAP             max|Δ| 7.8e-07 (1.2e-01)                                    9.1x
      circuitkit   EAP             max|Δ| 8.6e-07 (1.2e-01)                                    7.6x
      circuitkit   EAP-IG-inputs   max|Δ| 7.2e-07 (1.3e-01)                                    6.5x
      circuitkit   EAP-IG-activ.   max|Δ| 6.6e-07 (1.2e-01)   (4.8 s against 25.2 s)           5.2x
    GPT-2 small's shapes (12 layers, 12 heads, d 768; 32,491 edges; --methods EAP EAP-IG-inputs)
      auto-circuit EAP             max|Δ| 3.0e-06 (3.8e-01)   (2.0 s against 8.3 s)            4.1x
      circuitkit   EAP             max|Δ| 3.0e-06 (3.8e-01)   (2.0 s against 5.9 s)            2.9x
      circuitkit   EAP-IG-inputs   max|Δ| 2.5e-06 (5.5e-01)   (6.8 s against 17.5 s)           2.6x
All within the 1e-5 target.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
VENVS = ROOT / "bench" / ".venvs"
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT))

# What each peer needs in its environment (torch first: the tools' own pins must not pull another).
TOOLS: dict[str, list[str]] = {
    # auto-circuit needs HookedTransformer (gone in TL 4); TL 2.18 pins numpy < 2, so older datasets/pyarrow.
    "auto-circuit": ["auto-circuit==1.0.1", "transformer-lens==2.18.0", "datasets<3", "pyarrow<16"],
    "circuitkit": ["circuitkit==0.2.0"],
}
TORCH = ["torch==2.13.0+cpu", "torch==2.13.0"]  # the CPU build where the index has it
SHAPES = {"tiny": (2, 4, 64), "small": (4, 8, 256), "gpt2-small": (12, 12, 768)}


def run(cmd: list[str], log: Path, env: dict[str, str] | None = None, timeout: int = 3600) -> subprocess.CompletedProcess:
    with log.open("a", encoding="utf-8") as f:
        f.write(f"$ {' '.join(cmd)}\n")
        f.flush()
        return subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, env=env, timeout=timeout)


def ensure_venv(tool: str) -> tuple[Path | None, str]:
    """The tool's venv python, or None and what failed (the pip log's last lines)."""
    venv = VENVS / tool
    py = venv / "bin" / "python"
    stamp = venv / ".installed"
    log = VENVS / f"{tool}.log"
    if stamp.exists():
        return py, "ok"
    VENVS.mkdir(parents=True, exist_ok=True)
    if not py.exists():
        r = run([sys.executable, "-m", "venv", str(venv)], log)
        if r.returncode:
            return None, f"python -m venv failed (see {log})"
    for spec in TORCH:
        if run([str(py), "-m", "pip", "install", "-q", spec], log).returncode == 0:
            break
    else:
        return None, f"installing torch 2.13.0 failed (see {log})"
    if run([str(py), "-m", "pip", "install", "-q", *TOOLS[tool]], log).returncode:
        tail = log.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-6:]
        return None, f"pip install {' '.join(TOOLS[tool])} failed: " + " | ".join(tail)
    stamp.write_text("ok")
    return py, "ok"


# -- the shared problem ------------------------------------------------------------------------

def build_problem(shape: str, n: int, work: Path) -> dict[str, Any]:
    import circuitwise as cw
    from tests.helpers import make_gpt2_checkpoint

    L, H, d = SHAPES[shape]
    ckpt = make_gpt2_checkpoint(work / f"gpt2-{shape}", n_layer=L, n_head=H, n_embd=d,
                                n_positions=1024 if shape == "gpt2-small" else 128, seed=0)
    model = cw.load_model(str(ckpt), device="cpu")
    task = cw.get_task("opposites-seed") if n <= 6 else cw.get_task("opposites", n=n, seed=0)
    tok, _ = cw.tokenize_task(model, task, need_corrupted=True)
    # Peers read every prompt's last position: keep the prompts of the most common token length.
    lengths = tok.lengths.tolist()
    common = max(set(lengths), key=lengths.count)
    task = task.subset(tuple(i for i, n in enumerate(lengths) if n == common))
    tok, _ = cw.tokenize_task(model, task, need_corrupted=True)
    ex = list(task.examples)
    return {"ckpt": str(ckpt), "model": model, "tok": tok, "shape": [L, H, d],
            "clean": [e.clean for e in ex], "corrupted": [e.corrupted for e in ex],
            "tokens_clean": tok.clean.tolist(), "tokens_corrupted": tok.corrupted.tolist(),
            "answers": tok.answers.tolist()}


def ours(problem: dict[str, Any], steps: int, with_exact: bool, methods: list[str]
         ) -> dict[str, tuple[dict[str, float], float]]:
    import torch

    from circuitwise.circuits import score_edges

    torch.set_num_threads(1)
    model, tok = problem["model"], problem["tok"]
    score_edges(model, tok, "eap")  # warm: weights read and the forward checked once
    runs = {"EAP": ("eap", {"gradient": "clean"}),
            "EAP-IG-inputs": ("eap-ig", {"steps": steps, "quadrature": "right"}),
            "EAP-IG-activations": ("eap-ig-activations", {"steps": steps, "quadrature": "right"})}
    if with_exact:
        runs["exact"] = ("exact", {"direction": "noise"})
    out = {}
    for name, (method, opts) in runs.items():
        if name not in methods:
            continue
        t0 = time.perf_counter()
        s = score_edges(model, tok, method, **opts)
        out[name] = (dict(zip(s.graph.edge_names, s.scores.tolist())), time.perf_counter() - t0)
    return out


# -- the peers' side (run inside their venvs) ----------------------------------------------------

WORKER_COMMON = r'''
import json, sys, time
import torch
torch.set_num_threads(1)
from transformers import AutoModelForCausalLM, AutoTokenizer
from transformer_lens import HookedTransformer, HookedTransformerConfig
from transformer_lens.pretrained.weight_conversions import convert_gpt2_weights

P = json.load(open(sys.argv[1]))
L, H, d = P["shape"]
hf = AutoModelForCausalLM.from_pretrained(P["ckpt"])
tokenizer = AutoTokenizer.from_pretrained(P["ckpt"])
cfg = HookedTransformerConfig(n_layers=L, n_heads=H, d_model=d, d_head=d // H, d_mlp=4 * d, n_ctx=hf.config.n_positions,
                              d_vocab=hf.config.vocab_size, act_fn="gelu_new", normalization_type="LN",
                              default_prepend_bos=True, tokenizer_prepends_bos=False)
model = HookedTransformer(cfg, tokenizer=tokenizer)
model.load_and_process_state_dict(convert_gpt2_weights(hf, cfg), fold_ln=True, center_writing_weights=True,
                                  center_unembed=True)
model.eval()
clean = torch.tensor(P["tokens_clean"]); corrupted = torch.tensor(P["tokens_corrupted"])
answers = torch.tensor(P["answers"])
assert model.to_tokens(P["clean"]).tolist() == P["tokens_clean"], "tokenization differs from circuitwise's"

def our_sender(kind, layer=None, head=None):
    return "input" if kind == "input" else (f"L{layer}H{head}" if kind == "head" else f"MLP{layer}")

def our_receiver(kind, layer=None, head=None, qkv=None):
    return "logits" if kind == "logits" else (f"L{layer}H{head}.{qkv}" if kind == "head" else f"MLP{layer}")
'''

CIRCUITKIT = "import circuitkit  # before transformer_lens: it patches TL on import\n" + WORKER_COMMON + r'''
from circuitkit.backends.eap.graph import Graph
from circuitkit.backends.eap import attribute as ck
model.cfg.use_split_qkv_input = True
model.cfg.use_attn_result = True
model.cfg.use_hook_mlp_in = True

class Loader(list):
    pass

def metric(logits, clean_logits, input_length, labels, mean=True, loss=True):
    last = logits[torch.arange(logits.shape[0]), input_length - 1]
    lab = torch.as_tensor(labels, device=logits.device)
    ld = last.gather(-1, lab)[:, 0] - last.gather(-1, lab)[:, 1]
    # MIB's loss (minus: EAP-IG's (corrupted - clean) then gives our sign), summed: EAP-IG divides
    # the scores by the number of examples itself, so MIB's mean=True metric scales them by 1/batch.
    return -ld.sum()

def name(parent, child, qkv):
    p, c = parent, child
    def s(n):
        if n == "input": return "input"
        if n.startswith("a"): l, h = n[1:].split(".h"); return f"L{l}H{h}"
        return f"MLP{n[1:]}"
    def r(n):
        if n == "logits": return "logits"
        if n.startswith("a"): l, h = n[1:].split(".h"); return f"L{l}H{h}.{qkv}"
        return f"MLP{n[1:]}"
    return f"{s(p)}->{r(c)}"

out = {}
batch = [(P["clean"], P["corrupted"], P["answers"])]
for method, kw in json.loads(sys.argv[3]).items():
    g = Graph.from_model(model)
    t0 = time.perf_counter()
    try:
        ck.attribute(model, g, batch, metric, method, quiet=True, **kw)
    except Exception as e:  # a peer's own bug: reported, the other methods still run
        out[method] = {"error": f"{type(e).__name__}: {e}"}
        continue
    secs = time.perf_counter() - t0
    scores = {}
    for e in g.edges.values():
        qkv = getattr(e, "qkv", None)
        scores[name(e.parent.name, e.child.name, qkv)] = float(e.score)
    out[method] = [scores, secs]
json.dump(out, open(sys.argv[2], "w"))
'''

AUTO_CIRCUIT = WORKER_COMMON + r'''
from auto_circuit.data import PromptDataLoader, PromptDataset, PromptPairBatch
from auto_circuit.prune_algos.mask_gradient import mask_gradient_prune_scores
from auto_circuit.utils.graph_utils import patchable_model

model.set_use_attn_result(True)
model.set_use_split_qkv_input(True)
model.set_use_hook_mlp_in(True)
ds = PromptDataset(clean, corrupted, [a[:1] for a in answers], [a[1:] for a in answers])
loader = PromptDataLoader(ds, seq_len=None, diverge_idx=0, batch_size=len(clean), shuffle=False)
pm = patchable_model(model, factorized=True, slice_output="last_seq", separate_qkv=True, device=torch.device("cpu"))
t0 = time.perf_counter()
ps = mask_gradient_prune_scores(pm, loader, None, grad_function="logit", answer_function="avg_diff", mask_val=0.0)
secs = time.perf_counter() - t0

def s(node):  # "Resid Start", "A{layer}.{head}", "MLP {layer}"
    if node.name == "Resid Start": return "input"
    if node.name.startswith("A"):
        l, h = node.name[1:].split(".")[:2]
        return f"L{l}H{h}"
    return f"MLP{node.name.split()[-1]}"

def r(node):  # "Resid End", "A{layer}.{head}.{Q|K|V}", "MLP {layer}"
    if node.name == "Resid End": return "logits"
    if node.name.startswith("A"):
        l, h, x = node.name[1:].split(".")
        return f"L{l}H{h}.{x.lower()}"
    return f"MLP{node.name.split()[-1]}"

scores = {}
for e in pm.edges:
    scores[f"{s(e.src)}->{r(e.dest)}"] = float(ps[e.dest.module_name][e.patch_idx])
json.dump({"EAP": [scores, secs]}, open(sys.argv[2], "w"))
'''


def peer(tool: str, py: Path, problem_file: Path, work: Path, methods: dict[str, Any]) -> tuple[dict | None, str]:
    script = work / f"{tool}_worker.py"
    script.write_text(CIRCUITKIT if tool == "circuitkit" else AUTO_CIRCUIT, encoding="utf-8")
    out = work / f"{tool}_out.json"
    log = work / f"{tool}_worker.log"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    r = run([str(py), str(script), str(problem_file), str(out), json.dumps(methods)], log, env=env)
    if r.returncode:
        tail = log.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-8:]
        return None, " | ".join(tail)
    return json.loads(out.read_text()), "ok"


def compare(name: str, mine: tuple[dict[str, float], float], theirs: tuple[dict[str, float], float]) -> str:
    a, ta = mine
    b, tb = theirs
    common = sorted(set(a) & set(b))
    only = len(set(a) ^ set(b))
    diff = max(abs(a[k] - b[k]) for k in common) if common else float("nan")
    scale = max(abs(a[k]) for k in common) if common else float("nan")
    return (f"  {name:28s} {len(common):6d} edges ({only} unmatched)  max|Δ| {diff:.2e}  (max|score| {scale:.2e})  "
            f"time: circuitwise {ta:7.2f} s, peer {tb:7.2f} s, ratio {tb / ta:6.1f}x")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shape", choices=list(SHAPES), default="small")
    ap.add_argument("--n", type=int, default=6, help="prompts (6: the seed's pairs; more: generated opposites)")
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--tools", nargs="*", default=list(TOOLS))
    ap.add_argument("--methods", nargs="*", default=["EAP", "EAP-IG-inputs", "EAP-IG-activations", "exact"],
                    help="peer methods to compare (exact: --shape tiny only)")
    ap.add_argument("--install-only", action="store_true")
    args = ap.parse_args()
    envs = {t: ensure_venv(t) for t in args.tools}
    for t, (py, why) in envs.items():
        print(f"{t}: {'venv ' + str(py.parent.parent) if py else 'NOT AVAILABLE: ' + why}", flush=True)
    if args.install_only:
        return
    work = Path(tempfile.mkdtemp(prefix="crosscheck-"))
    problem = build_problem(args.shape, args.n, work)
    with_exact = args.shape == "tiny" and "exact" in args.methods
    pf = work / "problem.json"
    pf.write_text(json.dumps({k: v for k, v in problem.items() if k not in ("model", "tok")}))
    print(f"checkpoint {args.shape} {problem['shape']}, {len(problem['clean'])} prompts, steps {args.steps}", flush=True)
    mine = ours(problem, args.steps, with_exact, args.methods)
    ck_methods: dict[str, Any] = {m: ({"ig_steps": args.steps} if "IG" in m else {}) for m in args.methods
                                  if m != "exact" or with_exact}
    for t, (py, why) in envs.items():
        if py is None:
            print(f"{t}: skipped ({why})")
            continue
        if t == "auto-circuit" and "EAP" not in args.methods:
            continue
        got, why = peer(t, py, pf, work, ck_methods if t == "circuitkit" else {"EAP": {}})
        if got is None:
            print(f"{t}: the worker failed: {why}")
            continue
        print(f"{t}:")
        for name, theirs in got.items():
            if isinstance(theirs, dict):
                print(f"  {name:28s} the peer fails: {theirs['error'][:300]}")
                continue
            print(compare(name, mine[name], tuple(theirs)))


if __name__ == "__main__":
    main()
