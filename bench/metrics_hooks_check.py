"""Every metric of every engine against plain TransformerLens hooks, on random checkpoints of several families.

An independent acceptance check (issue 22, item 3): the reference side is written here from the
definitions, with nothing of circuitwise's metric code, and runs on the TransformerLens bridge
alone: ``model(tokens)`` and ``model.run_with_hooks`` one prompt at a time (no padding), the
softmax, log-softmax and KL taken here in float64 from the full last-token logits. circuitwise's
side is its public Python API:

- baseline: ``attribution.baseline(model, tok, metric=M)`` on the clean prompts and on the
  corrupted ones (``plan.corrupted_view``), for kl with the clean reference of
  ``metrics.prepared_for``;
- activation patching: ``patching.activation_patching(..., "heads", normalize=False)`` in both
  directions (every head's output, ``hook_z`` at every position, patched from the other run) and
  ``"resid_pre"`` with ``align="end"`` (the END column: each prompt's last token), compared cell by
  cell, per prompt (``PatchResult.raw``);
- the edge engine that discovery and evaluation use: ``circuits.patch.patched_metrics`` with every
  edge kept but those out of one sender (the first and last head, the first and last MLP; noising:
  that sender's output from the corrupted run; with ``base="corrupted"``, denoising), per prompt,
  against the head patched at ``hook_z`` or the MLP at ``hook_mlp_out``. Under Gemma 2's
  post-attention norm a head's edges carry its share of the normed output at the run's own scale
  (README, Families: Post-norms), which is not ``hook_z`` patching: those rows are recorded, not judged;
- evaluation: ``evaluation.evaluate_circuit`` of the circuit without MLP0's edges, its clean,
  corrupted and circuit means, and its faithfulness against ``(m(noised) − m(corrupted)) /
  (m(clean) − m(corrupted))`` (judged relative to scale / gap, its condition number).

The checkpoints' answer tokens' unembedding rows are scaled ×10 (``BOOST``) so that the answers'
probabilities move between the runs (a random checkpoint's are about 1/50257).

kl is ``KL(p_clean ‖ p)`` at each prompt's last token, so 0 on the clean run. Direct logit
attribution decomposes the logit difference only (the plan says so for the other metrics), so it is
not part of this check.

Run (about 4 minutes on 2 shared cores)::

    PYTHONPATH=/work/main .venv/bin/python bench/metrics_hooks_check.py [--families gpt2 llama ...] [--n 6]

Writes ``bench/results/metrics-hooks-<date>.json``: per family × metric × quantity, max |diff| and
the largest |value| compared; exit 1 if any max |diff| passes the tolerance (1e-4), absolute or
relative to the quantity's largest |value| (at least 1e-3).
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TOL = 1e-4
# Below this, a quantity's values are judged by the absolute tolerance alone: a KL of 5e-5 nats is
# summed over 50,257 float32 terms, whose rounding (about 1e-8) is not small relative to it.
FLOOR = 1e-3
# The families' random checkpoints give near-uniform next-token distributions (p ≈ 1/50257), where
# prob and logprob barely move between clean and corrupted prompts; the unembedding rows of the
# task's answer tokens are scaled by this factor, so the answers' probabilities spread over 1e-8…0.6
# and every metric moves between the runs. Small probabilities are why each quantity is also judged
# relative to its largest value.
BOOST = 10.0
METRICS = ("logit_diff", "prob", "logprob", "kl")
FAMILIES = ("gpt2", "llama", "gemma2", "pythia", "qwen2")


# ------------------------------------------------------------------------------------------------
# The reference: TransformerLens hooks and the metrics' definitions, nothing of circuitwise.


def last_logits(model: Any, tokens: torch.Tensor, hooks: list[tuple[str, Any]] | None = None) -> torch.Tensor:
    """Full-vocabulary logits at the last position of one unpadded prompt ``[1, pos]``, float64."""
    with torch.no_grad():
        out = model.run_with_hooks(tokens, fwd_hooks=hooks or []) if hooks else model(tokens)
    return out[0, -1].double()


def metric_of(name: str, logits: torch.Tensor, answers: tuple[int, int], ref_logits: torch.Tensor) -> float:
    lp = logits.log_softmax(-1)
    c, w = answers
    if name == "logit_diff":
        return float(logits[c] - logits[w])
    if name == "logprob":
        return float(lp[c])
    if name == "prob":
        return float(lp[c].exp())
    ref = ref_logits.log_softmax(-1)
    return float((ref.exp() * (ref - lp)).sum())  # KL(p_clean ‖ p)


def capture(model: Any, tokens: torch.Tensor, names: list[str]) -> dict[str, torch.Tensor]:
    got: dict[str, torch.Tensor] = {}

    def keeper(name: str) -> Any:
        # Keyed by the name asked for: the bridge may report an alias's canonical name as hook.name.
        def keep(act: torch.Tensor, hook: Any) -> None:
            got[name] = act.detach().clone()
        return keep

    with torch.no_grad():
        model.run_with_hooks(tokens, fwd_hooks=[(n, keeper(n)) for n in names])
    return got


class Prompt:
    """One example, unpadded: clean and corrupted tokens, answers, and the reference logits."""

    def __init__(self, model: Any, tok: Any, i: int) -> None:
        n = int(tok.last[i]) + 1
        self.clean = tok.clean[i:i + 1, :n]
        self.corrupted = tok.corrupted[i:i + 1, :n]
        self.answers = (int(tok.answers[i, 0]), int(tok.answers[i, 1]))
        self.clean_logits = last_logits(model, self.clean)
        self.corrupted_logits = last_logits(model, self.corrupted)

    def m(self, metric: str, logits: torch.Tensor) -> float:
        return metric_of(metric, logits, self.answers, self.clean_logits)


def head_patched(model: Any, p: Prompt, layer: int, head: int, direction: str) -> torch.Tensor:
    """Last-token logits with one head's ``hook_z`` (every position) from the other run."""
    name = f"blocks.{layer}.attn.hook_z"
    base, source = (p.clean, p.corrupted) if direction == "noise" else (p.corrupted, p.clean)
    z = capture(model, source, [name])[name]

    def put(act: torch.Tensor, hook: Any) -> torch.Tensor:
        act = act.clone()
        act[:, :, head] = z[:, :, head]
        return act

    return last_logits(model, base, [(name, put)])


