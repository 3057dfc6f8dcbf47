"""MIB's circuit form: ``circuitwise mib --form circuits`` folders loaded and evaluated by MIB's own code.

For each problem of ``bench/eap_ig_parity.py`` (the same checkpoints, tasks, token ids and reference
venv: hannamw/EAP-IG at 7af394a and hannamw/MIB-circuit-track at b759df3, run under TransformerLens
2.15.4) circuitwise writes one pair folder with
:func:`circuitwise.evaluation.mib_submission.run_pair` (method ``eap-ig``, ``form="circuits"``), once
per ranking (``by`` = ``abs`` and ``signed``), and the importance file of the same scores
(``form="scores"``). The reference then, in its own venv:

1. loads each of the nine circuit files with its ``Graph.from_json`` and with MIB's
   ``circuit_loading.load_graph_from_json`` (both must give the same edges), counts the edges in the
   graph as loaded, runs ``evaluate_graph`` on it (which runs EAP-IG's ``prune()`` first) and counts
   them again: the count must not change (the files are already pruned) and must be within the
   budget (``int(b · E)``, MIB's README's rule);
2. computes each circuit's faithfulness as ``evaluate_area_under_curve`` does,
   ``(m(C) − m(∅)) / (m(N) − m(∅))`` with ``evaluate_baseline`` for ``m(N)`` and ``evaluate_graph`` of
   the empty graph (``apply_topn(0)``) for ``m(∅)``, the full graph (every edge) as the 100 % point,
   and CPR / CMD with that function's trapezoid (its loop, restated: the function itself ranks by
   score and takes no circuits);
3. runs ``evaluate_area_under_curve`` on the importance file of the same scores with the same
   ranking (``absolute = by == "abs"``): its faithfulness at each budget must be the circuits', since a
   budget's circuit is the top edges of that ranking, pruned.

Compared with circuitwise's numbers in the leaderboard entry (``PairResult``): faithfulness per
budget, CPR, CMD, edge counts; and :func:`check_layout` on the folder (MIB's rules for the circuit
form). Results: ``bench/results/mib-circuits-form-<date>.json``. Run (about 2 minutes on 2 shared
cores; the reference venv is made by eap_ig_parity.py on first use):

    PYTHONPATH=/work/main .venv/bin/python bench/mib_circuits_form.py [--n 40] [--batch-size 20]
        [--problems random bundled bundled-llama random-llama random-qwen] [--out PATH]
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
from bench._reference import circuitwise_state, run  # noqa: E402
from bench.eap_ig_parity import (  # noqa: E402
    EAP_COMMIT,
    EAP_REPO,
    MIB_COMMIT,
    MIB_REPO,
    PROBLEMS,
    SRC,
    WORKER_MODEL,
    build_problem,
    ensure_reference,
)

RANKINGS = ("abs", "signed")

WORKER = WORKER_MODEL + r'''
from eap.evaluate import evaluate_baseline, evaluate_graph
from MIB_circuit_track.circuit_loading import load_graph_from_json
metric = partial(logit_diff, mean=False, loss=False)  # run_evaluation.py


def quiet(f, *a, **k):
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        return f(*a, **k)


def m(graph):
    return quiet(evaluate_graph, model, graph, loader, metric, quiet=True).mean().item()


def trapezoid(budgets, f):
    """evaluate_area_under_curve's two areas (its loop, linear axis)."""
    under = sum((budgets[i + 1] - budgets[i]) * (f[i] + f[i + 1]) / 2 for i in range(len(f) - 1))
    from_1 = sum((budgets[i + 1] - budgets[i]) * (abs(1 - f[i]) + abs(1 - f[i + 1])) / 2 for i in range(len(f) - 1))
    return under, from_1


