"""EAP-IG parity: circuitwise's ``eap`` / ``eap-ig`` scores and MIB's CPR/CMD against MIB's own code.

The references: hannamw/EAP-IG at ``EAP_COMMIT`` (the submodule commit hannamw/MIB-circuit-track
pins; ``eap.attribute.attribute``, ``eap.graph.Graph``) and hannamw/MIB-circuit-track at
``MIB_COMMIT`` (``MIB_circuit_track/evaluation.py``'s ``evaluate_area_under_curve`` and
``metrics.py``'s ``logit_diff``), both extracted from their git snapshots into
``bench/.venvs/eap-ig-src`` and run in their own virtual environment ``bench/.venvs/eap-ig``
(``torch==2.13.0`` first, then the TransformerLens 2.x that EAP-IG's pyproject asks for
(``>=2.15.0``) and what it needs; see ``DEPS``).

Per problem (checkpoint + task) both sides get the same checkpoint and the same token ids
(circuitwise's tokenization, handed to the reference as tensors: its ``tokenize_plus``, which
would tokenize text, is replaced by one that returns those ids, an all-ones attention mask and the
lengths). Compared:

1. Edge scores, edge by edge under EAP-IG's edge names (``input``, ``a{l}.h{h}``, ``m{l}``,
   ``logits``; ``<q>``/``<k>``/``<v>`` after a head receiver; ``circuitwise.circuits.interop``
   maps ours): EAP (circuitwise ``eap``, gradient at the clean run; the reference's ``EAP``) and
   EAP-IG (circuitwise ``eap-ig``, 5 steps, its default quadrature ``left``; the reference's
   ``EAP-IG-inputs`` with ``ig_steps=5``, MIB's ``run_attribution.py`` default), the reference
   run as MIB runs it: ``logit_diff(..., mean=True, loss=True)``, ``intervention="patching"``,
   batches of ``--batch-size`` (MIB's 20). Its scores are ours divided by the batch size (a batch
   mean is differentiated, then the sum over batches is divided by the number of examples;
   circuitwise.circuits.scores says so), so the comparison multiplies them by it; max |Δ|,
   max |score|, Pearson r, the top-100 and top-10 overlaps by |score| and whether the signed and
   absolute rankings are identical are reported. With a short last batch that is no longer a
   rescaling (its examples weigh more): then circuitwise's scores are also weighted as the
   reference weights its batches (``as_batched``) and compared. circuitwise's other quadratures
   (``right``, ``midpoint``) are compared too, to show what the integration points change.
2. MIB's faithfulness curves, CPR and CMD: ``evaluate_area_under_curve`` (signed ranking for CPR,
   ``absolute=True`` for CMD, as MIB's leaderboard, with ``logit_diff(mean=False, loss=False)``)
   against ``circuitwise.evaluation.mib.mib_metrics`` on the *same* scores — circuitwise's EAP-IG
   scores written into the reference's ``Graph`` — and on the reference's own EAP-IG scores read
   into circuitwise. Per budget the faithfulness, and MIB's ``weighted_edge_count`` against
   circuitwise's ``mib_edge_count``.

The one change to the reference's code: ``eap/attribute.py`` allocates its score matrix with
``device='cuda'``; the extracted copy says ``device=model.cfg.device`` so it runs on the CPU.

Models: the reference gets a ``HookedTransformer`` built from the checkpoint with
``load_and_process_state_dict(fold_ln=True, center_writing_weights=True, center_unembed=True)``
(what ``HookedTransformer.from_pretrained`` does by default; ``from_pretrained`` itself needs the
Hub), ``use_split_qkv_input``, ``use_attn_result``, ``use_hook_mlp_in`` and
``ungroup_grouped_query_attention`` on, as MIB's scripts set them. circuitwise loads with its
default processing (``fold_ln``, centring, the QK/OV refactor where the architecture allows).
Those steps preserve the function and every edge's clean − corrupted difference as it reaches a
receiver (a LayerNorm reads its input only through the centred sum), so the scores compare
directly; the script checks the two sides' clean and corrupted logit differences first.

Problems: ``random`` (tests/families.py's GPT-2 with 4 layers, random weights with randomised
LayerNorm gains and biases, GPT-2's tokenizer, tied token embedding ×5; a last-letter copy task,
see ``last_letter_task``), ``bundled`` (the bundled GPT-2-style model; the ``opposites`` task),
``bundled-llama`` (the bundled Llama-style model: RMSNorm, rotary, SwiGLU, grouped-query attention,
tied embeddings; ``opposites``) and ``random-llama`` (tests/families.py's Llama, 4 layers, random
weights with randomised RMSNorm gains, 4 query / 2 key-value heads, its unembedding replaced by the
token embedding ×5; the last-letter task) and ``random-qwen`` (tests/families.py's Qwen2, 4 layers, made
Qwen2.5-0.5B's architecture: randomised q/k/v biases, tied embeddings ×5, no sliding window, rope_theta
1e6, 4 query / 2 key-value heads; the reference's HookedTransformer configured as TransformerLens 2.15's
``Qwen2ForCausalLM`` entry and ``convert_qwen2_weights``; the last-letter task).
Prompts are kept to the most common token length (the reference's n_pos must equal across clean
and corrupted; one length also keeps padding out of the comparison).

Results: ``bench/results/eap-ig-parity-<date>.json`` (every edge's score on both sides is not
kept; the per-problem comparisons, faithfulness curves, edge counts, both sides' versions and the
circuitwise commit are). Not part of the test suite. Figures and what they say: bench/README.md.
Run (from the repository root; about 6 minutes on 2 shared cores, the first run also makes the
venv):

    PYTHONPATH=/work/main .venv/bin/python bench/eap_ig_parity.py [--n 40] [--batch-size 20]
        [--steps 5] [--problems random bundled bundled-llama random-llama random-qwen]
        [--install-only] [--out PATH]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
VENVS = ROOT / "bench" / ".venvs"
VENV = VENVS / "eap-ig"
SRC = VENVS / "eap-ig-src"  # eap/ (from EAP-IG) and MIB_circuit_track/ (from MIB's circuit track)
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT))
from bench._reference import circuitwise_state, embed_scale, install_venv, run  # noqa: E402

EAP_REPO = "hannamw/EAP-IG"
EAP_COMMIT = "7af394a5662de8b23ad6154716a0cd3993d447a3"
MIB_REPO = "hannamw/MIB-circuit-track"
MIB_COMMIT = "b759df34433c9e31043ba9e02908ce0bf20e894f"
MIRROR = Path("/work/.mirror")
# torch first (the CPU wheel; anything else pulls a CUDA build), then EAP-IG's own pins
# (transformer-lens>=2.15.0, matplotlib for its colour helpers) at their versions of May 2025, when
# 7af394a was committed; TL 2.x needs numpy < 2 (hence datasets < 3, pyarrow < 16).
TORCH = "torch==2.13.0"
DEPS = ["transformer_lens==2.15.4", "transformers==4.51.3", "numpy<2", "datasets<3", "pyarrow<16",
        "matplotlib", "einops", "tqdm", TORCH]
PROBLEMS = ("random", "bundled", "bundled-llama", "random-llama", "random-qwen")
# The random families: tests/families.py's family and the config fields changed from its fixture.
# random-qwen is Qwen2.5-0.5B's architecture at small shapes: q/k/v biases (randomised, as every
# bias there), tied embeddings, every layer global (its use_sliding_window is false; the fixture's
# 4-token window is not), rope_theta 1e6; grouped-query attention 4 / 2 as the fixture has it.
RANDOM = {"random": ("gpt2", {}), "random-llama": ("llama", {}),
          "random-qwen": ("qwen2", {"use_sliding_window": False, "tie_word_embeddings": True, "layer_types": None,
                                    "rope_parameters": {"rope_theta": 1e6, "rope_type": "default"}})}
# circuitwise's other EAP-IG quadratures, compared with the reference too: what the choice of
# integration points changes (the default, ``left``, is the reference's).
OTHER_QUADRATURES = ("right", "midpoint")


def git_dir(repo: str) -> Path:
    return MIRROR / repo.replace("/", "+") / "repo"


def extract(repo: str, commit: str, path: str) -> str | None:
    """``path`` of ``repo`` at ``commit`` into SRC; None or what failed."""
    g = git_dir(repo)
    if not (g / "HEAD").exists():
        return f"no git snapshot of {repo} at {g} (fetch github:{repo})"
    arch = subprocess.run(["git", "--git-dir", str(g), "archive", commit, path], capture_output=True)
    if arch.returncode:
        return f"git archive {repo}@{commit} {path} failed: {arch.stderr.decode()[-300:]}"
    subprocess.run(["tar", "-x", "-C", str(SRC)], input=arch.stdout, check=True)
    return None


def ensure_reference() -> tuple[Path | None, str]:
    """The reference venv's python (made on first use) and its sources; or None and what failed."""
    log = VENVS / "eap-ig.log"
    VENVS.mkdir(parents=True, exist_ok=True)
    if not (SRC / "eap" / "attribute.py").exists() or not (SRC / "MIB_circuit_track" / "evaluation.py").exists():
        SRC.mkdir(parents=True, exist_ok=True)
        for repo, commit, path in ((EAP_REPO, EAP_COMMIT, "src/eap"), (MIB_REPO, MIB_COMMIT, "MIB_circuit_track")):
            why = extract(repo, commit, path)
            if why:
                return None, why
        (SRC / "src" / "eap").rename(SRC / "eap")
        (SRC / "src").rmdir()
        # The one edit: the score matrices are allocated on 'cuda'; the model's device instead.
        att = SRC / "eap" / "attribute.py"
        att.write_text(att.read_text().replace("device='cuda'", "device=model.cfg.device"))
    return install_venv(VENV, log, TORCH, DEPS)


