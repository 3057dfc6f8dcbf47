"""ACDC parity: circuitwise's ``acdc`` against ACDC's reference implementation (Conmy et al. 2023).

The reference is ArthurConmy/Automatic-Circuit-Discovery (``acdc/TLACDCExperiment.py``), run from
its source at ``REF_COMMIT`` in its own virtual environment (``bench/.venvs/acdc``: ``torch==2.13.0``
first, then the TransformerLens 1.6.1 it pins and the old ``transformers``/``numpy`` that TL needs).
Both sides get the same random-weight checkpoint, the same token ids (circuitwise's tokenization,
passed to the reference as its ``ds``/``ref_ds``), ACDC's KL of the last token to the clean run,
and the same absolute threshold in nats. The script prints, per problem and threshold, the kept-edge
counts, the Jaccard index of the kept sets, the edges only one side keeps, and the largest
difference of the per-edge loss changes (the reference's ``edge.effect_size``, circuitwise's score)
over edges both sides tried; it writes it all to ``bench/results/acdc-parity-<date>.json``.

Why several comparisons. Two things in the reference differ from circuitwise by construction:

1. Its graph has, per head and per q/k/v, an extra DIRECT_COMPUTATION edge ``hook_q_input → hook_q``
   (removing it makes the head read a fully corrupted query): one test of the whole input before
   the individual residual edges, which circuitwise does not make.
2. Its receiver order: nodes in reverse hook order, so per layer the MLP's input, then *all* heads'
   ``hook_v`` (last head first), all ``hook_k``, all ``hook_q``, then all ``hook_v_input``, all
   ``hook_k_input``, all ``hook_q_input``. circuitwise goes head by head (each head's v, k, q).
   The sender order within a receiver is the same on both sides with ``main.py``'s defaults
   (``names_mode=indices_mode="normal"``: latest layer first, MLP before heads, last head first,
   input last); the class's own default ``indices_mode="reverse"`` would try a layer's heads first
   to last, so the script passes ``"normal"`` explicitly.

So the script runs four pairings (``PAIRINGS``):

- ``matched``: the reference with its DIRECT_COMPUTATION edges turned into placeholders (always
  kept, never tested: the graph is then circuitwise's) and its KL reduced in float64 (as
  circuitwise reduces it), against circuitwise with its receiver order replaced by the reference's
  (``circuitwise.circuits.acdc.receiver_order`` swapped inside this process only). Same graph,
  same order, same loss: the kept sets should agree exactly.
- ``order``: the same reference run against circuitwise's own order: what the order alone changes.
- ``direct``: the reference's full graph (float64 KL) against circuitwise as shipped. Edges kept by
  the reference's DIRECT tests are listed apart (circuitwise has none).
- ``shipped``: the reference as published — full graph, and the KL in float32 as its tasks compute
  it — against circuitwise as shipped. On a near-uniform model (``known``: a 4e-5-nat gap) the
  float32 KL over 50,257 tokens is noise of the gap's own size.

Problems: ``random`` — tests/families.py's GPT-2 (2 layers, 4 heads, d_model 64, MLP 128, random
weights with randomised LayerNorm gains and biases; tied token embedding ×5, see ``embed_scale``),
prompts "A B C D" → " D", corrupted by swapping the last letter (tied embeddings give the clean
answer a real logit gap even at random weights); ``known`` — tests/unit/circuits/known_circuit.py's
planted-circuit GPT-2 and its task.
Thresholds are absolute (nats, as the reference's), chosen per problem as fixed fractions of that
problem's clean–corrupted KL gap so that they span "keep most" to "keep little".

Processing: circuitwise loads with its default processing (fold_ln, centring, QK/OV refactor);
the reference's HookedTransformer gets fold_ln, center_writing_weights and center_unembed as
``HookedTransformer.from_pretrained`` would. These steps preserve the function and every patched
run (a LayerNorm reads a sender only through the sum, and a constant per-head write cancels
between clean and corrupted), so the losses agree to float error; the script checks that the full
and fully-corrupted losses agree before comparing.

The reference's ``acdc/acdc_graphics.py`` imports pygraphviz (a C build) to draw PNGs; the worker
puts a stub with no-op ``show``/``log_metrics_to_wandb`` in its place. Nothing else of the
reference is changed; wandb is off (its default).

Not part of the test suite. Figures and what they say: bench/README.md. Run (from the repository
root; about 4 minutes on 2 shared cores):

    PYTHONPATH=/work/main /work/main/.venv/bin/python bench/acdc_parity.py [--n 8] [--problems random known]
        [--ref-git PATH]  # the reference's git dir (from the fetch tool); its source is extracted once
        [--install-only]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
VENVS = ROOT / "bench" / ".venvs"
VENV = VENVS / "acdc"
SRC = VENVS / "acdc-src"  # the reference's acdc/ package, extracted from its git snapshot
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT))
from bench._reference import circuitwise_state, embed_scale, install_venv, run  # noqa: E402

REF_REPO = "ArthurConmy/Automatic-Circuit-Discovery"
REF_COMMIT = "bc99ace817974b5584b7ee203d596a8e2bbcd399"
DEFAULT_REF_GIT = Path("/work/.mirror/ArthurConmy+Automatic-Circuit-Discovery/repo")
# torch first (the CPU wheel; anything else pulls a CUDA build), then what the reference pins:
# transformer-lens 1.6.1 (pyproject), which needs numpy < 2 (hence datasets < 3, pyarrow < 16),
# typeguard's 2.x API, and a transformers 4.x (^4.35 in the reference's pyproject).
TORCH = "torch==2.13.0"
DEPS = ["transformer_lens==1.6.1", "transformers>=4.35,<4.47", "numpy<2", "datasets<3", "pyarrow<16",
        "typeguard<3", TORCH]
# Thresholds as fractions of each problem's clean–corrupted KL gap (then passed in nats to both).
FRACTIONS = (1e-5, 1e-4, 1e-3, 1e-2, 0.1)
EMBED_SCALE = 5.0  # see embed_scale
# The reference's runs: its graph with or without the q/k/v DIRECT_COMPUTATION edges, and its KL
# reduced in float32 (as its tasks do) or float64 (as circuitwise does).
VARIANTS = {"matched": {"direct_edges": False, "kl_dtype": "float64"},
            "direct": {"direct_edges": True, "kl_dtype": "float64"},
            "shipped": {"direct_edges": True, "kl_dtype": "float32"}}
# Pairings: (reference variant, circuitwise receiver order).
PAIRINGS = {"matched": ("matched", "reference"), "order": ("matched", "circuitwise"),
            "direct": ("direct", "circuitwise"), "shipped": ("shipped", "circuitwise")}
LETTERS = [" A", " B", " C", " D", " E", " F", " G", " H", " J", " K", " L", " M", " N", " P", " R", " S"]


def ensure_reference(ref_git: Path) -> tuple[Path | None, str]:
    """The reference venv's python (made on first use) and its source; or None and what failed."""
    log = VENVS / "acdc.log"
    VENVS.mkdir(parents=True, exist_ok=True)
    if not (SRC / "acdc" / "TLACDCExperiment.py").exists():
        if not (ref_git / "HEAD").exists():
            return None, (f"the reference's source is not at {SRC} and no git snapshot at {ref_git} "
                          f"(fetch github:{REF_REPO} and pass --ref-git)")
        SRC.mkdir(parents=True, exist_ok=True)
        arch = subprocess.run(["git", "--git-dir", str(ref_git), "archive", REF_COMMIT, "acdc"],
                              capture_output=True)
        if arch.returncode:
            return None, f"git archive {REF_COMMIT} failed: {arch.stderr.decode()[-300:]}"
        subprocess.run(["tar", "-x", "-C", str(SRC)], input=arch.stdout, check=True)
    return install_venv(VENV, log, TORCH, DEPS)