def mlp_patched(model: Any, p: Prompt, layer: int, direction: str) -> torch.Tensor:
    """Last-token logits with one MLP's output (``hook_mlp_out``, every position) from the other run."""
    name = f"blocks.{layer}.hook_mlp_out"
    base, source = (p.clean, p.corrupted) if direction == "noise" else (p.corrupted, p.clean)
    out = capture(model, source, [name])[name]
    return last_logits(model, base, [(name, lambda act, hook: out.clone())])


def resid_end_patched(model: Any, p: Prompt, layer: int, direction: str) -> torch.Tensor:
    """Last-token logits with ``resid_pre`` of ``layer`` at the last position from the other run."""
    name = f"blocks.{layer}.hook_resid_pre"
    base, source = (p.clean, p.corrupted) if direction == "noise" else (p.corrupted, p.clean)
    r = capture(model, source, [name])[name]

    def put(act: torch.Tensor, hook: Any) -> torch.Tensor:
        act = act.clone()
        act[:, -1] = r[:, -1]
        return act

    return last_logits(model, base, [(name, put)])


def boost_answers(path: Path, task: Any, factor: float) -> None:
    """Scale the checkpoint's unembedding rows (the tied embedding's where it is tied) of every answer
    token of ``task`` by ``factor``, in place. The answers' ids come from the checkpoint's own tokenizer."""
    from safetensors.torch import load_file, save_file
    from transformers import AutoTokenizer

    hf_tok = AutoTokenizer.from_pretrained(str(path))
    ids = sorted({hf_tok.encode(a)[0] for e in task.examples for a in (e.correct, e.incorrect)})
    cfg = json.loads((path / "config.json").read_text())
    tied = bool(cfg.get("tie_word_embeddings", False))
    tensors = load_file(str(path / "model.safetensors"))
    names = [k for k in tensors if k.endswith(("lm_head.weight", "embed_out.weight"))]
    if tied or not names:
        names = [k for k in tensors if k.endswith(("wte.weight", "embed_tokens.weight", "embed_in.weight"))]
    if len(names) != 1:
        raise SystemExit(f"{path}: cannot tell the unembedding among {names}")
    w = tensors[names[0]].clone()
    w[ids] *= factor
    tensors[names[0]] = w
    save_file(tensors, str(path / "model.safetensors"), metadata={"format": "pt"})


# ------------------------------------------------------------------------------------------------


class Diffs:
    """max |ours − reference| and max |reference| per (metric, quantity)."""

    def __init__(self) -> None:
        self.rows: dict[tuple[str, str], dict[str, float]] = {}

    def add(self, metric: str, what: str, ours: Any, ref: Any, condition: float = 1.0, judged: bool = True) -> None:
        a = torch.as_tensor(ours, dtype=torch.float64).flatten()
        b = torch.as_tensor(ref, dtype=torch.float64).flatten()
        if a.shape != b.shape:
            raise AssertionError(f"{metric} {what}: {a.shape} values against {b.shape}")
        row = self.rows.setdefault((metric, what), {"max_abs_diff": 0.0, "max_abs_value": 0.0, "n": 0,
                                                    "condition": 1.0, "judged": judged})
        row["condition"] = max(row["condition"], condition)
        row["max_abs_diff"] = max(row["max_abs_diff"], float((a - b).abs().max()))
        row["max_abs_value"] = max(row["max_abs_value"], float(b.abs().max()))
        row["n"] += int(b.numel())