# -- the shared problems ---------------------------------------------------------------------------

LETTERS = [" A", " B", " C", " D", " E", " F", " G", " H", " J", " K", " L", " M", " N", " P", " R", " S"]


def last_letter_task(n: int, seed: int = 0) -> Any:
    """ "N S G A" → " A" (not " E"), corrupted "N S G E": the answer is the prompt's last token, which
    a random-weight model with tied embeddings already favours (bench/acdc_parity.py's task). The
    opposites and IOI answers stand earlier in the prompt, and random attention does not copy them:
    there the clean and corrupted logit differences agree to 1e-2 and faithfulness is a ratio of
    noise."""
    import random

    import circuitwise as cw

    rng = random.Random(seed)
    examples = []
    for _ in range(n):
        picks = rng.sample(LETTERS, 5)
        examples.append(cw.Example(clean=picks[0].strip() + "".join(picks[1:4]), correct=picks[3], incorrect=picks[4],
                                   corrupted=picks[0].strip() + "".join(picks[1:3]) + picks[4]))
    return cw.Task("last-letter", tuple(examples), "Repeat the last letter (random-weight GPT-2).")


def build_problem(name: str, n: int, work: Path) -> dict[str, Any]:
    import circuitwise as cw
    from circuitwise.models.loading import load_model

    if name in RANDOM:
        from tests.families import make_family_checkpoint

        family, shapes = RANDOM[name]
        ckpt = make_family_checkpoint(family, work / f"{family}-random", seed=0, n_layers=4, shapes=shapes)
        embed_scale(ckpt, 5.0)
        if "rope_parameters" in shapes:
            # transformers 5 writes rope_parameters only; the reference's transformers 4.51 reads rope_theta
            # (and would take its default, 1e4, without it).
            cfg_file = ckpt / "config.json"
            cfg = json.loads(cfg_file.read_text())
            cfg["rope_theta"] = shapes["rope_parameters"]["rope_theta"]
            cfg_file.write_text(json.dumps(cfg, indent=2))
        source = str(ckpt)
    else:
        source, family = name, ("llama" if name == "bundled-llama" else "gpt2")
    model = load_model(source, device="cpu")
    ckpt_dir = source if name.startswith("random") else str(model_dir(name))
    task = last_letter_task(4 * n) if name.startswith("random") else cw.get_task("opposites")
    tok, _ = cw.tokenize_task(model, task, need_corrupted=True, on_invalid="drop")
    # One token length for every prompt (the reference's n_pos must match between clean and corrupted,
    # and padding stays out of the comparison); spread over the task's examples, deterministically.
    length = Counter(tok.lengths.tolist()).most_common(1)[0][0]
    rows = [i for i in range(len(tok)) if int(tok.lengths[i]) == length]
    step = max(1, len(rows) // n)
    rows = rows[::step][:n]
    tok = take(tok, rows)
    return {"name": name, "family": family, "ckpt": ckpt_dir, "model": model, "tok": tok,
            "prompts": ["".join(tok.str_tokens[i]) for i in range(len(tok))],
            "tokens_clean": tok.clean[:, :length].tolist(), "tokens_corrupted": tok.corrupted[:, :length].tolist(),
            "labels": tok.answers.tolist()}


def model_dir(name: str) -> Path:
    import circuitwise.models.bundled as b

    return Path(b.__file__).resolve().parent / ("bundled_llama" if name == "bundled-llama" else "bundled")


def take(tok: Any, rows: list[int]) -> Any:
    """``tok``'s rows ``rows``."""
    import dataclasses

    import torch

    idx = torch.tensor(rows)
    return dataclasses.replace(
        tok, task=dataclasses.replace(tok.task, examples=tuple(tok.task.examples[i] for i in rows)),
        clean=tok.clean[idx], corrupted=None if tok.corrupted is None else tok.corrupted[idx],
        answers=tok.answers[idx], last=tok.last[idx], str_tokens=tuple(tok.str_tokens[i] for i in rows),
        corrupted_str_tokens=None if tok.corrupted_str_tokens is None
        else tuple(tok.corrupted_str_tokens[i] for i in rows),
        roles=None if tok.roles is None else tuple(tok.roles[i] for i in rows),
        reference=None if tok.reference is None else tok.reference[idx])


# -- circuitwise's side ------------------------------------------------------------------------------

def ours(problem: dict[str, Any], steps: int) -> dict[str, Any]:
    from circuitwise.circuits.interop import edge_names
    from circuitwise.circuits.methods import score_edges
    from circuitwise.evaluation.mib import mib_metrics

    model, tok = problem["model"], problem["tok"]
    out: dict[str, Any] = {}
    runs = [("eap", "eap", {}), ("eap-ig", "eap-ig", {"steps": steps}),
            *((f"eap-ig@{q}", "eap-ig", {"steps": steps, "quadrature": q}) for q in OTHER_QUADRATURES)]
    for key, method, opts in runs:
        t0 = time.perf_counter()
        s = score_edges(model, tok, method, **opts)
        wall = time.perf_counter() - t0
        names = edge_names(s.graph)
        out[key] = {"scores": dict(zip(names, s.scores.tolist(), strict=True)), "config": s.config, "wall_s": wall,
                       "clean_metric": s.clean_metric, "corrupted_metric": s.corrupted_metric, "edge_scores": s}
    out["graph"] = out["eap-ig"]["edge_scores"].graph
    out["mib"] = mib_json(mib_metrics(model, tok, out["eap-ig"]["edge_scores"]))
    return out


def mib_json(r: Any) -> dict[str, Any]:
    return {"cpr": r.cpr, "cmd": r.cmd, "full_metric": r.full_metric, "empty_metric": r.empty_metric,
            "faithfulness_signed": r.signed.faithfulness, "faithfulness_abs": r.absolute.faithfulness,
            "n_edges_signed": r.signed.n_edges, "n_edges_abs": r.absolute.n_edges,
            "mib_edge_count_signed": r.signed.mib_edge_count, "mib_edge_count_abs": r.absolute.mib_edge_count}


def ours_on(problem: dict[str, Any], graph: Any, scores: dict[str, float]) -> dict[str, Any]:
    """circuitwise's MIB numbers for another side's scores (by EAP-IG edge name)."""
    import torch

    from circuitwise.circuits.interop import edge_names
    from circuitwise.circuits.scores import EdgeScores
    from circuitwise.evaluation.mib import mib_metrics

    vals = torch.tensor([scores[n] for n in edge_names(graph)], dtype=torch.float32)
    return mib_json(mib_metrics(problem["model"], problem["tok"], EdgeScores(graph, vals, "eap-ig")))


# -- the reference's side (run inside its venv) ----------------------------------------------------

# The reference's model and batches, as MIB's scripts set them up (bench/mib_circuits_form.py uses it too).
WORKER_MODEL = r'''
import contextlib, io, json, sys, time
import torch
torch.set_num_threads(1)
P = json.load(open(sys.argv[1]))
sys.path.insert(0, P["src"])
from functools import partial
import transformers
from transformers import AutoModelForCausalLM
from transformer_lens import HookedTransformer, HookedTransformerConfig
from transformer_lens.pretrained.weight_conversions import (convert_gpt2_weights, convert_llama_weights,
                                                            convert_qwen2_weights)
import eap.utils, eap.attribute, eap.evaluate
from eap.graph import Graph
from eap.attribute import attribute
from MIB_circuit_track.metrics import logit_diff
from MIB_circuit_track.evaluation import evaluate_area_under_curve


def tokenize_plus(model, inputs, max_length=None):
    """The reference's tokenize_plus for token ids: every prompt has one length, so no padding."""
    tokens = inputs.to(model.cfg.device)
    mask = torch.ones_like(tokens)
    return tokens, mask, mask.sum(1), tokens.size(1)


# eap.attribute and eap.evaluate import it by name: replace it there too.
for mod in (eap.utils, eap.attribute, eap.evaluate):
    mod.tokenize_plus = tokenize_plus

hf = AutoModelForCausalLM.from_pretrained(P["ckpt"], torch_dtype=torch.float32).eval()
c = hf.config
if P["family"] == "gpt2":
    act = {"gelu_new": "gelu_new", "gelu": "gelu", "relu": "relu"}[c.activation_function]
    cfg = HookedTransformerConfig(n_layers=c.n_layer, n_heads=c.n_head, d_model=c.n_embd, d_head=c.n_embd // c.n_head,
                                  d_mlp=c.n_inner or 4 * c.n_embd, n_ctx=c.n_positions, d_vocab=c.vocab_size,
                                  act_fn=act, normalization_type="LNPre", eps=c.layer_norm_epsilon,
                                  original_architecture="GPT2LMHeadModel", device="cpu")
    convert = convert_gpt2_weights
elif P["family"] == "llama":  # as TransformerLens's loading_from_pretrained configures it (with fold_ln: RMSPre)
    cfg = HookedTransformerConfig(n_layers=c.num_hidden_layers, n_heads=c.num_attention_heads, d_model=c.hidden_size,
                                  d_head=c.head_dim, d_mlp=c.intermediate_size, n_ctx=c.max_position_embeddings,
                                  d_vocab=c.vocab_size, act_fn="silu", normalization_type="RMSPre", eps=c.rms_norm_eps,
                                  positional_embedding_type="rotary", rotary_dim=c.head_dim,
                                  rotary_adjacent_pairs=False, rotary_base=int(getattr(c, "rope_theta", 10000)),
                                  final_rms=True, gated_mlp=True,
                                  n_key_value_heads=c.num_key_value_heads, original_architecture="LlamaForCausalLM",
                                  device="cpu")
    convert = convert_llama_weights
else:  # Qwen2: loading_from_pretrained's Qwen2ForCausalLM entry (with fold_ln: RMSPre); its n_ctx cap of 2048
    # and default_prepend_bos do not matter here (the prompts are token ids, a few long).
    if getattr(c, "use_sliding_window", False):
        raise SystemExit("a windowed Qwen2 checkpoint: TransformerLens 2.15's Qwen2 config has no window")
    d_head = c.hidden_size // c.num_attention_heads
    cfg = HookedTransformerConfig(n_layers=c.num_hidden_layers, n_heads=c.num_attention_heads, d_model=c.hidden_size,
                                  d_head=d_head, d_mlp=c.intermediate_size, n_ctx=2048, d_vocab=c.vocab_size,
                                  act_fn=c.hidden_act, normalization_type="RMSPre", eps=c.rms_norm_eps,
                                  positional_embedding_type="rotary", rotary_dim=d_head, rotary_adjacent_pairs=False,
                                  rotary_base=int(c.rope_theta), final_rms=True, gated_mlp=True, use_attn_scale=True,
                                  n_key_value_heads=c.num_key_value_heads, original_architecture="Qwen2ForCausalLM",
                                  tokenizer_prepends_bos=True, default_prepend_bos=False, device="cpu")
    convert = convert_qwen2_weights
model = HookedTransformer(cfg)
# What HookedTransformer.from_pretrained does by default (fold_ln, center_writing_weights — skipped by
# TL for RMSNorm — and center_unembed).
model.load_and_process_state_dict(convert(hf, cfg), fold_ln=True, center_writing_weights=True, center_unembed=True)
model.eval()
# As MIB's run_attribution.py / run_evaluation.py set them.
model.cfg.use_split_qkv_input = True
model.cfg.use_attn_result = True
model.cfg.use_hook_mlp_in = True
model.cfg.ungroup_grouped_query_attention = True

clean = torch.tensor(P["tokens_clean"])
corrupted = torch.tensor(P["tokens_corrupted"])
labels = torch.tensor(P["labels"])
B = P["batch_size"]
loader = [(clean[i:i + B], corrupted[i:i + B], labels[i:i + B]) for i in range(0, len(clean), B)]
'''

WORKER = WORKER_MODEL + r'''
with torch.no_grad():
    ld = lambda x: float(logit_diff(model(x), None, torch.full((len(x),), x.size(1)), labels, mean=True))
    hf_last = hf(clean).logits[:, -1].double()
    tl_vs_hf = float((torch.log_softmax(model(clean)[:, -1].double(), -1) - torch.log_softmax(hf_last, -1)).abs().max())
    ends = {"clean": ld(clean), "corrupted": ld(corrupted)}

from importlib.metadata import version
out = {"versions": {"torch": torch.__version__, "transformer_lens": version("transformer_lens"),
                    "transformers": transformers.__version__},
       "ends": ends, "tl_vs_hf_max_logprob_diff": tl_vs_hf, "scores": {}, "wall_s": {}, "mib": {}}
attribution_metric = partial(logit_diff, mean=True, loss=True)  # run_attribution.py
for method in ("EAP", "EAP-IG-inputs"):
    graph = Graph.from_model(model)
    t0 = time.perf_counter()
    with contextlib.redirect_stderr(io.StringIO()):  # tqdm
        attribute(model, graph, loader, attribution_metric, method, "patching", ig_steps=P["steps"], quiet=True)
    out["wall_s"][method] = time.perf_counter() - t0
    out["scores"][method] = {name: float(e.score) for name, e in graph.edges.items()}

eval_metric = partial(logit_diff, mean=False, loss=False)  # run_evaluation.py


def mib(scores):
    """evaluate_area_under_curve on ``scores`` (edge name -> score): signed (CPR) and absolute (CMD)."""
    res = {}
    for absolute in (False, True):
        graph = Graph.from_model(model)
        for name, e in graph.edges.items():
            e.score = scores[name]
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            counts, area_under, area_from_1, average, faith = evaluate_area_under_curve(
                model, graph, loader, eval_metric, quiet=True, absolute=absolute)
        res["abs" if absolute else "signed"] = {"weighted_edge_counts": counts, "area_under": area_under,
                                                  "area_from_1": area_from_1, "faithfulness": faith}
    return {"cpr": res["signed"]["area_under"], "cmd": res["abs"]["area_from_1"], **res}


t0 = time.perf_counter()
out["mib"]["reference_scores"] = mib(out["scores"]["EAP-IG-inputs"])
out["wall_s"]["mib"] = time.perf_counter() - t0
out["mib"]["circuitwise_scores"] = mib(P["circuitwise_eap_ig"])
json.dump(out, open(sys.argv[2], "w"))
'''


def reference(py: Path, problem: dict[str, Any], cw_scores: dict[str, float], steps: int, batch_size: int,
              work: Path) -> tuple[dict | None, str]:
    pf = work / f"{problem['name']}-problem.json"
    pf.write_text(json.dumps({"ckpt": problem["ckpt"], "family": problem["family"], "src": str(SRC), "steps": steps,
                              "batch_size": batch_size, "tokens_clean": problem["tokens_clean"],
                              "tokens_corrupted": problem["tokens_corrupted"], "labels": problem["labels"],
                              "circuitwise_eap_ig": cw_scores}))
    script = work / "eap_ig_worker.py"
    script.write_text(WORKER, encoding="utf-8")
    outf = work / f"{problem['name']}-reference.json"
    log = work / f"{problem['name']}-reference.log"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "1",
           "PYTHONPATH": ""}
    if run([str(py), str(script), str(pf), str(outf)], log, env=env):
        tail = log.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-15:]
        return None, "\n".join(tail)
    return json.loads(outf.read_text()), "ok"