# -- the shared problems ---------------------------------------------------------------------------

def letters_task(n: int, seed: int = 0):
    """ "A B C D" → " D": the answer is the prompt's last token, so at random weights the tied
    embedding/unembedding already favours it; the corruption swaps that last letter."""
    import random

    import circuitwise as cw

    rng = random.Random(seed)
    examples = []
    for _ in range(n):
        picks = rng.sample(LETTERS, 5)
        clean = picks[0].strip() + "".join(picks[1:4])
        examples.append(cw.Example(clean=clean, correct=picks[3], incorrect=picks[4],
                                   corrupted=picks[0].strip() + "".join(picks[1:3]) + picks[4]))
    return cw.Task("last-letter", tuple(examples), "Repeat the last letter (random-weight GPT-2).")


def build_problem(name: str, n: int, work: Path) -> dict[str, Any]:
    import circuitwise as cw

    if name == "random":
        from tests.families import make_family_checkpoint

        ckpt = make_family_checkpoint("gpt2", work / "gpt2-random", seed=0, n_layers=2)
        embed_scale(ckpt, EMBED_SCALE)
        task = letters_task(n)
    else:
        from tests.unit.circuits.known_circuit import known_circuit_task, make_known_circuit_checkpoint

        ckpt = make_known_circuit_checkpoint(work / "known-circuit")
        task = known_circuit_task(n=n)
    model = cw.load_model(str(ckpt), device="cpu")
    tok, _ = cw.tokenize_task(model, task, need_corrupted=True)
    # The reference reads position -1 of an unpadded batch: every prompt must have one length.
    assert len(set(tok.lengths.tolist())) == 1, f"{name}: prompts of several token lengths"
    return {"name": name, "ckpt": str(ckpt), "model": model, "tok": tok,
            "clean": [e.clean for e in task.examples], "corrupted": [e.corrupted for e in task.examples],
            "tokens_clean": tok.clean.tolist(), "tokens_corrupted": tok.corrupted.tolist()}