def check_family(family: str, folder: Path, n: int) -> dict[str, Any]:
    from circuitwise.attribution import baseline
    from circuitwise.circuits.circuit import Circuit, model_info
    from circuitwise.circuits.graph import graph_of
    from circuitwise.circuits.patch import patched_metrics
    from circuitwise.circuits.scores import prepare
    from circuitwise.errors import DegenerateMetricError
    from circuitwise.evaluation import evaluate_circuit
    from circuitwise.metrics import prepared_for
    from circuitwise.models import load_model
    from circuitwise.patching import activation_patching
    from circuitwise.plan import corrupted_view
    from circuitwise.tasks import get_task, tokenize_task
    from tests.families import make_family_checkpoint

    task = get_task("opposites", n=n, seed=0)
    path = folder / family
    make_family_checkpoint(family, path, n_layers=2)
    boost_answers(path, task, BOOST)
    model = load_model(str(path), device="cpu")
    tok0, _ = tokenize_task(model, task, on_invalid="drop", need_corrupted=True)
    L, H = int(model.cfg.n_layers), int(model.cfg.n_heads)
    prompts = [Prompt(model, tok0, i) for i in range(len(tok0))]
    d = Diffs()
    skipped: list[str] = []
    g = graph_of(model)
    for metric in METRICS:
        tok = prepared_for(model, tok0, metric)
        ref_clean = [p.m(metric, p.clean_logits) for p in prompts]
        ref_corr = [p.m(metric, p.corrupted_logits) for p in prompts]
        # Baseline: clean and corrupted prompts.
        bl = baseline(model, tok, metric=metric, batch_size=4)
        d.add(metric, "baseline clean", bl.values, ref_clean)
        blc = baseline(model, corrupted_view(tok), metric=metric, batch_size=4)
        d.add(metric, "baseline corrupted", blc.values, ref_corr)
        # Activation patching: every head, both directions, per prompt.
        for direction in ("noise", "denoise"):
            res = activation_patching(model, tok, "heads", metric=metric, normalize=False, direction=direction,
                                      batch_size=4)
            assert res.raw is not None
            ref = torch.tensor([[[p.m(metric, head_patched(model, p, l, h, direction)) for h in range(H)]
                                 for l in range(L)] for p in prompts])
            d.add(metric, f"patch heads ({direction})", res.raw, ref)
            d.add(metric, "patch unpatched runs", torch.stack([res.clean, res.corrupted]),
                  [ref_clean, ref_corr])
            end = activation_patching(model, tok, "resid_pre", metric=metric, normalize=False, direction=direction,
                                      align="end", batch_size=4)
            assert end.raw is not None
            ref_end = torch.tensor([[p.m(metric, resid_end_patched(model, p, l, direction)) for l in range(L)]
                                    for p in prompts])
            d.add(metric, f"patch resid_pre END ({direction})", end.raw[:, :, -1], ref_end)
        # The edge engine (discovery and evaluation): every edge kept but those out of one sender. Dropping
        # every edge out of a head is patching its hook_z, out of an MLP patching its hook_mlp_out, except
        # under a post-attention norm (Gemma 2), where a head's write is by definition its share of the
        # normed output at the run's own norm scale (README, Families: Post-norms): those rows are
        # recorded, not judged.
        prep = prepare(model, tok0, metric, batch_size=4)
        senders, _ = g.edge_index
        picks: list[tuple[str, Any]] = [
            ("L0H0", lambda p, dr: head_patched(model, p, 0, 0, dr)),
            (f"L{L - 1}H{H - 1}", lambda p, dr: head_patched(model, p, L - 1, H - 1, dr)),
            ("MLP0", lambda p, dr: mlp_patched(model, p, 0, dr)),
            (f"MLP{L - 1}", lambda p, dr: mlp_patched(model, p, L - 1, dr)),
        ]
        for name, patched in picks:
            s = next(i for i, x in enumerate(g.senders) if x.name == name)
            keep = senders != s
            kind = "a head's" if "H" in name else "an MLP's"
            aside = " (post-norm share: not judged)" if "H" in name and g.shared_head_norm else ""
            for base, direction in (("clean", "noise"), ("corrupted", "denoise")):
                pm = patched_metrics(prep, keep, base=base, batch_size=4)  # type: ignore[arg-type]
                ref = [p.m(metric, patched(p, direction)) for p in prompts]
                d.add(metric, f"edge engine, {kind} edges dropped (base {base}){aside}", pm.patched[0], ref,
                      judged=not aside)
                d.add(metric, "edge engine unpatched runs", torch.stack([pm.clean, pm.corrupted]),
                      [ref_clean, ref_corr])
        # Evaluation: the faithfulness of the circuit without MLP0's edges.
        s = next(i for i, x in enumerate(g.senders) if x.name == "MLP0")
        keep = senders != s
        circ = Circuit(g, keep, torch.zeros(g.n_edges), "check", {"kind": "top-n", "n": int(keep.sum())},
                       model_info(model), task.name, metric)
        try:
            ev = evaluate_circuit(model, tok0, circ, random_samples=0, shortlist=0, curve=False, batch_size=4)
        except DegenerateMetricError as e:  # a gap too small to normalise: said, and the means not compared
            skipped.append(f"{metric}: evaluation skipped ({e})")
            continue
        noised = torch.tensor([p.m(metric, mlp_patched(model, p, 0, "noise")) for p in prompts]).mean()
        c, k = torch.tensor(ref_clean).mean(), torch.tensor(ref_corr).mean()
        # A normalised number: float32's rounding of the three means (their row below) is divided by the
        # clean–corrupted gap, which random checkpoints keep small, so it is judged relative to scale / gap.
        scale = max(abs(float(c)), abs(float(k)), abs(float(noised)))
        d.add(metric, "evaluation faithfulness", [ev.faithfulness.faithfulness], [float((noised - k) / (c - k))],
              condition=scale / abs(float(c - k)))
        d.add(metric, "evaluation clean/corrupted/circuit means",
              [ev.faithfulness.clean_metric, ev.faithfulness.corrupted_metric, ev.faithfulness.circuit_metric],
              [float(c), float(k), float(noised)])
    return {"family": family, "n_layers": L, "n_heads": H, "n_prompts": len(prompts),
            "architecture": str(getattr(model.cfg, "original_architecture", "")),
            "skipped": skipped,
            "rows": [{"metric": m, "quantity": w, **v, "relative": v["max_abs_diff"] / max(v["max_abs_value"], FLOOR)}
                     for (m, w), v in d.rows.items()]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--families", nargs="+", default=list(FAMILIES))
    ap.add_argument("--n", type=int, default=6, help="prompts of the opposites task")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    torch.set_num_threads(1)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for fam in args.families:
            r = check_family(fam, Path(tmp), args.n)
            results.append(r)
            for row in r["rows"]:
                flag = "  <-- FAILS" if bad(row) else ("" if row["judged"] else "  (not judged)")
                print(f"{fam:8s} {row['metric']:10s} {row['quantity']:52s} max|diff| {row['max_abs_diff']:.2e} "
                      f"(max|value| {row['max_abs_value']:.2e}, relative {row['relative']:.1e}, {row['n']} values)"
                      f"{flag}", flush=True)
            for line in r["skipped"]:
                print(f"{fam:8s} {line}")
    rows = [row for r in results for row in r["rows"] if row["judged"]]
    worst = max(row["max_abs_diff"] for row in rows)
    worst_rel = max(row["relative"] for row in rows)
    failed = sum(bad(row) for row in rows)
    judged = lambda fam, m: [row for row in fam["rows"] if row["metric"] == m and row["judged"]]  # noqa: E731
    summary = {fam["family"]: {m: {"max_abs_diff": max(row["max_abs_diff"] for row in judged(fam, m)),
                                   "max_relative": max(row["relative"] for row in judged(fam, m))}
                               for m in METRICS} for fam in results}
    out = args.out or ROOT / "bench" / "results" / f"metrics-hooks-{datetime.date.today().isoformat()}.json"
    from importlib.metadata import version

    out.write_text(json.dumps({"tolerance": TOL, "worst": worst, "worst_relative": worst_rel, "passes": failed == 0,
                               "boost": BOOST, "n": args.n,
                               "torch": torch.__version__, "transformer_lens": version("transformer-lens"),
                               "max_abs_diff": summary, "families": results}, indent=1) + "\n")
    print(f"worst max|diff| {worst:.2e}, worst relative {worst_rel:.1e} (tolerance {TOL:g} each): "
          f"{'passes' if failed == 0 else f'{failed} FAIL'}; {out}")
    return 0 if failed == 0 else 1


def bad(row: dict[str, Any]) -> int:
    """1 where a quantity passes the tolerance, absolute or relative to its largest value (times its
    condition number: scale / gap for a normalised faithfulness)."""
    if not row.get("judged", True):
        return 0
    tol = TOL * max(1.0, row.get("condition", 1.0))
    return int(row["max_abs_diff"] > tol or row["relative"] > tol)


if __name__ == "__main__":
    sys.exit(main())
