"""Independent acceptance check of feature-level attribution graphs (issue 25), on every family.

    .venv/bin/python bench/feature_graph_acceptance.py                  # everything (~10 min, 1 thread)
    .venv/bin/python bench/feature_graph_acceptance.py --checks 1,2,3 --families gpt2,llama

The reference side never calls circuitwise's graph engine (``features.replacement`` / ``attribute``'s
internals): it runs the TransformerLens bridge itself with its own hooks, and its own transcoder
arithmetic from the raw tensors. The frozen replacement is the bridge with

- every ``*.hook_scale`` (every norm, post-norms and q/k norms included) set to the clean run's;
- every ``attn.hook_z`` recomputed as the clean run's pattern × the live ``attn.hook_v`` (OPT, GPT-Neo
  and GPT-J drop ``hook_pattern`` edits; ``hook_z`` edits land on every bridge);
- every ``mlp.hook_out`` set to the sources' write: each active feature's activation × its decoder
  row (times a per-source scale), the decoder bias, the error node (times its scale), plus the skip
  path of the live ``mlp.hook_in``; ``blocks.0.hook_resid_pre`` times each token's scale.

Every source has a scale (1 = clean); receivers (feature pre-activations at their position, target
logits less the mean logit, or the logit difference) are read from the same hooks. So an ablation is
a scale of 0, the bias-only run all scales 0, and the adjacency is the Jacobian in the scales.

Checks (numbered as in the brief, bench/results/feature-graph-acceptance-<date>.json holds them all):
1 logits of the replacement with error nodes; 2 rows + bias-only run = values; 3 sampled adjacency
columns = ablation / scaling in the frozen model; 4 batched = one-row-at-a-time rows, full adjacency =
autograd Jacobian; 5 planted feature on GPT-2 (GELU); 6 bundled opposites, top features ablated in the
unfrozen model; 7 the CLI, the page in Chromium, the Neuronpedia JSON; 8 the shipped cards; 9 the
transcoder CLI: train (cross-layer, JumpReLU), interrupt and resume, card, convert round trips.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import warnings
from datetime import date
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "bench" / "results"
CLI = [str(ROOT / ".venv" / "bin" / "circuitwise")]
PROMPTS = ("Paris is a city in", "When the cold winter nights grow long, the old sailor sat by the fire and told")


# ---------------------------------------------------------------------------------------------------
# Transcoders of my own (raw tensors; the set type only to hand them to circuitwise)
# ---------------------------------------------------------------------------------------------------
def make_set(model: Any, kind: str, seed: int, width: int = 40, site: str = "mlp_in") -> Any:
    from circuitwise.features.transcoder import Transcoder, TranscoderSet

    g = torch.Generator().manual_seed(seed)
    L, d = model.cfg.n_layers, model.cfg.d_model
    out = []
    for l in range(L):
        def r(*s: int) -> torch.Tensor:
            return torch.randn(*s, generator=g)
        W_enc = 1.5 * r(d, width) / d ** 0.5
        b_enc = 0.2 * r(width)
        if kind == "clt":
            n_out = L - l
            W_dec, b_dec = r(width, n_out, d) / width ** 0.5, 0.1 * r(n_out, d)
        else:
            W_dec, b_dec = r(width, d) / width ** 0.5, 0.1 * r(d)
        kw: dict[str, Any] = {}
        if kind == "topk_skip":
            kw = {"activation": "topk", "k": 5, "W_skip": 0.5 * r(d, d) / d ** 0.5}
        elif kind == "jumprelu":
            kw = {"activation": "jumprelu", "threshold": 0.3 * torch.rand(width, generator=g)}
        else:
            kw = {"activation": "relu"}
        out.append(Transcoder(l, W_enc, b_enc, W_dec, b_dec, site=site, **kw))  # type: ignore[arg-type]
    return TranscoderSet(tuple(out), model="acceptance")


def my_encode(t: Any, x: torch.Tensor) -> torch.Tensor:
    pre = x @ t.W_enc + t.b_enc
    if t.activation == "relu":
        return torch.relu(pre)
    if t.activation == "jumprelu":
        return torch.where(pre > t.threshold, pre, torch.zeros_like(pre))
    vals, idx = pre.topk(t.k, dim=-1)
    return torch.zeros_like(pre).scatter(-1, idx, torch.relu(vals))


def my_dec(t: Any, out: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Decoder rows and bias that transcoder ``t`` writes to layer ``t.layer + out``."""
    if t.W_dec.dim() == 3:
        return t.W_dec[:, out], t.b_dec[out]
    return t.W_dec, t.b_dec


def my_skip(t: Any, x: torch.Tensor) -> torch.Tensor:
    return x @ t.W_skip if t.W_skip is not None else torch.zeros_like(x)