# -- circuitwise's side ----------------------------------------------------------------------------

def reference_receiver_order(g) -> list[int]:
    """The reference's visiting order in circuitwise's receiver ids: logits, then per layer (last
    first) the MLP, then all heads' values (last head first), all keys, all queries — the reverse
    of TransformerLens's hook order, which is how TLACDCExperiment sorts its nodes."""
    order = [g.logits_receiver]
    for layer in reversed(range(g.n_layers)):
        if g.has_mlp:
            order.append(g.mlp_receiver(layer))
        qkv = g.qkv_receivers(layer)
        for kind in (2, 1, 0):  # v, k, q (receivers are laid out q-block, k-block, v-block)
            order += [qkv.start + kind * g.n_heads + h for h in reversed(range(g.n_heads))]
    return order


@contextlib.contextmanager
def receiver_order_of(order_fn) -> Iterator[None]:
    """circuitwise's ACDC with another receiver order, in this process only (src/ is untouched)."""
    import circuitwise.circuits.acdc as acdc_mod

    saved = acdc_mod.receiver_order
    acdc_mod.receiver_order = order_fn
    try:
        yield
    finally:
        acdc_mod.receiver_order = saved


def ours(problem: dict[str, Any], threshold: float, order: str) -> dict[str, Any]:
    import circuitwise.circuits.acdc as acdc_mod
    from circuitwise.circuits import score_edges
    from circuitwise.circuits.scores import prepare

    fn = reference_receiver_order if order == "reference" else acdc_mod.receiver_order
    # circuitwise remembers every patched edge set's loss per task (patch._Memo), so a second run
    # would replay the first one's forwards; forget them so that every timed run starts cold, as
    # each TLACDCExperiment does (weights stay read: the reference also keeps its loaded model).
    prepare(problem["model"], problem["tok"], "kl").gm.memo.clear()
    with receiver_order_of(fn):
        t0, c0 = time.perf_counter(), time.process_time()
        s = score_edges(problem["model"], problem["tok"], "acdc", threshold=threshold, relative=False, objective="kl")
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        visit = [s.graph.receivers[r].name for r in fn(s.graph)]
    kept = acdc_mod.acdc_circuit(s)
    names = s.graph.edge_names
    return {"kept": sorted(names[i] for i in kept.nonzero().flatten().tolist()),
            "scores": {n: float(v) for n, v in zip(names, s.scores.tolist(), strict=True)},
            "n_edges": len(names), "n_tried": s.config["n_tried"], "final_loss": s.config["final_loss"],
            "receiver_order": visit, "wall_s": wall, "cpu_s": cpu}