baseline = quiet(evaluate_baseline, model, loader, metric).mean().item()
empty = Graph.from_model(model)
empty.apply_topn(0, True)
corrupted = m(empty)
full = Graph.from_model(model)
full.reset(empty=False)
full_metric = m(full)
out = {"baseline": baseline, "corrupted": corrupted, "full_graph_metric": full_metric, "by": {}}
for by, spec in P["folders"].items():
    rows = []
    for budget, path in spec["files"]:
        g = Graph.from_json(path)
        g2 = load_graph_from_json(path)
        same_loaders = bool(torch.equal(g.in_graph, g2.in_graph))
        before = int(g.count_included_edges())
        score = m(g)  # evaluate_graph prunes the loaded graph first
        rows.append({"budget": budget, "file": path.rsplit("/", 1)[-1], "edges_as_loaded": before,
                     "edges_after_mibs_prune": int(g.count_included_edges()), "total_edges": len(g.edges),
                     "both_loaders_same_edges": same_loaders, "metric": score,
                     "faithfulness": (score - corrupted) / (baseline - corrupted)})
    f = [r["faithfulness"] for r in rows] + [(full_metric - corrupted) / (baseline - corrupted)]
    budgets = [r["budget"] for r in rows] + [1.0]
    cpr, cmd = trapezoid(budgets, f)
    scored = Graph.from_json(spec["importances"])
    counts, under, from_1, _, faith = quiet(evaluate_area_under_curve, model, scored, loader, metric, quiet=True,
                                            absolute=by == "abs")
    out["by"][by] = {"circuits": rows, "faithfulness": f, "cpr": cpr, "cmd": cmd,
                     "from_scores": {"faithfulness": faith, "weighted_edge_counts": counts, "area_under": under,
                                     "area_from_1": from_1}}
