"""Node- and neuron-level parity: circuitwise.circuits.neurons against hannamw/EAP-IG's ``attribute_node`` and
MIB's ``evaluate_area_under_curve(level="neuron")``.

The reference and its venv are bench/eap_ig_parity.py's (EAP-IG at 7af394a, MIB's circuit track, TransformerLens
2.15.4), as are the problems (checkpoints, tasks, one token length, the same token ids on both sides) and the
reference's model set-up (its ``WORKER`` up to its own measurements). The reference's ``eap/attribute_node.py``
allocates on ``'cuda'``; the worker loads a copy that allocates on the model's device (the one change).

Compared, per problem:

1. Node and neuron scores, EAP (gradient at the clean run) and EAP-IG-inputs (``ig_steps`` points α = k/n,
   k = 1…n: circuitwise ``quadrature="right"``), the reference run as MIB's ``run_attribution.py --level node|neuron``
   runs it (``logit_diff(mean=True, loss=True)``, batches of ``--batch-size``), its scores × the batch size against
   ours. circuitwise with ``mlp_gradient="input"`` (the reference's pairing of an MLP's output difference with the
   gradient at its input) must equal it everywhere; with the default ``"output"`` the input and head rows equal it
   and the MLP rows differ (reported: what the reference's choice changes).
2. Faithfulness of neuron circuits at MIB's ten budgets (``int(p · S · d_model)`` neurons), signed and absolute
   rankings: the reference's ``evaluate_area_under_curve(level="neuron")`` on the reference's EAP-IG neuron scores
   against circuitwise's ``evaluation.mib_units.mib_unit_metrics`` on the same scores; then the areas (CPR, CMD).
3. Files: circuitwise writes its neuron scores (and a node-level file) with ``write_unit_graph``, ``.json`` and
   ``.pt``; the reference loads them with ``Graph.from_json`` / ``from_pt`` (MIB's ``load_graph_from_json`` is the
   same code) and its loaded neuron scores are compared with ours, and its curve on them with ours.

Results: ``bench/results/neuron-parity-<date>.json``. Run (from the repository root; a few minutes on 2 shared cores):

    PYTHONPATH=/work/main .venv/bin/python bench/neuron_parity.py [--n 40] [--batch-size 20] [--steps 5]
        [--problems bundled random] [--out PATH]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT))
from bench import eap_ig_parity as ep  # noqa: E402
from bench._reference import circuitwise_state, run  # noqa: E402

PROBLEMS = ("bundled", "random", "bundled-llama")

WORKER_TAIL = r'''
import types
src = open(P["src"] + "/eap/attribute_node.py").read().replace("device='cuda'", "device=model.cfg.device")
mod = types.ModuleType("eap.attribute_node")
mod.__package__ = "eap"
mod.__file__ = P["src"] + "/eap/attribute_node.py"
sys.modules["eap.attribute_node"] = mod
exec(compile(src, mod.__file__, "exec"), mod.__dict__)
mod.tokenize_plus = tokenize_plus
attribute_node = mod.attribute_node

attribution_metric = partial(logit_diff, mean=True, loss=True)  # run_attribution.py
eval_metric = partial(logit_diff, mean=False, loss=False)  # run_evaluation.py
names = [n for n in Graph.from_model(model).nodes if n != "logits"]
out = {"nodes": names, "scores": {}, "wall_s": {}, "curves": {}, "files": {}}
for method in ("EAP", "EAP-IG-inputs"):
    for level in ("node", "neuron"):
        graph = Graph.from_model(model, neuron_level=level == "neuron", node_scores=level == "node")
        t0 = time.perf_counter()
        with contextlib.redirect_stderr(io.StringIO()):
            attribute_node(model, graph, loader, attribution_metric, method, "patching", ig_steps=P["steps"],
                           quiet=True, neuron=level == "neuron")
        out["wall_s"][f"{method}/{level}"] = time.perf_counter() - t0
        s = graph.neurons_scores if level == "neuron" else graph.nodes_scores
        out["scores"][f"{method}/{level}"] = s.tolist()
        if method == "EAP-IG-inputs" and level == "neuron":
            ref_graph = graph


def curve(graph):
    res = {}
    for absolute in (False, True):
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            counts, area_under, area_from_1, average, faith = evaluate_area_under_curve(
                model, graph, loader, eval_metric, quiet=True, level="neuron", absolute=absolute)
        res["abs" if absolute else "signed"] = {"area_under": area_under, "area_from_1": area_from_1,
                                                  "faithfulness": faith, "weighted_edge_counts": counts}
    return res


t0 = time.perf_counter()
out["curves"]["reference_scores"] = curve(ref_graph)
out["wall_s"]["curve"] = time.perf_counter() - t0
for key, path in P["files"].items():
    g = Graph.from_json(path) if path.endswith(".json") else Graph.from_pt(path)
    entry = {"neurons_scores": None if g.neurons_scores is None else g.neurons_scores.tolist(),
             "nodes_scores": None if g.nodes_scores is None else g.nodes_scores.tolist(),
             "neurons_in_graph": None if g.neurons_in_graph is None else int(g.neurons_in_graph.sum()),
             "nodes_in_graph": int(g.nodes_in_graph.sum())}
    if key.startswith("neuron"):
        entry["curve"] = curve(g)
    out["files"][key] = entry
json.dump(out, open(sys.argv[2], "w"))
'''


def worker_source() -> str:
    """The reference's model and batches (eap_ig_parity's worker up to its own measurements), then ours."""
    head = ep.WORKER.split("\nwith torch.no_grad():\n    ld = ")[0]
    return head + "\n" + WORKER_TAIL


def ours(problem: dict[str, Any], steps: int, work: Path) -> dict[str, Any]:
    import time

    from circuitwise.circuits.neurons import score_neurons, write_unit_graph

    model, tok = problem["model"], problem["tok"]
    out: dict[str, Any] = {"scores": {}, "wall_s": {}}
    runs = (("eap", {"method": "eap"}), ("eap-ig", {"method": "eap-ig", "steps": steps, "quadrature": "right"}))
    for key, opts in runs:
        for mlp in ("input", "output"):
            t0 = time.perf_counter()
            out["scores"][f"{key}/{mlp}"] = score_neurons(model, tok, mlp_gradient=mlp, **opts)
            out["wall_s"][f"{key}/{mlp}"] = time.perf_counter() - t0
    ns = out["scores"]["eap-ig/input"]
    out["files"] = {}
    for name, level in (("neuron.json", "neuron"), ("neuron.pt", "neuron"), ("node.json", "node"), ("node.pt", "node")):
        out["files"][name] = str(write_unit_graph(work / f"{problem['name']}-{name}", ns, level=level))  # type: ignore[arg-type]
    return out


def our_curve(problem: dict[str, Any], scores: Any) -> dict[str, Any]:
    """circuitwise's faithfulness at MIB's budgets for neuron scores ``scores`` (evaluation.mib_units)."""
    from circuitwise.evaluation.mib_units import mib_unit_metrics

    r = mib_unit_metrics(problem["model"], problem["tok"], scores, level="neuron")
    return {by: {"n_neurons": c.n_units, "faithfulness": c.faithfulness, **{k: c.to_json()[k] for k in
                                                                          ("area_under", "area_from_1")}}
            for by, c in (("signed", r.signed), ("abs", r.absolute))}


def compare(mine: Any, theirs: Any, scale: float, rows: Any = None) -> dict[str, Any]:
    import torch

    a = torch.as_tensor(mine, dtype=torch.float64).flatten() if rows is None else \
        torch.as_tensor(mine, dtype=torch.float64)[rows].flatten()
    t = torch.as_tensor(theirs, dtype=torch.float64) * scale
    b = t.flatten() if rows is None else t[rows].flatten()
    d = (a - b).abs()
    return {"n": int(a.numel()), "max_abs_diff": float(d.max()), "max_abs_score": float(a.abs().max()),
            "max_rel_diff": float(d.max() / a.abs().max()), "pearson": float(torch.corrcoef(torch.stack([a, b]))[0, 1]),
            "same_ranking_abs": bool(torch.equal(torch.argsort(a.abs(), descending=True, stable=True),
                                                 torch.argsort(b.abs(), descending=True, stable=True)))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=40, help="prompts per problem")
    ap.add_argument("--batch-size", type=int, default=20, help="the reference's batch size (MIB's default 20)")
    ap.add_argument("--steps", type=int, default=5, help="EAP-IG steps (MIB's default 5)")
    ap.add_argument("--problems", nargs="*", default=list(PROBLEMS), choices=list(ep.PROBLEMS))
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    py, why = ep.ensure_reference()
    print(f"reference: {'venv ' + str(ep.VENV) if py else 'NOT AVAILABLE: ' + why}", flush=True)
    if py is None:
        sys.exit(1)
    import torch

    from circuitwise.circuits.interop import node_name
    from circuitwise.circuits.neurons import NeuronScores

    torch.set_num_threads(1)
    work = Path(tempfile.mkdtemp(prefix="neuron-parity-"))
    result: dict[str, Any] = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "reference": {"eap_ig": {"repo": ep.EAP_REPO, "commit": ep.EAP_COMMIT},
                      "mib_circuit_track": {"repo": ep.MIB_REPO, "commit": ep.MIB_COMMIT}},
        "n_prompts": args.n, "batch_size": args.batch_size, "steps": args.steps, "torch_threads": 1,
        "circuitwise": circuitwise_state(), "problems": {}}
    script = work / "neuron_worker.py"
    script.write_text(worker_source(), encoding="utf-8")
    for name in args.problems:
        problem = ep.build_problem(name, args.n, work)
        mine = ours(problem, args.steps, work)
        g = mine["scores"]["eap/input"].graph
        mlp = torch.tensor([s.kind == "mlp" for s in g.senders])
        print(f"\n{name}: {len(problem['prompts'])} prompts of {len(problem['tokens_clean'][0])} tokens; "
              f"{len(g.senders)} nodes × d_model {mine['scores']['eap/input'].d_model}", flush=True)
        pf = work / f"{name}-problem.json"
        pf.write_text(json.dumps({"ckpt": problem["ckpt"], "family": problem["family"], "src": str(ep.SRC),
                                  "steps": args.steps, "batch_size": args.batch_size,
                                  "tokens_clean": problem["tokens_clean"],
                                  "tokens_corrupted": problem["tokens_corrupted"],
                                  "labels": problem["labels"], "files": mine["files"]}))
        outf, log = work / f"{name}-reference.json", work / f"{name}-reference.log"
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "1",
               "PYTHONPATH": ""}
        entry: dict[str, Any] = {"checkpoint": Path(problem["ckpt"]).name, "family": problem["family"],
                                 "task": problem["tok"].task.name, "n_prompts": len(problem["prompts"]),
                                 "n_nodes": len(g.senders), "d_model": mine["scores"]["eap/input"].d_model}
        if run([str(py), str(script), str(pf), str(outf)], log, env=env):
            tail = log.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-15:]
            print("  the reference failed:\n" + "\n".join(tail))
            entry["reference_error"] = "\n".join(tail)
            result["problems"][name] = entry
            continue
        theirs = json.loads(outf.read_text())
        assert theirs["nodes"] == [node_name(s) for s in g.senders]
        B = float(args.batch_size)
        entry["scores"] = {}
        for key, ref in (("eap", "EAP"), ("eap-ig", "EAP-IG-inputs")):
            for level in ("neuron", "node"):
                ref_s = theirs["scores"][f"{ref}/{level}"]
                c: dict[str, Any] = {}
                for mlp_mode in ("input", "output"):
                    ns = mine["scores"][f"{key}/{mlp_mode}"]
                    s = ns.scores if level == "neuron" else ns.node_scores().scores
                    c[f"mlp_gradient={mlp_mode}"] = compare(s, ref_s, B)
                    c[f"mlp_gradient={mlp_mode}"]["non_mlp_rows"] = compare(s, ref_s, B, ~mlp)
                    c[f"mlp_gradient={mlp_mode}"]["mlp_rows"] = compare(s, ref_s, B, mlp)
                c["wall_s_reference"] = theirs["wall_s"][f"{ref}/{level}"]
                c["wall_s_circuitwise_both_levels"] = mine["wall_s"][f"{key}/input"]
                entry["scores"][f"{key}/{level}"] = c
                i, o = c["mlp_gradient=input"], c["mlp_gradient=output"]
                print(f"  {key:6s} {level:6s} mlp_gradient=input: max|Δ| {i['max_abs_diff']:.2e} "
                      f"(rel {i['max_rel_diff']:.1e}), "
                      f"Pearson {i['pearson']:.9f}, same |ranking| {i['same_ranking_abs']}; "
                      f"=output: non-MLP rel {o['non_mlp_rows']['max_rel_diff']:.1e}, MLP rows rel "
                      f"{o['mlp_rows']['max_rel_diff']:.1e}", flush=True)
        # Faithfulness: the reference's EAP-IG neuron scores, evaluated by both sides.
        ref_ns = NeuronScores(g, torch.tensor(theirs["scores"]["EAP-IG-inputs/neuron"], dtype=torch.float32) * B,
                              "eap-ig")
        ours_c = our_curve(problem, ref_ns)
        ref_c = theirs["curves"]["reference_scores"]
        entry["faithfulness"] = {}
        for by in ("signed", "abs"):
            f_o, f_r = ours_c[by]["faithfulness"], ref_c[by]["faithfulness"]
            diff = max(abs(x - y) for x, y in zip(f_o, f_r, strict=True))
            entry["faithfulness"][by] = {"n_neurons": ours_c[by]["n_neurons"], "circuitwise": f_o, "reference": f_r,
                                         "max_abs_diff": diff,
                                         "area_under": [ours_c[by]["area_under"], ref_c[by]["area_under"]],
                                         "area_from_1": [ours_c[by]["area_from_1"], ref_c[by]["area_from_1"]]}
            print(f"  faithfulness ({by}) at MIB's budgets: max|Δ| {diff:.1e}; "
                  f"area_under cw {ours_c[by]['area_under']:.6f} "
                  f"ref {ref_c[by]['area_under']:.6f}; area_from_1 cw {ours_c[by]['area_from_1']:.6f} "
                  f"ref {ref_c[by]['area_from_1']:.6f}", flush=True)
        # Files: what EAP-IG loads from ours.
        ns = mine["scores"]["eap-ig/input"]
        files: dict[str, Any] = {}
        for key, got in theirs["files"].items():
            want = ns.scores if key.startswith("neuron") else ns.node_scores().scores
            have = got["neurons_scores"] if key.startswith("neuron") else got["nodes_scores"]
            files[key] = {"loaded": have is not None,
                          "max_abs_diff": None if have is None else float((torch.tensor(have) - want).abs().max())}
            if key == "neuron.json" and have is not None:
                # EAP-IG's from_json indexes a head's row with forward_index's default attn_slice=True: every
                # head of a layer gets the row written last, the layer's last head's.
                last = want.clone()
                for l in range(g.n_layers):
                    sl = g.head_senders(l)
                    last[sl] = want[sl.stop - 1]
                files[key]["max_abs_diff_to_last_head_rows"] = float((torch.tensor(have) - last).abs().max())
            if "curve" in got:
                ours_file = our_curve(problem, ns)
                files[key]["faithfulness_max_abs_diff"] = {
                    by: max(abs(x - y) for x, y in zip(ours_file[by]["faithfulness"], got["curve"][by]["faithfulness"],
                                                       strict=True)) for by in ("signed", "abs")}
            print(f"  EAP-IG loads our {key}: scores max|Δ| {files[key]['max_abs_diff']}"
                  + (f" (to each layer's last head's row: {files[key]['max_abs_diff_to_last_head_rows']})"
                     if "max_abs_diff_to_last_head_rows" in files[key] else "")
                  + (f"; its curve on it vs ours max|Δ| {files[key]['faithfulness_max_abs_diff']}"
                     if "curve" in got else ""), flush=True)
        entry["files"] = files
        result["problems"][name] = entry
        result["versions_reference"] = "see eap-ig-parity results (same venv)"
    out = args.out or ROOT / "bench" / "results" / f"neuron-parity-{datetime.date.today().isoformat()}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(f"\nwrote {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}")


if __name__ == "__main__":
    main()