def loss_ends(problem: dict[str, Any]) -> tuple[float, float]:
    """circuitwise's KL of the full circuit (0) and of the empty one (the corrupted run)."""
    from circuitwise.circuits import score_edges

    # An infinite threshold removes every edge; the scores' metrics are the clean and corrupted KL.
    s = score_edges(problem["model"], problem["tok"], "acdc", threshold=1e9, relative=False, objective="kl")
    return float(s.clean_metric), float(s.corrupted_metric)


# -- the reference's side (run inside its venv) ----------------------------------------------------

WORKER = r'''
import json, sys, time, types, io, contextlib
import torch
torch.set_num_threads(1)
P = json.load(open(sys.argv[1]))
sys.path.insert(0, P["src"])
# acdc_graphics imports pygraphviz (a C build) only to draw PNGs: a stub with no-op drawing instead.
g = types.ModuleType("acdc.acdc_graphics")
g.show = lambda *a, **k: None
g.log_metrics_to_wandb = lambda *a, **k: None
sys.modules["acdc.acdc_graphics"] = g
import torch.nn.functional as F
import transformers, transformer_lens
from functools import partial
from transformers import AutoModelForCausalLM
from transformer_lens import HookedTransformer, HookedTransformerConfig
from transformer_lens.loading_from_pretrained import convert_gpt2_weights
from acdc.TLACDCExperiment import TLACDCExperiment
from acdc.TLACDCEdge import EdgeType
from acdc.acdc_utils import kl_divergence

hf = AutoModelForCausalLM.from_pretrained(P["ckpt"]).float().eval()
c = hf.config
act = {"gelu_new": "gelu_new", "gelu": "gelu", "relu": "relu"}[c.activation_function]
cfg = HookedTransformerConfig(n_layers=c.n_layer, n_heads=c.n_head, d_model=c.n_embd, d_head=c.n_embd // c.n_head,
                              d_mlp=c.n_inner or 4 * c.n_embd, n_ctx=c.n_positions, d_vocab=c.vocab_size, act_fn=act,
                              normalization_type="LNPre", eps=c.layer_norm_epsilon)
model = HookedTransformer(cfg)
# As HookedTransformer.from_pretrained processes GPT-2 by default (its config says LNPre when fold_ln:
# the LayerNorms' weights and biases are folded into the next weights).
model.load_and_process_state_dict(convert_gpt2_weights(hf, cfg), fold_ln=True, center_writing_weights=True,
                                  center_unembed=True)
model.eval()
# What TLACDCExperiment.verify_model_setup asks for.
model.set_use_attn_result(True)
model.set_use_split_qkv_input(True)
model.cfg.use_hook_mlp_in = True
clean = torch.tensor(P["tokens_clean"])
corrupted = torch.tensor(P["tokens_corrupted"])
with torch.no_grad():
    logits_clean = model(clean)[:, -1]
    # The same function as the checkpoint: TL's last-token log-probabilities against transformers'.
    hf_lp = F.log_softmax(hf(clean).logits[:, -1].double(), -1)
    tl_vs_hf = float((F.log_softmax(logits_clean.double(), -1) - hf_lp).abs().max())
# The reference tasks' validation metric: the mean over prompts of KL(clean || patched) at the last
# position, with the clean log-probabilities computed once. "float32" is how the reference's tasks
# compute it; "float64" reduces the softmax and the sum in float64, as circuitwise does.
bases = {"float32": F.log_softmax(logits_clean, dim=-1), "float64": F.log_softmax(logits_clean.double(), dim=-1)}
metrics = {"float32": partial(kl_divergence, base_model_logprobs=bases["float32"], last_seq_element_only=True),
           "float64": lambda logits: kl_divergence(logits.double(), bases["float64"], last_seq_element_only=True)}
with torch.no_grad():
    ends = {k: [float(m(model(x))) for x in (clean, corrupted)] for k, m in metrics.items()}


def sender(name, idx):
    parts = name.split(".")
    if name == "blocks.0.hook_resid_pre":
        return "input"
    if name.endswith("attn.hook_result"):
        return f"L{parts[1]}H{idx[2]}"
    if name.endswith("hook_mlp_out"):
        return f"MLP{parts[1]}"
    if name.endswith("_input"):  # hook_q_input: the parent of a DIRECT_COMPUTATION edge
        return f"L{parts[1]}H{idx[2]}.{parts[2][5]}_input"
    raise ValueError(name)


def receiver(name, idx):
    parts = name.split(".")
    if name.endswith("hook_resid_post"):
        return "logits"
    if name.endswith("hook_mlp_in"):
        return f"MLP{parts[1]}"
    if name.endswith("_input"):
        return f"L{parts[1]}H{idx[2]}.{parts[2][5]}"
    if ".attn.hook_" in name:  # hook_q: the child of a DIRECT_COMPUTATION edge
        return f"L{parts[1]}H{idx[2]}.{parts[3][5]}(whole)"
    return None  # hook_result / hook_mlp_out: receive only placeholder edges


out = {"versions": {"torch": torch.__version__, "transformer_lens": transformer_lens.__version__
                    if hasattr(transformer_lens, "__version__") else "1.6.1",
                    "transformers": transformers.__version__}, "ends": ends, "tl_vs_hf_max_logprob_diff": tl_vs_hf,
       "runs": {}}
for variant, spec in P["variants"].items():
    for t in P["thresholds"]:
        model.reset_hooks()
        t0, c0 = time.perf_counter(), time.process_time()
        log = io.StringIO()
        with contextlib.redirect_stdout(log):  # the reference prints every hook and step
            exp = TLACDCExperiment(model=model, ds=clean, ref_ds=corrupted, threshold=t,
                                   metric=metrics[spec["kl_dtype"]], indices_mode="normal", names_mode="normal",
                                   remove_redundant=False,
                                   online_cache_cpu=True, corrupted_cache_cpu=True, add_sender_hooks=True,
                                   add_receiver_hooks=False, use_pos_embed=False, verbose=False)
            if not spec["direct_edges"]:
                # circuitwise's graph: the q/k/v DIRECT_COMPUTATION edges become placeholders (kept,
                # never tested), so the head's q/k/v is recomputed from its (patched) input.
                for (cn, ci, pn, pi), e in exp.corr.all_edges().items():
                    if e.edge_type == EdgeType.DIRECT_COMPUTATION:
                        e.edge_type = EdgeType.PLACEHOLDER
                        exp.corr.graph[cn][ci].incoming_edge_type = EdgeType.PLACEHOLDER
            edges = {(cn, ci.hashable_tuple, pn, pi.hashable_tuple): e
                     for (cn, ci, pn, pi), e in exp.corr.all_edges().items() if e.edge_type != EdgeType.PLACEHOLDER}
            visited = []
            while exp.current_node is not None:
                node = exp.current_node
                r = receiver(node.name, node.index.hashable_tuple)
                if r is not None and node.incoming_edge_type != EdgeType.PLACEHOLDER:
                    visited.append(r)
                exp.step(testing=False)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        present = {(cn, ci.hashable_tuple, pn, pi.hashable_tuple)
                   for (cn, ci, pn, pi), e in exp.corr.all_edges().items()
                   if e.present and e.edge_type != EdgeType.PLACEHOLDER}
        named = {k: f"{sender(k[2], k[3])}->{receiver(k[0], k[1])}" for k in edges}
        out["runs"][f"{variant}@{t!r}"] = {
            "kept": sorted(named[k] for k in present),
            "effect": {named[k]: e.effect_size for k, e in edges.items()},
            "n_edges": len(edges), "final_loss": float(exp.cur_metric), "receiver_order": visited,
            "wall_s": wall, "cpu_s": cpu}
        model.reset_hooks()
json.dump(out, open(sys.argv[2], "w"))
'''