# ---------------------------------------------------------------------------------------------------
# The reference: the bridge with my own hooks
# ---------------------------------------------------------------------------------------------------
class Reference:
    """One prompt's clean run on the bridge and the frozen replacement as a function of source scales."""

    def __init__(self, model: Any, tcs: Any, tokens: torch.Tensor):
        self.model, self.tcs, self.tokens = model, tcs, tokens
        L = self.L = model.cfg.n_layers
        self.T = int(tokens.shape[0])
        names = [n for n in model.hook_dict if n.endswith("hook_scale")]
        self.scale_names = names
        # what the transcoders read: the MLP's input, or the residual before the pre-MLP norm (the block's
        # input for parallel attention + MLP blocks)
        parallel = bool(getattr(model.cfg, "parallel_attn_mlp", False))
        self.in_hook = [f"blocks.{l}.mlp.hook_in" if tcs[l].site == "mlp_in" else
                        f"blocks.{l}.hook_resid_pre" if parallel else f"blocks.{l}.hook_resid_mid" for l in range(L)]
        want = set(names) | {f"blocks.{l}.attn.hook_pattern" for l in range(L)} | \
            set(self.in_hook) | {f"blocks.{l}.mlp.hook_out" for l in range(L)} | \
            {"blocks.0.hook_resid_pre", "unembed.hook_out"}
        with torch.no_grad():
            logits, cache = model.run_with_cache(tokens[None], names_filter=lambda n: n in want)
        self.logits = logits[0].detach()
        self.cache = {k: v.detach() for k, v in cache.items()}
        tok = model.tokenizer
        self.bos = bool(model.cfg.default_prepend_bos) and tok.bos_token_id is not None and \
            int(tokens[0]) == tok.bos_token_id
        self.tin = [self.cache[self.in_hook[l]][0] for l in range(L)]
        self.acts = []
        for l in range(L):
            a = my_encode(tcs[l], self.tin[l])
            if self.bos:
                a[0] = 0
            self.acts.append(a)
        cl = tcs[0].W_dec.dim() == 3
        self.errors = []
        for l in range(L):
            W, b = my_dec(tcs[l], 0)
            rec = self.acts[l] @ W + b
            for s in range(l if cl else 0):
                rec = rec + self.acts[s] @ my_dec(tcs[s], l - s)[0]
            self.errors.append(self.cache[f"blocks.{l}.mlp.hook_out"][0] - rec - my_skip(tcs[l], self.tin[l]))
        self.feats = [(l, p, f) for l in range(L) for p, f in self.acts[l].nonzero().tolist()]

    # sources in the graph's node order: features, errors (layer-major), tokens
    @property
    def n_sources(self) -> int:
        return len(self.feats) + self.L * self.T + self.T

    def run(self, scales: torch.Tensor, receivers: list[tuple], unfreeze: bool = False) -> torch.Tensor:
        """Receivers' values ``[B, R]`` of the frozen replacement with source scales ``[B, n_sources]``."""
        model, tcs, L, T = self.model, self.tcs, self.L, self.T
        B = scales.shape[0]
        nF = len(self.feats)
        s_err = scales[:, nF:nF + L * T].reshape(B, L, T)
        s_tok = scales[:, nF + L * T:]
        cl = tcs[0].W_dec.dim() == 3
        # each layer's write (less skip) as a function of the scales: [B, T, d]
        writes = []
        for l in range(L):
            wr = my_dec(tcs[l], 0)[1].expand(B, T, -1) + s_err[:, l, :, None] * self.errors[l]
            writes.append(wr)
        for j, (l, p, f) in enumerate(self.feats):
            a = self.acts[l][p, f]
            for o in range(tcs[l].W_dec.shape[1] if cl else 1):
                row = my_dec(tcs[l], o)[0][f]
                upd = torch.zeros(B, T, row.shape[0], dtype=row.dtype)
                upd[:, p] = (scales[:, j] * a)[:, None] * row
                writes[l + o] = writes[l + o] + upd
        live: dict[str, torch.Tensor] = {}
        hooks: list[tuple[str, Any]] = []

        def resid0(x: torch.Tensor, hook: Any) -> torch.Tensor:
            return x * s_tok[:, :, None]
        hooks.append(("blocks.0.hook_resid_pre", resid0))
        if not unfreeze:
            for n in self.scale_names:
                c = self.cache[n]
                hooks.append((n, lambda x, hook, c=c: batched(c, x)))
            for l in range(L):
                def keep_v(v: torch.Tensor, hook: Any, l: int = l) -> None:
                    live[f"v{l}"] = v

                def z(zz: torch.Tensor, hook: Any, l: int = l) -> torch.Tensor:
                    v = live[f"v{l}"]  # [B, T, Hkv, dh]
                    H = zz.shape[2]
                    v = v.repeat_interleave(H // v.shape[2], dim=2)
                    pat = self.cache[f"blocks.{l}.attn.hook_pattern"][0]  # [H, T, T]
                    return torch.einsum("hqk,bkhd->bqhd", pat, v).to(zz.dtype)
                hooks += [(f"blocks.{l}.attn.hook_v", keep_v), (f"blocks.{l}.attn.hook_z", z)]
        for l in range(L):
            def tin(x: torch.Tensor, hook: Any, l: int = l) -> None:
                live[f"in{l}"] = x

            def out(x: torch.Tensor, hook: Any, l: int = l) -> torch.Tensor:
                return writes[l] + my_skip(tcs[l], live[f"in{l}"])
            hooks += [(self.in_hook[l], tin), (f"blocks.{l}.mlp.hook_out", out)]

        def unemb(x: torch.Tensor, hook: Any) -> None:
            live["logits"] = x
        hooks.append(("unembed.hook_out", unemb))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model.run_with_hooks(self.tokens[None].expand(B, -1), fwd_hooks=hooks, return_type=None)
        self.last_logits = live["logits"].detach()
        vals = []
        for r in receivers:
            if r[0] == "feature":
                _, l, p, f = r
                t = tcs[l]
                vals.append(live[f"in{l}"][:, p] @ t.W_enc[:, f] + t.b_enc[f])
            elif r[0] == "logit":
                _, p, tok = r
                lg = live["logits"][:, p]
                vals.append(lg[:, tok] - lg.mean(-1))
            else:  # ("diff", p, a, b)
                _, p, a, b = r
                lg = live["logits"][:, p]
                vals.append(lg[:, a] - lg[:, b])
        return torch.stack(vals, 1)


def batched(c: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """The clean run's ``c`` (batch 1) for a batch of ``x``'s shape (OPT's norms see ``[batch·pos, d]``)."""
    if c.shape[0] == 1:
        return c.expand(x.shape).clone()
    return c.repeat(x.shape[0] // c.shape[0], *[1] * (c.dim() - 1))


def receivers_of(graph: Any) -> tuple[list[int], list[tuple]]:
    """The graph's receiver rows and the same receivers in the reference's terms."""
    rows, recv = [], []
    meta = graph.meta
    for i, n in enumerate(graph.nodes):
        if n.kind == "feature":
            rows.append(i)
            recv.append(("feature", n.layer, n.position, n.feature))
        elif n.kind == "target":
            rows.append(i)
            if n.token >= 0:
                recv.append(("logit", n.position, n.token))
            else:
                a, b = meta["metric_tokens"]
                recv.append(("diff", n.position, a, b))
    return rows, recv


def source_columns(graph: Any, ref: Reference) -> list[int]:
    """For each reference source (features, errors, tokens), the graph's column."""
    idx = {}
    for i, n in enumerate(graph.nodes):
        if n.kind == "feature":
            idx[("f", n.layer, n.position, n.feature)] = i
        elif n.kind == "error":
            idx[("e", n.layer, n.position)] = i
        elif n.kind == "token":
            idx[("t", n.position)] = i
    cols = [idx[("f", *x)] for x in ref.feats]
    cols += [idx[("e", l, p)] for l in range(ref.L) for p in range(ref.T)]
    cols += [idx[("t", p)] for p in range(ref.T)]
    return cols


def maxabs(x: torch.Tensor) -> float:
    return float(x.abs().max()) if x.numel() else 0.0


# ---------------------------------------------------------------------------------------------------
# Checks 1-4 on one (model, transcoder set, prompt)
# ---------------------------------------------------------------------------------------------------
def graph_checks(model: Any, tcs: Any, prompt: str, target: Any, *, jacobian: bool, seed: int) -> dict[str, Any]:
    from circuitwise.features.attribute import attribution_graph
    from circuitwise.features.replacement import clean_run, replacement_logits

    tokens = model.to_tokens(prompt)[0]
    ref = Reference(model, tcs, tokens)
    res: dict[str, Any] = {"T": ref.T, "bos": ref.bos, "active_features": len(ref.feats)}
    # 1: circuitwise's frozen replacement with error nodes vs the model; my own frozen run vs the model.
    run = clean_run(model, tcs, tokens)
    rl = replacement_logits(run, tcs)
    res["1_logits_max_err"] = maxabs(rl - ref.logits)
    res["1_logits_scale"] = maxabs(ref.logits)
    g = attribution_graph(model, tcs, tokens, target)
    rows, recv = receivers_of(g)
    n_s = ref.n_sources
    ones = torch.ones(1, n_s)
    with torch.no_grad():
        mine = ref.run(torch.cat([ones, torch.zeros(1, n_s)]), recv)
    val_mine, bias_mine = mine[0], mine[1]
    # my frozen replacement at the clean point reproduces the model's own (pre-soft-cap) logits
    res["1_my_frozen_replacement_vs_model"] = maxabs(ref.last_logits[0] - ref.cache["unembed.hook_out"][0])
    # my frozen run at clean scales gives the model's logit rows (freezing changes nothing at the clean point)
    tgt_vals = torch.tensor([g.nodes[i].value for i in rows])
    res["n_nodes"], res["n_receivers"] = g.n_nodes, len(rows)
    same_set = sorted((n.layer, n.position, n.feature) for n in g.nodes if n.kind == "feature") == sorted(ref.feats)
    res["active_features_agree"] = same_set
    if not same_set:
        res["error"] = "the graph's active features differ from the reference's"
        return res
    # 2: incoming edges + the bias-only run = each receiver's value (mine and the graph's own)
    A = g.adjacency.double()
    rowsum = A[rows].sum(1)
    res["2_rows_plus_my_bias_minus_my_values"] = maxabs(rowsum + bias_mine.double() - val_mine.double())
    res["2_rows_plus_graph_bias_minus_graph_values"] = maxabs(rowsum + g.bias.double()[rows] - tgt_vals.double())
    res["2_graph_values_minus_mine"] = maxabs(tgt_vals.double() - val_mine.double())
    res["2_graph_bias_minus_my_bias_only_run"] = maxabs(g.bias.double()[rows] - bias_mine.double())
    res["2_value_scale"] = maxabs(val_mine)
    # Relative to what each row adds up (sum |edge| + |bias|): where a frozen norm divides by a tiny scale
    # (Gemma's post-norms at BOS) single edges reach 1e5 and cancel, and float32 rounds at that size.
    row_scale = A[rows].abs().sum(1) + bias_mine.double().abs()
    res["2_relative"] = float(((rowsum + bias_mine.double() - val_mine.double()).abs() / row_scale).max())
    # 3: sampled sources (every kind), each ablated (scale 0) or scaled (-1.5), whole columns compared
    cols = source_columns(g, ref)
    gen = torch.Generator().manual_seed(seed)
    nF, nE = len(ref.feats), ref.L * ref.T
    kinds = {"feature": list(range(nF)), "error": list(range(nF, nF + nE)), "token": list(range(nF + nE, n_s))}
    pick = []
    for k, ids in kinds.items():
        if ids:
            perm = torch.randperm(len(ids), generator=gen)[:10].tolist()
            pick += [(k, ids[i]) for i in perm]
    S = ones.repeat(len(pick), 1)
    factors = []
    for b, (_, j) in enumerate(pick):
        fct = 0.0 if b % 3 else -1.5
        S[b, j] = fct
        factors.append(fct)
    with torch.no_grad():
        out = ref.run(S, recv)
    errs: dict[str, float] = {k: 0.0 for k in kinds}
    rel: dict[str, float] = {k: 0.0 for k in kinds}
    entries = 0
    for b, (k, j) in enumerate(pick):
        effect = (val_mine - out[b]) / (1.0 - factors[b])  # the change per unit of the source removed
        predicted = g.adjacency[rows, cols[j]]
        errs[k] = max(errs[k], maxabs(effect.double() - predicted.double()))
        rel[k] = max(rel[k], float(((effect.double() - predicted.double()).abs() / row_scale).max()))
        entries += len(rows)
    res["3_sources_sampled"] = {k: sum(1 for kk, _ in pick if kk == k) for k in kinds}
    res["3_entries_compared"] = entries
    res["3_max_err_by_kind"] = errs
    res["3_relative_by_kind"] = rel
    res["3_adjacency_scale"] = maxabs(g.adjacency)
    # freezing takes effect: the same ablations with nothing frozen differ (on a model with attention mixing)
    with torch.no_grad():
        out_live = ref.run(S, recv, unfreeze=True)
    res["3_unfrozen_differs_by"] = maxabs(out_live - out)
    # 4: batched rows = rows one at a time
    g1 = attribution_graph(model, tcs, tokens, target, batch_rows=1)
    res["4_batched_vs_single_rows_max_err"] = maxabs(g1.adjacency - g.adjacency)
    res["4_batch_rows_used"] = g.meta.get("batch_rows")
    if jacobian:
        def f(s: torch.Tensor) -> torch.Tensor:
            return ref.run(s[None], recv)[0]
        J = torch.autograd.functional.jacobian(f, torch.ones(n_s), vectorize=True)
        sub = g.adjacency[rows][:, cols]
        res["4_jacobian_max_err"] = maxabs(J.double() - sub.double())
        res["4_jacobian_relative"] = float(((J.double() - sub.double()).abs() / row_scale[:, None]).max())
        # what the graph holds outside the receivers x sources block is zero
        mask = torch.ones_like(g.adjacency, dtype=torch.bool)
        mask[torch.tensor(rows)[:, None], torch.tensor(cols)[None]] = False
        res["4_outside_block_max"] = maxabs(g.adjacency[mask])
        res["4_jacobian_shape"] = list(J.shape)
    return res


def family_checks(families: list[str], folder: Path, log: Any) -> dict[str, Any]:
    from circuitwise.features.attribute import LogitDiff, Salient, Tokens
    from circuitwise.models.loading import load_model
    from tests.families import make_family_checkpoint

    out: dict[str, Any] = {}
    models: list[tuple[str, Any]] = []
    for fam in families:
        if fam.startswith("bundled"):
            models.append((fam, lambda fam=fam: load_model(fam, device="cpu")))
        else:
            models.append((fam, lambda fam=fam: load_model(str(make_family_checkpoint(fam, folder / fam, seed=11)),
                                                           device="cpu")))
    for name, get in models:
        t0 = time.time()
        fam_res: dict[str, Any] = {}
        try:
            model = get()
        except Exception as e:  # noqa: BLE001  a family that does not load is a result
            out[name] = {"error": f"load: {type(e).__name__}: {e}"}
            continue
        for si, kind in enumerate(("topk_skip", "jumprelu", "clt", "topk_resid_mid")):
            tcs = make_set(model, kind.replace("_resid_mid", "_skip"), seed=100 + si,
                           site="resid_mid" if kind.endswith("resid_mid") else "mlp_in")
            for pi, prompt in enumerate(PROMPTS[:1] if kind.endswith("resid_mid") else PROMPTS):
                # salient logits, named tokens, and the logit difference (the task metric's form)
                target = Salient(max_n=3) if pi == 0 else (LogitDiff(" the", " a") if kind == "clt" else
                                                           Tokens((" the", " a")))
                key = f"{kind}/p{pi}"
                try:
                    fam_res[key] = graph_checks(model, tcs, prompt, target,
                                                jacobian=(pi == 0), seed=si * 10 + pi)
                except Exception as e:  # noqa: BLE001
                    fam_res[key] = {"error": f"{type(e).__name__}: {e}"}
        try:
            fam_res["1_float64"] = float64_logits(model)
        except Exception as e:  # noqa: BLE001
            fam_res["1_float64"] = {"error": f"{type(e).__name__}: {e}"[:300]}
        fam_res["seconds"] = round(time.time() - t0, 1)
        out[name] = fam_res
        log(f"{name}: {summarise_family(fam_res)} ({fam_res['seconds']} s)")
    return out


def float64_logits(model: Any) -> dict[str, float]:
    """Check 1 in float64: the replacement with error nodes against the engine's own clean run and the bridge
    (HF's Llama keeps its norms and rotary in float32, so the bridge is not all float64 there)."""
    from circuitwise.features.replacement import clean_run, replacement_logits

    m = model.to(torch.float64)
    try:
        tcs = make_set(m, "topk_skip", seed=100).to(dtype=torch.float64)
        tok = m.to_tokens(PROMPTS[1])[0]
        with torch.no_grad():
            lg = m(tok[None])[0]
        run = clean_run(m, tcs, tok)
        rl = replacement_logits(run, tcs)
        return {"replacement_vs_engine_clean": maxabs(rl - run.logits), "replacement_vs_bridge": maxabs(rl - lg),
                "engine_clean_vs_bridge": maxabs(run.logits - lg)}
    finally:
        model.to(torch.float32)


def summarise_family(fr: dict[str, Any]) -> dict[str, Any]:
    agg: dict[str, float] = {}
    graphs = {k: v for k, v in fr.items() if "/" in k}  # "<transcoder set>/<prompt>"
    errors = [k for k, v in graphs.items() if "error" in v]
    for v in graphs.values():
        if "error" in v:
            continue
        for k in ("1_logits_max_err", "1_my_frozen_replacement_vs_model", "2_rows_plus_my_bias_minus_my_values",
                  "2_rows_plus_graph_bias_minus_graph_values", "2_graph_values_minus_mine",
                  "2_graph_bias_minus_my_bias_only_run", "4_batched_vs_single_rows_max_err",
                  "4_jacobian_max_err", "4_outside_block_max", "2_relative", "4_jacobian_relative"):
            if k in v:
                agg[k] = max(agg.get(k, 0.0), v[k])
        agg["3_ablation_max_err"] = max(agg.get("3_ablation_max_err", 0.0), *v["3_max_err_by_kind"].values())
        agg["3_ablation_relative"] = max(agg.get("3_ablation_relative", 0.0), *v["3_relative_by_kind"].values())
        agg["3_adjacency_scale"] = max(agg.get("3_adjacency_scale", 0.0), v["3_adjacency_scale"])
        agg["3_unfrozen_differs_min"] = min(agg.get("3_unfrozen_differs_min", math.inf), v["3_unfrozen_differs_by"])
    f64 = fr.get("1_float64", {})
    if "replacement_vs_engine_clean" in f64:
        agg["1_float64_replacement_vs_engine"] = f64["replacement_vs_engine_clean"]
        agg["1_float64_replacement_vs_bridge"] = f64["replacement_vs_bridge"]
    agg = {k: float(f"{v:.3g}") for k, v in agg.items()}
    if errors:
        agg["errors"] = errors  # type: ignore[assignment]
    return agg


# ---------------------------------------------------------------------------------------------------
# 5: planted feature on GPT-2 (GELU MLPs)
# ---------------------------------------------------------------------------------------------------
def planted(folder: Path) -> dict[str, Any]:
    """GPT-2 with every MLP neuron dead (pre-activation −30: GELU's output there is 0 in float32) but one
    in layer 0, which reads token X's embedding (pre-activation far above 0 at X, far below elsewhere)
    and writes token Y's unembedding. GELU equals ReLU at every pre-activation the prompts reach, so a
    one-feature ReLU transcoder set from that neuron is exact: error nodes off BOS are ~0 and the graph
    holds token X → feature → logit Y."""
    from transformers import AutoModelForCausalLM

    from circuitwise.features.attribute import Tokens, attribution_graph
    from circuitwise.features.transcoder import Transcoder, TranscoderSet
    from circuitwise.models.loading import load_model
    from tests.families import make_family_checkpoint

    ck = make_family_checkpoint("gpt2", folder / "planted-gpt2", seed=5)
    hf = AutoModelForCausalLM.from_pretrained(str(ck))
    tok = __import__("transformers").AutoTokenizer.from_pretrained(str(ck))
    x_id, y_id = tok.encode(" dog")[0], tok.encode(" moon")[0]
    with torch.no_grad():
        E = hf.transformer.wte.weight
        E[x_id] *= 5.0  # token X's embedding dominates its residual (its own logit aside, nothing else moves)
        hf.transformer.wpe.weight.mul_(0.2)
        unit = lambda v: (v - v.mean()) / (v - v.mean()).norm()  # noqa: E731
        for li, blk in enumerate(hf.transformer.h):
            blk.ln_2.weight.fill_(1.0)
            blk.ln_2.bias.zero_()
            W = blk.mlp.c_fc.weight  # Conv1D [d, d_mlp]
            W.zero_()
            blk.mlp.c_fc.bias.fill_(-30.0)
            if li == 0:
                W[:, 0] = 12.0 * unit(E[x_id])
                blk.mlp.c_fc.bias[0] = -45.0
                blk.mlp.c_proj.weight[0] = 4.0 * unit(E[y_id])
        hf.transformer.h[0].attn.c_proj.weight.mul_(0.2)  # layer 0's attention: a small perturbation
    hf.save_pretrained(str(ck))
    model = load_model(str(ck), device="cpu")
    L = model.cfg.n_layers
    sets = []
    for l in range(L):
        W_in, b_in, W_out, b_out = (t.detach().clone() for t in (model.W_in[l], model.b_in[l], model.W_out[l],
                                                                     model.b_out[l]))
        if l != 0:
            W_in, b_in, W_out = W_in[:, :1] * 0, torch.full((1,), -30.0), W_out[:1] * 0
        else:
            W_in, b_in, W_out = W_in[:, :1], b_in[:1], W_out[:1]
        sets.append(Transcoder(l, W_in, b_in, W_out, b_out, activation="relu"))
    tcs = TranscoderSet(tuple(sets), model="planted-gpt2")
    res: dict[str, Any] = {"x": tok.decode([x_id]), "y": tok.decode([y_id])}
    for prompt in ("My dog", "The big dog ran to the", "Yesterday a dog"):
        tokens = model.to_tokens(prompt)[0]
        ref = Reference(model, tcs, tokens)
        pre = ref.tin[0][:, :] @ tcs[0].W_enc[:, 0] + tcs[0].b_enc[0]
        xpos = (tokens == x_id).nonzero().flatten().tolist()
        g = attribution_graph(model, tcs, tokens, Tokens((y_id,)), position=xpos[0])
        err_off_bos = [abs(n.value) for n in g.nodes if n.kind == "error" and (n.position > 0 or not ref.bos)]
        fi = [i for i, n in enumerate(g.nodes) if n.kind == "feature"]
        ti = [i for i, n in enumerate(g.nodes) if n.kind == "target"][0]
        tk = [i for i, n in enumerate(g.nodes) if n.kind == "token" and n.position == xpos[0]][0]
        A = g.adjacency
        r: dict[str, Any] = {"pre_at_x": pre[xpos].tolist(),
                             "pre_max_elsewhere": float(pre[[p for p in range(len(tokens)) if p not in xpos]].max()),
                             "features": [(g.nodes[i].layer, g.nodes[i].position, g.nodes[i].feature) for i in fi],
                             "max_error_node_norm_off_bos": max(err_off_bos)}
        if fi:
            f0 = fi[0]
            r["edge_token_x_to_feature"] = float(A[f0, tk])
            r["feature_pre"] = float(g.nodes[f0].value)
            r["feature_write_norm"] = float(g.nodes[f0].value * tcs[0].W_dec[0].norm())
            r["edge_feature_to_logit_y"] = float(A[ti, f0])
            # the feature's share of the target's incoming edges (by absolute weight) and ranks
            inc = A[ti].abs()
            r["feature_rank_into_target"] = int((inc > inc[f0]).sum())
            r["token_x_rank_into_feature"] = int((A[f0].abs() > A[f0, tk].abs()).sum())
            # analytic: the neuron writes act × 4·unit(E_y); the logit reads it through the frozen final norm
        res[prompt] = r
    return res


# ---------------------------------------------------------------------------------------------------
# 6: bundled opposites, top features ablated in the unfrozen model
# ---------------------------------------------------------------------------------------------------
def unfrozen_metric(model: Any, tcs: Any, ref: Reference, tokens: torch.Tensor, ablate: list[tuple[int, int, int]],
                    pos: int, a: int, b: int) -> float:
    """The live model with every MLP replaced by transcoders (recomputed) + the clean error; ``ablate`` zeroed."""
    L = model.cfg.n_layers
    cl = tcs[0].W_dec.dim() == 3
    acts: dict[int, torch.Tensor] = {}

    def tin(x: torch.Tensor, hook: Any, l: int) -> None:
        a_ = my_encode(tcs[l], x[0])
        if ref.bos:
            a_[0] = 0
        for (al, ap, af) in ablate:
            if al == l:
                a_[ap, af] = 0
        acts[l] = a_

    def out(x: torch.Tensor, hook: Any, l: int) -> torch.Tensor:
        W, bb = my_dec(tcs[l], 0)
        y = acts[l] @ W + bb
        for s in range(l if cl else 0):
            y = y + acts[s] @ my_dec(tcs[s], l - s)[0]
        y = y + my_skip(tcs[l], ref.tin[l] * 0 + hook_in[l]) + ref.errors[l]
        return y[None]
    hook_in: dict[int, torch.Tensor] = {}

    def keep(x: torch.Tensor, hook: Any, l: int) -> None:
        hook_in[l] = x[0]
        tin(x, hook, l)
    hooks = []
    for l in range(L):
        hooks += [(f"blocks.{l}.mlp.hook_in", lambda x, hook, l=l: keep(x, hook, l)),
                  (f"blocks.{l}.mlp.hook_out", lambda x, hook, l=l: out(x, hook, l))]
    with torch.no_grad():
        lg = model.run_with_hooks(tokens[None], fwd_hooks=hooks)[0, pos]
    return float(lg[a] - lg[b])


def whole_task_check(model: Any, tcs: Any, task: Any, n: int = 4) -> dict[str, Any]:
    """The whole-task graph over ``n`` prompts: its target is the mean of the model's own logit differences
    (my forward), and every row with the bias still adds up to its (averaged) value."""
    from circuitwise.features.task_graph import task_graph

    g = task_graph(model, tcs, task, max_prompts=n)
    diffs = []
    for ex in task.examples[:n]:
        with torch.no_grad():
            lg = model(model.to_tokens(ex.clean))[0, -1]
        a = model.tokenizer.encode(ex.correct, add_special_tokens=False)[0]
        b = model.tokenizer.encode(ex.incorrect, add_special_tokens=False)[0]
        diffs.append(float(lg[a] - lg[b]))
    ti = g.target_nodes.start
    rows = list(range(g.features.stop)) + list(range(g.target_nodes.start, g.target_nodes.stop))
    A = g.adjacency.double()
    vals = torch.tensor([g.nodes[i].value for i in rows], dtype=torch.float64)
    return {"n_prompts": g.meta.get("n_prompts"), "target_value": g.nodes[ti].value,
            "mean_metric_mine": sum(diffs) / n, "target_err": abs(g.nodes[ti].value - sum(diffs) / n),
            "rows_plus_bias_minus_values": maxabs(A[rows].sum(1) + g.bias.double()[rows] - vals)}


def opposites_check(log: Any) -> dict[str, Any]:
    from circuitwise.features.attribute import LogitDiff, attribution_graph
    from circuitwise.features.formats import load_transcoders
    from circuitwise.models.loading import load_model
    from circuitwise.tasks.builtin import get_task

    task = get_task("opposites")
    out: dict[str, Any] = {}
    for mname in ("bundled", "bundled-llama"):
        model = load_model(mname, device="cpu")
        tcs = load_transcoders(mname)
        per: list[dict[str, Any]] = []
        agree = total = 0
        for ex in task.examples[:3]:
            tokens = model.to_tokens(ex.clean)[0]
            a = model.tokenizer.encode(ex.correct, add_special_tokens=False)[0]
            b = model.tokenizer.encode(ex.incorrect, add_special_tokens=False)[0]
            g = attribution_graph(model, tcs, tokens, LogitDiff(a, b))
            ref = Reference(model, tcs, tokens)
            T = ref.T
            ti = g.target_nodes.start
            # The graph's prediction for ablating features C: each clamped at 0 (a change of -act), every other
            # feature responding linearly (its gate held) through the graph's feature->feature edges, read at
            # the target. A[i, j] is j's effect at its activation, so per unit of j it is A[i, j] / act_j.
            A = g.adjacency.double()
            nF = g.features.stop
            vals = torch.tensor([n.value for n in g.nodes[:nF]], dtype=torch.float64)
            M = A[:nF, :nF] / vals[None]
            m_t = A[ti, :nF] / vals

            def predict(C: list[int], M: torch.Tensor = M, m_t: torch.Tensor = m_t, vals: torch.Tensor = vals,
                        depth: int = model.cfg.n_layers + 2) -> float:
                clamp = torch.zeros(len(vals), dtype=torch.bool)
                clamp[C] = True
                d = torch.where(clamp, -vals, torch.zeros_like(vals))
                for _ in range(depth):  # features only read earlier layers: depth <= L
                    d = torch.where(clamp, -vals, M @ d)
                return float(m_t @ d)
            pred_all = torch.tensor([predict([j]) for j in range(nF)])
            top = pred_all.abs().argsort(descending=True)[:8].tolist()
            clean = unfrozen_metric(model, tcs, ref, tokens, [], T - 1, a, b)
            rows = []
            for j in top:
                n = g.nodes[j]
                one = [(n.layer, n.position, n.feature)]
                actual = unfrozen_metric(model, tcs, ref, tokens, one, T - 1, a, b) - clean
                pr = float(pred_all[j])
                rows.append({"feature": [n.layer, n.position, n.feature], "predicted": round(pr, 4),
                             "actual": round(actual, 4), "direct": round(-float(A[ti, j]), 4)})
                agree += int(math.copysign(1, pr) == math.copysign(1, actual))
                total += 1
            # all top features at once
            actual_all = unfrozen_metric(model, tcs, ref, tokens,
                                         [(g.nodes[j].layer, g.nodes[j].position, g.nodes[j].feature) for j in top],
                                         T - 1, a, b) - clean
            per.append({"prompt": ex.clean, "metric": round(clean, 4), "graph_value": round(g.nodes[ti].value, 4),
                        "top": rows, "all_top_predicted": round(predict(top), 4),
                        "all_top_actual": round(actual_all, 4)})
        pr = [r["predicted"] for p in per for r in p["top"]]
        ac = [r["actual"] for p in per for r in p["top"]]
        corr = float(torch.corrcoef(torch.tensor([pr, ac]))[0, 1])
        out[mname] = {"prompts": per, "sign_agreement": f"{agree}/{total}", "correlation": round(corr, 3),
                      "whole_task": whole_task_check(model, tcs, task)}
        log(f"6 {mname}: sign agreement {agree}/{total}, correlation {corr:.3f}")
    return out


# ---------------------------------------------------------------------------------------------------
# 7: the CLI, the page, the Neuronpedia JSON
# ---------------------------------------------------------------------------------------------------
def np_check(path: Path) -> list[str]:
    """My own check of Neuronpedia's graph schema 1.0.0's required fields."""
    d = json.loads(path.read_text())
    probs = []
    for k in ("metadata", "qParams", "nodes", "links"):
        if k not in d:
            probs.append(f"missing {k}")
    md = d.get("metadata", {})
    for k in ("slug", "scan", "prompt_tokens", "prompt"):
        if k not in md:
            probs.append(f"metadata.{k} missing")
    ids = []
    no_act = 0
    for n in d.get("nodes", []):
        for k in ("node_id", "feature", "layer", "ctx_idx", "feature_type", "jsNodeId", "clerp"):
            if k not in n:
                probs.append(f"node {n.get('node_id')} lacks {k}")
        # influence and activation: on every feature; circuitwise writes activation on features only (an error's
        # or embedding's value is a norm), so their absence elsewhere is counted, not a problem
        if n.get("feature_type") == "cross layer transcoder" or n.get("feature_type") == "transcoder" or \
                str(n.get("feature_type", "")).endswith("transcoder"):
            for k in ("influence", "activation"):
                if not isinstance(n.get(k), (int, float)):
                    probs.append(f"feature {n.get('node_id')} lacks {k}")
        elif "activation" not in n:
            no_act += 1
        ids.append(n.get("node_id"))
    if no_act:
        probs.append(f"note: {no_act} non-feature nodes carry no activation key (schema 1.0.0 does not require it)")
    # Neuronpedia's own schema file (hijohnnylin/neuronpedia apps/webapp/app/api/graph/graph-schema.json; the
    # copy circuit_tracer_formats.py uses), where it and jsonschema are at hand
    schema = ROOT / "bench" / ".venvs" / "neuronpedia-graph-schema.json"
    try:
        import jsonschema

        if schema.exists():
            errs = sorted(jsonschema.Draft7Validator(json.loads(schema.read_text())).iter_errors(d), key=str)
            probs += [f"schema: {e.message[:200]}" for e in errs[:5]]
        else:
            probs.append("note: no copy of Neuronpedia's schema file; its required fields checked by hand only")
    except ImportError:
        probs.append("note: jsonschema not installed; Neuronpedia's required fields checked by hand only")
    if len(set(ids)) != len(ids):
        probs.append(f"{len(ids) - len(set(ids))} duplicate node ids")
    known = set(ids)
    for ln in d.get("links", []):
        if set(ln) < {"source", "target", "weight"}:
            probs.append(f"link lacks fields: {ln}")
        if ln.get("source") not in known or ln.get("target") not in known:
            probs.append(f"link between unknown nodes {ln.get('source')} -> {ln.get('target')}")
    return probs[:20]


def cli_check(work: Path, log: Any) -> dict[str, Any]:
    from circuitwise.features.export import validate_neuronpedia

    runs = {
        "task": ["opposites", "--model", "bundled", "--transcoders", "bundled"],
        "whole_task": ["opposites", "--model", "bundled", "--transcoders", "bundled", "--whole-task",
                       "--graph-prompts", "3"],
        "salient": ["opposites", "--model", "bundled", "--transcoders", "bundled", "--target", "salient"],
        "metric": ["opposites", "--model", "bundled", "--transcoders", "bundled", "--target", "metric"],
        "token": ["opposites", "--model", "bundled", "--transcoders", "bundled", "--target", " young"],
        "raw_prompt": ["The kettle was hot, but the ice was", "--model", "bundled-llama", "--transcoders",
                       "bundled-llama"],
    }
    out: dict[str, Any] = {}
    for name, args in runs.items():
        folder = work / name
        t0 = time.time()
        p = subprocess.run([*CLI, "graph", *args, "--out", str(folder), "--device", "cpu"], capture_output=True,
                           text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
        r: dict[str, Any] = {"rc": p.returncode, "seconds": round(time.time() - t0, 1),
                             "files": sorted(x.name for x in folder.glob("*")) if folder.exists() else []}
        if p.returncode:
            r["stderr"] = p.stderr[-1500:]
        npj = folder / "neuronpedia.json"
        if npj.exists():
            try:
                validate_neuronpedia(json.loads(npj.read_text()))
                r["validate_neuronpedia"] = "ok"
            except Exception as e:  # noqa: BLE001
                r["validate_neuronpedia"] = f"{type(e).__name__}: {e}"[:500]
            r["my_schema_problems"] = np_check(npj)
            d = json.loads(npj.read_text())
            r["np_nodes"], r["np_links"] = len(d.get("nodes", [])), len(d.get("links", []))
            r["np_feature_types"] = sorted({n.get("feature_type") for n in d.get("nodes", [])})
        out[name] = r
        log(f"7 {name}: rc {p.returncode} {r.get('validate_neuronpedia')} {r.get('my_schema_problems')}")
    out["browser"] = browser_check([work / n / "graph.html" for n in runs])
    log(f"7 browser: {out['browser']}")
    return out


def browser_check(pages: list[Path]) -> dict[str, Any]:
    """Each page in headless Chromium (offline): console messages, and the nodes and links it drew."""
    import re
    import shutil

    chromium = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if chromium is None:
        return {"skipped": "chromium not installed"}
    res: dict[str, Any] = {}
    for page in pages:
        if not page.exists():
            res[page.parent.name] = "no page"
            continue
        with tempfile.TemporaryDirectory() as prof:
            cmd = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                   "--disable-background-networking", "--disable-component-update", "--disable-sync",
                   "--disable-dev-shm-usage", f"--user-data-dir={prof}", "--enable-logging=stderr", "--v=0",
                   "--virtual-time-budget=15000", "--dump-dom", page.resolve().as_uri()]
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
        console = [ln for ln in p.stderr.splitlines() if ":CONSOLE" in ln]
        res[page.parent.name] = {"console": console[:5],
                                 "nodes_drawn": len(re.findall(r'class="cwg-node[^"]*" data-id=', p.stdout)),
                                 "links_drawn": len(re.findall(r'<path[^>]*class="cwg-edge', p.stdout))}
    return res


# ---------------------------------------------------------------------------------------------------
# 8: the shipped transcoders against their cards
# ---------------------------------------------------------------------------------------------------
def card_check(log: Any) -> dict[str, Any]:
    sys.path.insert(0, str(ROOT / "scripts"))
    from train_bundled_transcoders import HELDOUT_SEED, texts  # type: ignore[import-not-found]

    from circuitwise.features.formats import load_transcoders
    from circuitwise.models.loading import load_model

    out: dict[str, Any] = {}
    for mname in ("bundled", "bundled-llama"):
        model = load_model(mname, device="cpu")
        tcs = load_transcoders(mname)
        card = tcs.meta.get("card") or {}
        r: dict[str, Any] = {"card": {k: card.get(k) for k in ("fvu", "kl", "top1_agreement", "heldout_tokens")}}
        for label, seed in (("card_heldout_seed", HELDOUT_SEED), ("fresh_seed_9090", 9090)):
            r[label] = my_card(model, tcs, texts(seed, 400))
        out[mname] = r
        log(f"8 {mname}: card {r['card']} | mine {r['card_heldout_seed']} | fresh {r['fresh_seed_9090']}")
    return out


@torch.no_grad()
def my_card(model: Any, tcs: Any, docs: list[str]) -> dict[str, Any]:
    L = model.cfg.n_layers
    cl = tcs[0].W_dec.dim() == 3
    se = [0.0] * L
    ys: list[list[torch.Tensor]] = [[] for _ in range(L)]
    kl = 0.0
    agree = n = 0
    names = [f"blocks.{l}.mlp.hook_{w}" for l in range(L) for w in ("in", "out")]
    acts: dict[int, torch.Tensor] = {}
    cache: dict[str, torch.Tensor] = {}

    def rd(x: torch.Tensor, hook: Any, l: int) -> None:
        acts[l] = my_encode(tcs[l], x[0])
        cache[f"x{l}"] = x[0]

    def wr(x: torch.Tensor, hook: Any, l: int) -> torch.Tensor:
        W, b = my_dec(tcs[l], 0)
        y = acts[l] @ W + b + my_skip(tcs[l], cache[f"x{l}"])
        for s in range(l if cl else 0):
            y = y + acts[s] @ my_dec(tcs[s], l - s)[0]
        return y[None]
    for doc in docs:
        ids = model.to_tokens(doc)[0, :128]
        logits, c = model.run_with_cache(ids[None], names_filter=lambda x: x in names)
        xs = [c[f"blocks.{l}.mlp.hook_in"][0] for l in range(L)]
        for l in range(L):
            W, b = my_dec(tcs[l], 0)
            pred = my_encode(tcs[l], xs[l]) @ W + b + my_skip(tcs[l], xs[l])
            for s in range(l if cl else 0):
                pred = pred + my_encode(tcs[s], xs[s]) @ my_dec(tcs[s], l - s)[0]
            y = c[f"blocks.{l}.mlp.hook_out"][0]
            se[l] += float(((y - pred) ** 2).sum())
            ys[l].append(y)
        # every MLP replaced (no error), live
        hooks = []
        for l in range(L):
            hooks += [(f"blocks.{l}.mlp.hook_in", lambda x, hook, l=l: rd(x, hook, l)),
                      (f"blocks.{l}.mlp.hook_out", lambda x, hook, l=l: wr(x, hook, l))]
        rep = model.run_with_hooks(ids[None], fwd_hooks=hooks)[0].log_softmax(-1)
        base = logits[0].log_softmax(-1)
        kl += float((base.exp() * (base - rep)).sum())
        agree += int((base.argmax(-1) == rep.argmax(-1)).sum())
        n += ids.numel()
    fvu = []
    for l in range(L):
        y = torch.cat(ys[l])
        fvu.append(round(se[l] / float(((y - y.mean(0)) ** 2).sum()), 5))
    return {"fvu": fvu, "kl": round(kl / n, 5), "top1_agreement": round(agree / n, 4), "tokens": n}


# ---------------------------------------------------------------------------------------------------
# 9: the transcoder CLI
# ---------------------------------------------------------------------------------------------------
def train_cli_check(work: Path, log: Any) -> dict[str, Any]:
    from circuitwise.features.formats import load_transcoders
    from tests.families import make_family_checkpoint

    out: dict[str, Any] = {}
    ck = make_family_checkpoint("qwen3", work / "ck-qwen3", seed=3)
    corpus = work / "corpus.txt"
    sys.path.insert(0, str(ROOT / "scripts"))
    from train_bundled_transcoders import texts  # type: ignore[import-not-found]
    corpus.write_text("\n".join(texts(31337, 700)) + "\n")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    base = [*CLI, "transcoders", "train", str(ck), "--corpus", str(corpus), "--width", "64", "--device", "cpu",
            "--heldout-tokens", "1024", "--tokens", "51200", "--batch-tokens", "256"]
    variants = {"clt_topk": ["--cross-layer", "--k", "4"], "jumprelu": ["--activation", "jumprelu", "--no-skip"]}
    for name, extra in variants.items():
        folder = work / f"tc-{name}"
        cmd = [*base, *extra, "--out", str(folder)]
        r: dict[str, Any] = {"cmd": " ".join(cmd[1:])}
        t0 = time.time()
        # Interrupt mid-training: a few seconds after the first progress line (Ctrl-C writes a checkpoint there).
        errf = folder.parent / f"{name}.stderr"
        with errf.open("w") as fh:
            p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=fh, text=True, env=env)
            seen = None
            while p.poll() is None:
                time.sleep(0.25)
                if seen is None and "training:" in errf.read_text():
                    seen = time.time()
                if seen is not None and time.time() - seen > 4:
                    p.send_signal(signal.SIGINT)
                    break
            p.wait()
        err = errf.read_text()
        r["interrupted"] = "interrupted" in err
        stopped = re.findall(r"stopped at step (\d+)", err)
        r["stopped_at"] = int(stopped[0]) if stopped else None
        r["first_rc"], r["first_seconds"], r["first_tail"] = p.returncode, round(time.time() - t0, 1), err[-400:]
        p2 = subprocess.run(cmd, capture_output=True, text=True, env=env)
        r["resume_rc"] = p2.returncode
        r["resume_tail"] = (p2.stderr + p2.stdout)[-600:]
        r["resumed"] = "resum" in (p2.stderr + p2.stdout).lower()
        if p2.returncode == 0:
            c = subprocess.run([*CLI, "transcoders", "card", str(folder)], capture_output=True, text=True, env=env)
            r["card_rc"], r["card"] = c.returncode, c.stdout[-800:]
            ts = load_transcoders(str(folder))
            r["set"] = {"cross_layer": ts.cross_layer, "activation": ts[0].activation, "k": ts[0].k,
                        "skip": ts[0].W_skip is not None, "steps": ts.meta.get("training", {}).get("steps"),
                        "resumed_at": ts.meta.get("training", {}).get("resumed_at"),
                        "card_fvu": ts.meta.get("card", {}).get("fvu")}
            r["convert"] = convert_roundtrip(folder, ts, work / f"conv-{name}", env)
            if name == "clt_topk":
                # the resumed run against one never interrupted (the docs promise bit-for-bit equality)
                plain = work / "tc-clt-plain"
                p3 = subprocess.run([*base, *extra, "--out", str(plain)], capture_output=True, text=True, env=env)
                if p3.returncode == 0:
                    other = load_transcoders(str(plain))
                    pairs = zip(ts.transcoders, other.transcoders, strict=True)
                    r["resumed_vs_uninterrupted_max_diff"] = max(
                        maxabs(getattr(s_, nm) - getattr(t_, nm)) for s_, t_ in pairs
                        for nm in ("W_enc", "b_enc", "W_dec", "b_dec", "W_skip"))
                else:
                    r["uninterrupted_rc"] = p3.returncode
        out[name] = r
        log(f"9 {name}: first rc {r['first_rc']} (interrupted {r['interrupted']}), resume rc {r['resume_rc']} "
            f"resumed {r['resumed']}, set {r.get('set')}, convert {r.get('convert')}")
    return out


def convert_roundtrip(folder: Path, ts: Any, work: Path, env: dict[str, str]) -> dict[str, Any]:
    from circuitwise.features.formats import load_transcoders

    res: dict[str, Any] = {}
    layouts = ("circuit-tracer-clt",) if ts.cross_layer else ("circuit-tracer", "gemma-scope")
    for layout in layouts:
        a, b = work / layout, work / f"{layout}-back"
        p = subprocess.run([*CLI, "transcoders", "convert", str(folder), str(a), "--layout", layout],
                           capture_output=True, text=True, env=env)
        if p.returncode:
            res[layout] = {"rc": p.returncode, "stderr": p.stderr[-500:]}
            continue
        q = subprocess.run([*CLI, "transcoders", "convert", str(a), str(b), "--layout", "circuitwise"],
                           capture_output=True, text=True, env=env)
        if q.returncode:
            res[layout] = {"rc_back": q.returncode, "stderr": q.stderr[-500:]}
            continue
        back = load_transcoders(str(b))
        diff = 0.0
        for s, t in zip(ts.transcoders, back.transcoders, strict=True):
            for nm in ("W_enc", "b_enc", "W_dec", "b_dec", "threshold", "W_skip"):
                u, v = getattr(s, nm), getattr(t, nm)
                if (u is None) != (v is None):
                    diff = math.inf
                elif u is not None:
                    diff = max(diff, maxabs(u - v))
            if (s.activation, s.k) != (t.activation, t.k):
                diff = math.inf
        res[layout] = {"files": sorted(x.name for x in a.iterdir()), "max_diff_after_round_trip": diff}
    return res


# ---------------------------------------------------------------------------------------------------
def main() -> None:
    from tests.families import FAMILIES

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checks", default="1,5,6,7,8,9", help="1 runs 1-4 (one pass per family)")
    p.add_argument("--families", default=",".join(("bundled", "bundled-llama", *FAMILIES)))
    p.add_argument("--out", type=Path, default=RESULTS / f"feature-graph-acceptance-{date.today()}.json")
    args = p.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    warnings.filterwarnings("ignore")
    checks = set(args.checks.split(","))
    t0 = time.time()
    res: dict[str, Any] = {"date": str(date.today()), "torch": torch.__version__, "threads": 1}
    prior = json.loads(args.out.read_text()) if args.out.exists() else {}

    def log(msg: str) -> None:
        print(f"[{time.time() - t0:6.1f}s] {msg}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if "1" in checks:
            fams = args.families.split(",")
            res["checks_1_to_4"] = family_checks(fams, work, log)
            res["checks_1_to_4_summary"] = {f: summarise_family(v) if "error" not in v else v
                                            for f, v in res["checks_1_to_4"].items()}
        if "5" in checks:
            res["check_5_planted_gpt2"] = planted(work)
            log(f"5: {json.dumps(res['check_5_planted_gpt2'])[:800]}")
        if "6" in checks:
            res["check_6_opposites"] = opposites_check(log)
        if "7" in checks:
            res["check_7_cli"] = cli_check(work / "cli", log)
        if "8" in checks:
            res["check_8_cards"] = card_check(log)
        if "9" in checks:
            res["check_9_train_cli"] = train_cli_check(work / "train", log)
    res["seconds"] = round(time.time() - t0, 1)
    merged = {**prior, **res}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(merged, indent=1, default=str) + "\n")
    log(f"wrote {args.out}")


if __name__ == "__main__":
    main()