# -- comparison --------------------------------------------------------------------------------------

def compare_scores(mine: dict[str, float], theirs: dict[str, float], scale: float) -> dict[str, Any]:
    """Edge by edge, the reference's scores × ``scale`` (its batch size) against ours."""
    import torch

    names = sorted(mine)
    missing = sorted(set(theirs) ^ set(mine))
    a = torch.tensor([mine[n] for n in names], dtype=torch.float64)
    b = torch.tensor([theirs[n] * scale for n in names], dtype=torch.float64)
    pearson = float(torch.corrcoef(torch.stack([a, b]))[0, 1])
    def overlap(k: int) -> float:
        top_a = set(torch.argsort(a.abs(), descending=True)[:k].tolist())
        top_b = set(torch.argsort(b.abs(), descending=True)[:k].tolist())
        return len(top_a & top_b) / k

    k = min(100, len(names))
    d = (a - b).abs()
    worst = int(d.argmax())
    return {"n_edges": len(names), "edges_only_one_side": missing, "max_abs_diff": float(d.max()),
            "max_abs_score": float(a.abs().max()), "max_rel_diff": float(d.max() / a.abs().max()),
            "worst_edge": names[worst], "pearson": pearson, "top_k": k, "top_k_overlap": overlap(k),
            "top_10_overlap": overlap(10), "sign_agreement": float(((a > 0) == (b > 0)).double().mean()),
            "same_ranking_abs": bool(torch.equal(torch.argsort(a.abs(), descending=True, stable=True),
                                                 torch.argsort(b.abs(), descending=True, stable=True))),
            "same_ranking_signed": bool(torch.equal(torch.argsort(a, descending=True, stable=True),
                                                    torch.argsort(b, descending=True, stable=True)))}