def reference(py: Path, problem: dict[str, Any], thresholds: list[float], work: Path) -> tuple[dict | None, str]:
    pf = work / f"{problem['name']}-problem.json"
    pf.write_text(json.dumps({"ckpt": problem["ckpt"], "src": str(SRC), "thresholds": thresholds,
                              "variants": VARIANTS, "tokens_clean": problem["tokens_clean"],
                              "tokens_corrupted": problem["tokens_corrupted"]}))
    script = work / "acdc_worker.py"
    script.write_text(WORKER, encoding="utf-8")
    outf = work / f"{problem['name']}-reference.json"
    log = work / f"{problem['name']}-reference.log"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "1",
           "WANDB_MODE": "disabled", "PYTHONPATH": ""}
    if run([str(py), str(script), str(pf), str(outf)], log, env=env):
        tail = log.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-12:]
        return None, "\n".join(tail)
    return json.loads(outf.read_text()), "ok"


# -- comparison --------------------------------------------------------------------------------------

def compare(mine: dict[str, Any], theirs: dict[str, Any], threshold: float) -> dict[str, Any]:
    a = set(mine["kept"])
    direct = {e for e in theirs["kept"] if "_input->" in e}  # the reference's DIRECT_COMPUTATION edges
    b = set(theirs["kept"]) - direct
    union = a | b
    # Per-edge loss changes over edges both sides tested (circuitwise scores untried edges 0; the
    # reference leaves their effect_size None).
    both = [e for e, v in theirs["effect"].items() if v is not None and e in mine["scores"] and mine["scores"][e] != 0]
    diffs = [abs(mine["scores"][e] - theirs["effect"][e]) for e in both]
    # How close any decision was to the threshold (either side): a float tie could flip it.
    margin = min((abs(mine["scores"][e] - threshold) for e in mine["scores"] if mine["scores"][e] != 0),
                 default=float("nan"))
    # The receivers the reference stepped (it skips nodes already cut off), in its order, against
    # circuitwise's order restricted to them; its whole-input DIRECT tests are left out.
    ref_order = [r for r in theirs["receiver_order"] if not r.endswith("(whole)")]
    stepped = set(ref_order)
    same_order = ref_order == [r for r in mine["receiver_order"] if r in stepped]
    return {"threshold": threshold, "same_receiver_order": same_order,
            "n_edges_circuitwise": mine["n_edges"], "n_edges_reference": theirs["n_edges"],
            "kept_circuitwise": len(a), "kept_reference": len(b), "kept_circuitwise_edges": sorted(a),
            "kept_reference_direct_edges": sorted(direct), "jaccard": len(a & b) / len(union) if union else 1.0,
            "only_circuitwise": sorted(a - b), "only_reference": sorted(b - a),
            "edges_tested_both": len(both), "max_abs_effect_diff": max(diffs, default=float("nan")),
            "max_abs_effect": max((abs(theirs["effect"][e]) for e in both), default=float("nan")),
            "closest_decision_to_threshold": margin,
            "final_loss_circuitwise": mine["final_loss"], "final_loss_reference": theirs["final_loss"],
            "wall_s_circuitwise": mine["wall_s"], "cpu_s_circuitwise": mine["cpu_s"],
            "wall_s_reference": theirs["wall_s"], "cpu_s_reference": theirs["cpu_s"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=8, help="prompts per problem")
    ap.add_argument("--problems", nargs="*", default=["random", "known"], choices=["random", "known"])
    ap.add_argument("--fractions", nargs="*", type=float, default=list(FRACTIONS),
                    help="thresholds as fractions of the problem's clean–corrupted KL gap")
    ap.add_argument("--ref-git", type=Path, default=DEFAULT_REF_GIT)
    ap.add_argument("--install-only", action="store_true")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    py, why = ensure_reference(args.ref_git)
    print(f"reference: {'venv ' + str(VENV) if py else 'NOT AVAILABLE: ' + why}", flush=True)
    if py is None or args.install_only:
        if py is None:
            sys.exit(1)
        return
    import torch

    torch.set_num_threads(1)  # a shared machine: compare one thread against one thread
    work = Path(tempfile.mkdtemp(prefix="acdc-parity-"))
    result: dict[str, Any] = {"date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
                              "reference": {"repo": REF_REPO, "commit": REF_COMMIT}, "n_prompts": args.n,
                              "torch_threads": 1, "circuitwise": circuitwise_state(), "problems": {}}
    for name in args.problems:
        problem = build_problem(name, args.n, work)
        clean_kl, corrupted_kl = loss_ends(problem)
        thresholds = [f * corrupted_kl for f in args.fractions]
        print(f"\n{name}: {len(problem['clean'])} prompts, e.g. {problem['clean'][0]!r} / {problem['corrupted'][0]!r}; "
              f"KL clean {clean_kl:.3g}, corrupted {corrupted_kl:.4g} nats; thresholds "
              + ", ".join(f"{t:.3g}" for t in thresholds), flush=True)
        theirs, why = reference(py, problem, thresholds, work)
        entry: dict[str, Any] = {"checkpoint": Path(problem["ckpt"]).name, "prompts": problem["clean"],
                                 "corrupted": problem["corrupted"], "kl_clean": clean_kl, "kl_corrupted": corrupted_kl,
                                 "fractions": args.fractions, "thresholds": thresholds}
        if theirs is None:
            print(f"  the reference failed:\n{why}")
            entry["reference_error"] = why
            result["problems"][name] = entry
            continue
        result["versions_reference"] = theirs["versions"]
        entry["kl_reference"] = {k: {"clean": v[0], "corrupted": v[1]} for k, v in theirs["ends"].items()}
        entry["reference_tl_vs_hf_max_logprob_diff"] = theirs["tl_vs_hf_max_logprob_diff"]
        for k, (c, r) in theirs["ends"].items():
            print(f"  reference KL ({k}) clean {c:.3g}, corrupted {r:.4g} (vs circuitwise {r - corrupted_kl:+.1e})")
        print(f"  reference TL 1.6.1 vs transformers: max |Δ log p| {theirs['tl_vs_hf_max_logprob_diff']:.1e}")
        # Same function on both sides before any comparison: the float64 KL of the fully corrupted run
        # (what every edge test moves between) must agree to float32 forward error.
        agree = abs(theirs["ends"]["float64"][1] - corrupted_kl) <= 1e-6 + 1e-4 * corrupted_kl
        entry["losses_agree"] = agree
        if not agree:
            print("  WARNING: the two sides' corrupted-run KL differ beyond float error: not the same function")
        ours(problem, thresholds[0], "circuitwise")  # warm: weights read, the engine's plans made once
        entry["pairings"] = {}
        orders: dict[str, list[str]] = {}
        for pname, (variant, order) in PAIRINGS.items():
            rows = []
            for t in thresholds:
                mine = ours(problem, t, order)
                ref = theirs["runs"][f"{variant}@{t!r}"]
                rows.append(compare(mine, ref, t))
                orders.setdefault(f"circuitwise ({order} order)", mine["receiver_order"])
                orders.setdefault(f"reference ({variant})", ref["receiver_order"])
            entry["pairings"][pname] = rows
            print(f"  {pname:8s} (reference: {variant} = {VARIANTS[variant]}; circuitwise: {order} receiver order; "
                  f"edges {rows[0]['n_edges_circuitwise']} / {rows[0]['n_edges_reference']})")
            print(f"    {'threshold':>10s} {'kept cw':>8s} {'kept ref':>8s} {'Jaccard':>8s} {'only cw':>8s} "
                  f"{'only ref':>8s} {'max|Δeffect|':>12s} {'t cw s':>7s} {'t ref s':>7s}  notes")
            for r in rows:
                notes = []
                if r["only_circuitwise"]:
                    notes.append("cw only: " + " ".join(r["only_circuitwise"][:4]))
                if r["only_reference"]:
                    notes.append("ref only: " + " ".join(r["only_reference"][:4]))
                if not r["same_receiver_order"]:
                    notes.append("receiver order differs")
                if r["kept_reference_direct_edges"]:
                    notes.append(f"+{len(r['kept_reference_direct_edges'])} DIRECT kept")
                print(f"    {r['threshold']:10.3g} {r['kept_circuitwise']:8d} {r['kept_reference']:8d} "
                      f"{r['jaccard']:8.3f} {len(r['only_circuitwise']):8d} {len(r['only_reference']):8d} "
                      f"{r['max_abs_effect_diff']:12.1e} "
                      f"{r['wall_s_circuitwise']:7.2f} {r['wall_s_reference']:7.2f}  {'; '.join(notes)}")
        # The reference lists only the receivers it stepped (it skips nodes already cut off).
        entry["receiver_orders"] = orders
        result["problems"][name] = entry
    out = args.out or ROOT / "bench" / "results" / f"acdc-parity-{datetime.date.today().isoformat()}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(f"\nwrote {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}")


if __name__ == "__main__":
    main()