json.dump(out, open(sys.argv[2], "w"))
'''


def write_folders(problem: dict[str, Any], out: Path, steps: int) -> dict[str, Any]:
    """circuitwise's circuit-form folders (one per ranking) and the importance file of the same scores."""
    from circuitwise.evaluation.mib_submission import CIRCUIT_BUDGETS, check_layout, circuit_file, run_pair

    model, tok = problem["model"], problem["tok"]
    res: dict[str, Any] = {}
    opts = {"steps": steps}
    scores_pair = run_pair(model, tok, method="eap-ig", task="t", model_name="scores", out=out, options=opts)
    for by in RANKINGS:
        r = run_pair(model, tok, method="eap-ig", task="t", model_name=f"by-{by}", out=out, options=opts,
                     form="circuits", by=by)  # type: ignore[arg-type]
        folder = out / r.file
        res[by] = {"pair": r.to_json(), "layout_problems": check_layout(out, ["eap-ig"]),
                   "files": [[b, str(folder / circuit_file(b))] for b in CIRCUIT_BUDGETS],
                   "importances": str(out / scores_pair.file)}
    return res


def compare(mine: dict[str, Any], theirs: dict[str, Any]) -> dict[str, Any]:
    pair = mine["pair"]
    f_ours, f_ref = pair["faithfulness"], theirs["faithfulness"]
    rows = theirs["circuits"]
    return {
        "cpr_circuitwise": pair["cpr"], "cpr_reference": theirs["cpr"], "cpr_diff": pair["cpr"] - theirs["cpr"],
        "cmd_circuitwise": pair["cmd"], "cmd_reference": theirs["cmd"], "cmd_diff": pair["cmd"] - theirs["cmd"],
        "faithfulness_max_diff": max(abs(a - b) for a, b in zip(f_ours, f_ref, strict=True)),
        "faithfulness_vs_reference_curve_on_scores_max_diff":
            max(abs(a - b) for a, b in zip(f_ours, theirs["from_scores"]["faithfulness"], strict=True)),
        "faithfulness": {"circuitwise": f_ours, "reference_on_files": f_ref,
                         "reference_curve_on_scores": theirs["from_scores"]["faithfulness"]},
        "edges_circuitwise": pair["edges"], "edges_as_loaded": [r["edges_as_loaded"] for r in rows],
        "edges_after_mibs_prune": [r["edges_after_mibs_prune"] for r in rows],
        "edges_budget": pair["edges_taken"],
        "mib_apply_topn_count_circuitwise": pair["mib_edge_count"],
        "mib_apply_topn_count_reference": theirs["from_scores"]["weighted_edge_counts"][:-1],
        "counts_equal": pair["edges"] == [r["edges_as_loaded"] for r in rows] == [r["edges_after_mibs_prune"]
                                                                                   for r in rows],
        "within_budget": all(r["edges_as_loaded"] <= t for r, t in zip(rows, pair["edges_taken"], strict=True)),
        "both_loaders_agree": all(r["both_loaders_same_edges"] for r in rows),
        # One task per problem here: MIB's "at least 2 tasks and 2 models" is the only rule it may not meet.
        "layout_problems": [p for p in mine["layout_problems"] if "at least 2 tasks" not in p],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=40)
    ap.add_argument("--batch-size", type=int, default=20, help="the reference's batch size (MIB's default 20)")
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--problems", nargs="*", default=list(PROBLEMS), choices=list(PROBLEMS))
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    py, why = ensure_reference()
    if py is None:
        sys.exit(f"reference not available: {why}")
    import torch

    torch.set_num_threads(1)
    work = Path(tempfile.mkdtemp(prefix="mib-circuits-form-"))
    result: dict[str, Any] = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "reference": {"eap_ig": {"repo": EAP_REPO, "commit": EAP_COMMIT},
                      "mib_circuit_track": {"repo": MIB_REPO, "commit": MIB_COMMIT}},
        "method": "eap-ig", "n_prompts": args.n, "batch_size": args.batch_size, "steps": args.steps,
        "circuitwise": circuitwise_state(), "problems": {}}
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PYTHONPATH": ""}
    script = work / "worker.py"
    script.write_text(WORKER, encoding="utf-8")
    for name in args.problems:
        problem = build_problem(name, args.n, work)
        mine = write_folders(problem, work / f"{name}-submission", args.steps)
        pf, outf, log = (work / f"{name}-{x}" for x in ("problem.json", "reference.json", "reference.log"))
        pf.write_text(json.dumps({"ckpt": problem["ckpt"], "family": problem["family"], "src": str(SRC),
                                  "batch_size": args.batch_size, "tokens_clean": problem["tokens_clean"],
                                  "tokens_corrupted": problem["tokens_corrupted"], "labels": problem["labels"],
                                  "folders": {by: {"files": m["files"], "importances": m["importances"]}
                                              for by, m in mine.items()}}))
        entry: dict[str, Any] = {"checkpoint": Path(problem["ckpt"]).name, "family": problem["family"],
                                 "task": problem["tok"].task.name, "n_edges": mine["abs"]["pair"]["total_edges"]}
        if run([str(py), str(script), str(pf), str(outf)], log, env=env):
            entry["reference_error"] = "\n".join(log.read_text(errors="replace").strip().splitlines()[-15:])
            print(f"{name}: the reference failed:\n{entry['reference_error']}")
            result["problems"][name] = entry
            continue
        theirs = json.loads(outf.read_text())
        entry["reference_ends"] = {k: theirs[k] for k in ("baseline", "corrupted", "full_graph_metric")}
        entry["by"] = {by: compare(mine[by], theirs["by"][by]) for by in RANKINGS}
        for by, c in entry["by"].items():
            print(f"{name} by {by}: CPR cw {c['cpr_circuitwise']:.6f} ref {c['cpr_reference']:.6f} "
                  f"(Δ {c['cpr_diff']:.1e}); CMD cw {c['cmd_circuitwise']:.6f} ref {c['cmd_reference']:.6f} "
                  f"(Δ {c['cmd_diff']:.1e}); max|Δf| files {c['faithfulness_max_diff']:.1e}, vs MIB's curve on "
                  f"the scores {c['faithfulness_vs_reference_curve_on_scores_max_diff']:.1e}; edges "
                  f"{c['edges_circuitwise']} (budget {c['edges_budget']}), counts equal {c['counts_equal']}, "
                  f"within budget {c['within_budget']}, loaders agree {c['both_loaders_agree']}; MIB's apply_topn "
                  f"count {c['mib_apply_topn_count_reference']}; layout problems {c['layout_problems']}", flush=True)
        result["problems"][name] = entry
    out = args.out or ROOT / "bench" / "results" / f"mib-circuits-form-{datetime.date.today().isoformat()}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(f"wrote {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}")


if __name__ == "__main__":
    main()