def as_batched(problem: dict[str, Any], method: str, opts: dict[str, Any], batch_size: int) -> dict[str, float]:
    """circuitwise's scores weighted as the reference weights its batches, in our scale: the reference
    differentiates each batch's *mean* metric, sums over batches and divides by the number of
    examples N, so its score is (1/N)·Σ_b mean_b; times the batch size B that is (B/N)·Σ_b mean_b,
    our mean over examples when every batch is full, and not when the last one is short."""
    from circuitwise.circuits.interop import edge_names
    from circuitwise.circuits.methods import score_edges

    tok, n = problem["tok"], len(problem["tok"])
    total = None
    for i in range(0, n, batch_size):
        s = score_edges(problem["model"], take(tok, list(range(i, min(n, i + batch_size)))), method, **opts)
        total = s.scores.double() if total is None else total + s.scores.double()
    assert total is not None
    return dict(zip(edge_names(s.graph), (total * batch_size / n).tolist(), strict=True))


def compare_mib(mine: dict[str, Any], theirs: dict[str, Any]) -> dict[str, Any]:
    def maxdiff(x: list[float], y: list[float]) -> float:
        return max(abs(p - q) for p, q in zip(x, y, strict=True))

    return {"cpr_circuitwise": mine["cpr"], "cpr_reference": theirs["cpr"], "cpr_diff": mine["cpr"] - theirs["cpr"],
            "cmd_circuitwise": mine["cmd"], "cmd_reference": theirs["cmd"], "cmd_diff": mine["cmd"] - theirs["cmd"],
            "faithfulness_signed_max_diff": maxdiff(mine["faithfulness_signed"], theirs["signed"]["faithfulness"]),
            "faithfulness_abs_max_diff": maxdiff(mine["faithfulness_abs"], theirs["abs"]["faithfulness"]),
            "faithfulness_signed": {"circuitwise": mine["faithfulness_signed"],
                                    "reference": theirs["signed"]["faithfulness"]},
            "faithfulness_abs": {"circuitwise": mine["faithfulness_abs"], "reference": theirs["abs"]["faithfulness"]},
            "edge_counts_signed": {"circuitwise_pruned": mine["n_edges_signed"],
                                   "circuitwise_mib_edge_count": mine["mib_edge_count_signed"],
                                   "reference_weighted_edge_count": theirs["signed"]["weighted_edge_counts"]},
            "edge_counts_abs": {"circuitwise_pruned": mine["n_edges_abs"],
                                "circuitwise_mib_edge_count": mine["mib_edge_count_abs"],
                                "reference_weighted_edge_count": theirs["abs"]["weighted_edge_counts"]},
            "edge_counts_equal": (mine["mib_edge_count_signed"] == theirs["signed"]["weighted_edge_counts"]
                                  and mine["mib_edge_count_abs"] == theirs["abs"]["weighted_edge_counts"])}


def processing_of(model: Any) -> Any:
    from circuitwise.models.processing import of

    rec = of(model)
    return rec.to_json() if rec is not None else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=40, help="prompts per problem")
    ap.add_argument("--batch-size", type=int, default=20, help="the reference's batch size (MIB's default 20)")
    ap.add_argument("--steps", type=int, default=5, help="EAP-IG steps (MIB's default 5)")
    ap.add_argument("--problems", nargs="*", default=list(PROBLEMS), choices=list(PROBLEMS))
    ap.add_argument("--install-only", action="store_true")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    py, why = ensure_reference()
    print(f"reference: {'venv ' + str(VENV) if py else 'NOT AVAILABLE: ' + why}", flush=True)
    if py is None or args.install_only:
        if py is None:
            sys.exit(1)
        return
    import torch

    torch.set_num_threads(1)  # a shared machine: one thread against one thread
    work = Path(tempfile.mkdtemp(prefix="eap-ig-parity-"))
    result: dict[str, Any] = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "reference": {"eap_ig": {"repo": EAP_REPO, "commit": EAP_COMMIT},
                      "mib_circuit_track": {"repo": MIB_REPO, "commit": MIB_COMMIT}},
        "n_prompts": args.n, "batch_size": args.batch_size, "steps": args.steps,
        "torch_threads": 1, "circuitwise": circuitwise_state(), "problems": {}}
    for name in args.problems:
        problem = build_problem(name, args.n, work)
        mine = ours(problem, args.steps)
        print(f"\n{name}: {len(problem['prompts'])} prompts of {len(problem['tokens_clean'][0])} tokens, e.g. "
              f"{problem['prompts'][0]!r}; {mine['graph'].n_edges} edges; circuitwise logit diff clean "
              f"{mine['eap']['clean_metric']:.4f}, corrupted {mine['eap']['corrupted_metric']:.4f}", flush=True)
        theirs, why = reference(py, problem, mine["eap-ig"]["scores"], args.steps, args.batch_size, work)
        entry: dict[str, Any] = {"checkpoint": Path(problem["ckpt"]).name, "family": problem["family"],
                                 "task": problem["tok"].task.name,
                                 "prompts": problem["prompts"], "n_edges": mine["graph"].n_edges,
                                 "processing_circuitwise": processing_of(problem["model"]),
                                 "logit_diff_circuitwise": {"clean": mine["eap"]["clean_metric"],
                                                            "corrupted": mine["eap"]["corrupted_metric"]}}
        if theirs is None:
            print(f"  the reference failed:\n{why}")
            entry["reference_error"] = why
            result["problems"][name] = entry
            continue
        result["versions_reference"] = theirs["versions"]
        entry["logit_diff_reference"] = theirs["ends"]
        entry["logit_diff_max_abs_diff"] = max(abs(theirs["ends"][k] - entry["logit_diff_circuitwise"][k])
                                               for k in ("clean", "corrupted"))
        entry["reference_tl_vs_hf_max_logprob_diff"] = theirs["tl_vs_hf_max_logprob_diff"]
        print(f"  reference logit diff clean {theirs['ends']['clean']:.4f}, corrupted {theirs['ends']['corrupted']:.4f}"
              f" (max |Δ| to circuitwise {entry['logit_diff_max_abs_diff']:.1e})"
              f"; its TL vs transformers max |Δ log p| {theirs['tl_vs_hf_max_logprob_diff']:.1e}")
        entry["scores"] = {}
        for ours_m, ref_m in (("eap", "EAP"), ("eap-ig", "EAP-IG-inputs"),
                              *((f"eap-ig@{q}", "EAP-IG-inputs") for q in OTHER_QUADRATURES)):
            c = compare_scores(mine[ours_m]["scores"], theirs["scores"][ref_m], float(args.batch_size))
            c.update({"config_circuitwise": mine[ours_m]["config"], "wall_s_circuitwise": mine[ours_m]["wall_s"],
                      "wall_s_reference": theirs["wall_s"][ref_m]})
            if len(problem["prompts"]) % args.batch_size and ours_m in ("eap", "eap-ig"):
                # A short last batch: the reference weights its examples more (see as_batched).
                opts = {"steps": args.steps} if ours_m == "eap-ig" else {}
                b = compare_scores(as_batched(problem, ours_m, opts, args.batch_size), theirs["scores"][ref_m],
                                   float(args.batch_size))
                c["as_batched"] = b
                print(f"  {ours_m:16s} weighted as the reference's batches: max|Δ| {b['max_abs_diff']:.2e}, "
                      f"Pearson {b['pearson']:.9f}")
            entry["scores"][ours_m] = c
            print(f"  {ours_m:16s} vs {ref_m:14s} max|Δ| {c['max_abs_diff']:.2e} (max|score| {c['max_abs_score']:.2e}, "
                  f"rel {c['max_rel_diff']:.1e}; worst {c['worst_edge']}), Pearson {c['pearson']:.9f}, "
                  f"top-{c['top_k']} / top-10 overlap {c['top_k_overlap']:.2f} / {c['top_10_overlap']:.1f}, "
                  f"same rankings {c['same_ranking_signed']}/{c['same_ranking_abs']}, signs {c['sign_agreement']:.3f}; "
                  f"time cw {c['wall_s_circuitwise']:.2f}s ref {c['wall_s_reference']:.2f}s")
        entry["mib"] = {}
        ref_eapig = theirs["scores"]["EAP-IG-inputs"]
        for which, m, t in (("circuitwise_scores", mine["mib"], theirs["mib"]["circuitwise_scores"]),
                            ("reference_scores", ours_on(problem, mine["graph"], ref_eapig),
                             theirs["mib"]["reference_scores"])):
            c = compare_mib(m, t)
            entry["mib"][which] = c
            print(f"  MIB on the {which.replace('_', ' ')}: CPR cw {c['cpr_circuitwise']:.6f} "
                  f"ref {c['cpr_reference']:.6f} (Δ {c['cpr_diff']:.1e}); CMD cw {c['cmd_circuitwise']:.6f} "
                  f"ref {c['cmd_reference']:.6f} (Δ {c['cmd_diff']:.1e}); max|Δf| signed "
                  f"{c['faithfulness_signed_max_diff']:.1e} abs {c['faithfulness_abs_max_diff']:.1e}; "
                  f"edge counts equal: {c['edge_counts_equal']}")
        result["problems"][name] = entry
    out = args.out or ROOT / "bench" / "results" / f"eap-ig-parity-{datetime.date.today().isoformat()}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(f"\nwrote {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}")


if __name__ == "__main__":
    main()
