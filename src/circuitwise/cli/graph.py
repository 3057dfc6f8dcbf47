"""`circuitwise graph`: a feature-level attribution graph of one prompt (or a task's prompt), written out.

The run folder gets ``graph.json`` (circuitwise's graph file, which the page and the notebook read),
``neuronpedia.json`` (Neuronpedia's graph JSON, schema 1.0.0: upload it, or open it in circuit-
tracer's viewer) and ``graph.html`` (the self-contained page). What it will do is printed first;
bad options, a missing transcoder set, a prompt given ``--target metric`` are refused before the
model loads.
"""

from __future__ import annotations

import inspect
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import typer
from rich.text import Text

from circuitwise.cli import app, console, err_console, show_note
from circuitwise.cli import options as opts
from circuitwise.features.checks import DEFAULT_CHECK_FEATURES, DEFAULT_HEAD_LINKS
from circuitwise.features.contexts import DEFAULT_CONTEXTS, DEFAULT_CORPUS_LINES, DEFAULT_TASK_TEXTS

F = opts.F
FILES = ("graph.json", "neuronpedia.json", "graph.html")
TARGET_HELP = ("What the graph explains: metric (the task's logit difference, correct − incorrect answer; tasks "
               "only), salient (the most likely next tokens, to 95% of the probability, at most 10), or one token "
               "as it follows the prompt (e.g. ' young', with its leading space). [default: metric for a task, "
               "salient for a prompt]")


def _task_graph_default(name: str) -> Any:
    """features.task_graph's own default for ``name``."""
    from circuitwise.features.task_graph import task_graph

    return inspect.signature(task_graph).parameters[name].default


def _prune_default(name: str) -> float:
    """The engine's default threshold (features.prune.prune_graph's own: defaults live once)."""
    from circuitwise.features.prune import prune_graph

    value = inspect.signature(prune_graph).parameters[name].default
    return float(value)


@dataclass(frozen=True)
class GraphRequest:
    """What the command was asked, decided before any model loads."""

    subject: str  # the task's name or the prompt
    is_task: bool
    prompt: str
    example: int
    texts: tuple[str, ...]  # where the features' contexts come from (the task's first prompts, or the prompt)
    n_prompts: int  # how many prompts the task has
    target: str  # metric | salient | a token
    answers: tuple[str, str] | None  # a task example's (correct, incorrect)
    task: Any = None  # the Task (a whole-task graph reads it)
    whole: bool = False  # one graph over the task's prompts (features.task_graph), not one prompt's


def _is_file(path: Path) -> bool:
    """Whether ``path`` is a file; a prompt longer than a file name may be (255 bytes) is not one."""
    try:
        return path.is_file()
    except OSError:  # ENAMETOOLONG: a long prompt was answered with a traceback
        return False


def _is_task(text: str) -> bool:
    from circuitwise.tasks.builtin import specs

    path = Path(text)
    return text in {s.name for s in specs()} or (len(text) < 4096 and "\n" not in text and
                                (path.suffix.lower() in (".jsonl", ".csv", ".yaml", ".yml") or _is_file(path)))


def resolve(subject: str, target: str | None, example: int, n: int | None, seed: int | None,
            split: str | None, context_prompts: int = DEFAULT_TASK_TEXTS, whole: bool = False) -> GraphRequest:
    """The prompt and targets of ``subject`` (a built-in task, a task file, or a prompt); errors say the fix."""
    from circuitwise.errors import ConfigError
    from circuitwise.tasks import get_task

    if not subject.strip():
        raise ConfigError("Give a task (e.g. opposites), a task file, or a prompt in quotes.")
    if not _is_task(subject):
        if target == "metric":
            raise ConfigError(f"--target metric needs a task (its answers define the metric); {subject!r} is a "
                              "prompt. Use --target salient, or --target ' TOKEN' for one answer token.")
        if n is not None or split is not None:
            raise ConfigError("--n and --split choose a task's prompts; this graph is of one prompt. Leave them out.")
        if whole:
            raise ConfigError(f"--whole-task needs a task; {subject!r} is a prompt. Leave --whole-task out, or "
                              "name a task (`circuitwise tasks` lists them).")
        return GraphRequest(subject, False, subject, 0, (subject,), 1, target or "salient", None)
    if whole and target not in (None, "metric"):
        raise ConfigError(f"--whole-task explains the task's metric (correct − incorrect answer in every prompt); "
                          f"--target {target!r} is one prompt's. Leave --target out, or drop --whole-task.")
    options = {k: v for k, v in dict(n=n, seed=seed, split=split).items() if v is not None}
    task = get_task(subject, **options)
    examples = task.examples
    if not 0 <= example < len(examples):
        raise ConfigError(f"--example {example} is outside the task's {len(examples)} prompts "
                          f"(0 … {len(examples) - 1}).")
    ex = examples[example]
    texts = tuple(e.clean for e in examples[:context_prompts])
    return GraphRequest(task.name, True, ex.clean, example, texts, len(examples), target or "metric",
                        (ex.correct, ex.incorrect), task, whole)


def _targets(req: GraphRequest) -> Any:
    from circuitwise.features.attribute import LogitDiff, Salient, Tokens

    if req.target == "metric":
        assert req.answers is not None  # resolve() refuses metric for a prompt
        return LogitDiff(*req.answers)
    if req.target == "salient":
        return Salient()
    return Tokens((req.target,))


def _corpus(path: Path | None, limit: int) -> tuple[str, ...]:
    from circuitwise.errors import ConfigError

    if path is None:
        return ()
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"Cannot read --corpus {path}: {e}. Give a UTF-8 text file, one context per line.") from None
    texts = tuple(line for line in lines if line.strip())[:limit]
    if not texts:
        raise ConfigError(f"--corpus {path} has no text: give a file with one context per line.")
    return texts


def _texts_said(req: GraphRequest) -> str:
    if len(req.texts) < req.n_prompts:
        return f"the first {len(req.texts)} of the task's {req.n_prompts} prompts (--context-prompts)"
    return f"{len(req.texts)} task prompt{'s' if len(req.texts) != 1 else ''}"


@dataclass(frozen=True)
class CheckRequest:
    """The checks asked for (features.checks): ablations, head loadings, an edge circuit's heads to mark."""

    features: int = DEFAULT_CHECK_FEATURES
    links: int = DEFAULT_HEAD_LINKS
    circuit: Path | None = None
    circuit_file: Any = None  # the CircuitFile, read before the model loads
    heads: tuple[str, ...] = ()  # the circuit's heads (L{m}H{h})

    def said(self, whole: bool) -> str:
        if whole:
            return ("checks: none (interventions and head loadings need one prompt's activations and attention; "
                    "a task graph averages many)")
        parts = [f"ablate the {self.features} most influential kept features one by one in the unfrozen model"
                 if self.features else "no single-feature ablations (--check-features 0)",
                 "the kept features' faithfulness"]
        if self.links:
            parts.append(f"which heads carry the {self.links} strongest links between positions")
        if self.circuit is not None:
            parts.append(f"marked against the {len(self.heads)} heads of the circuit {self.circuit}")
        return "checks: " + "; ".join(parts)


def _check_request(features: int | None, links: int | None, circuit: Path | None, whole: bool) -> CheckRequest:
    """The checks asked for, refused before the model loads where they cannot be done."""
    import re

    from circuitwise.errors import ConfigError
    from circuitwise.schema import load_circuit_file

    if whole and (features or links or circuit is not None):
        given = [flag for flag, v in (("--check-features", features), ("--head-links", links),
                                      ("--edge-circuit", circuit)) if v]
        raise ConfigError(f"{', '.join(given)}: the checks need one prompt's graph (its activations and attention "
                          "patterns); --whole-task averages many. Drop --whole-task (graph one --example), or "
                          "leave them out.")
    links = DEFAULT_HEAD_LINKS if links is None else links
    if circuit is None:
        return CheckRequest(DEFAULT_CHECK_FEATURES if features is None else features, links)
    if links == 0:
        raise ConfigError("--edge-circuit marks the circuit's heads among those that carry the graph's links; "
                          "--head-links 0 computes none. Give --head-links N (N > 0), or leave --edge-circuit out.")
    cf = load_circuit_file(circuit)  # a missing or malformed file fails here, before any model loads
    heads = tuple(sorted({n for n in cf.nodes if re.fullmatch(r"L\d+H\d+", n)},
                         key=lambda x: tuple(int(v) for v in re.findall(r"\d+", x))))
    return CheckRequest(DEFAULT_CHECK_FEATURES if features is None else features, links, circuit, cf, heads)


def _plan_lines(req: GraphRequest, model: str, transcoders: str, node_t: float, edge_t: float,
                corpus: tuple[str, ...], out: Path, graph_prompts: int = 0, align: str = "",
                checks: CheckRequest | None = None) -> list[str]:
    what = (f"prompt {req.example} of task {req.subject}: {req.prompt!r}" if req.is_task else f"prompt {req.prompt!r}")
    if req.whole:
        what = (f"task {req.subject}: the graphs of its first {min(graph_prompts, req.n_prompts)} prompts, nodes "
                f"aligned by {align} position, averaged")
    target = {"metric": f"the logit difference {req.answers[0]!r} − {req.answers[1]!r}" if req.answers else "",
              "salient": "the most likely next tokens"}.get(req.target, f"the logit of {req.target!r}")
    contexts = _texts_said(req) if req.is_task else "the prompt"
    if corpus:
        contexts += f" and {len(corpus)} corpus lines"
    return [f"graph of {what}",
            f"model {model}, transcoders {transcoders}",
            f"target: {target}",
            f"pruned to node threshold {node_t:g}, edge threshold {edge_t:g}",
            f"top activating contexts from {contexts}",
            *([checks.said(req.whole)] if checks is not None else []),
            f"writes {', '.join(FILES)} to {out}"]


@app.command()
def graph(
    task_or_prompt: str = typer.Argument(..., help="A built-in task (its --example'th prompt is graphed), a task "
                                                   "file, or a prompt in quotes; or a graph file to draw (a "
                                                   "graph.json, or Neuronpedia's / circuit-tracer's graph JSON)."),
    model: str = typer.Option(F["model"].default, "--model", "-m", help=F["model"].description),
    transcoders: str | None = typer.Option(None, "--transcoders", "-t", show_default=False,
                                           help="The transcoders that replace the MLPs: a folder (circuitwise's or "
                                                "circuit-tracer's layout) or bundled / bundled-llama, the sets "
                                                "shipped for the bundled models. [default: none; needed unless a "
                                                "graph file is drawn]"),
    target: str | None = typer.Option(None, "--target", help=TARGET_HELP, show_default=False),
    node_threshold: float | None = typer.Option(None, "--node-threshold", min=0.0, max=1.0, show_default=False,
                                                   help="Keep the fewest features and error nodes holding this share "
                                                        "of the total influence (tokens and targets always stay). "
                                                        f"[default: {_prune_default('node_threshold')}]"),
    edge_threshold: float | None = typer.Option(None, "--edge-threshold", min=0.0, max=1.0, show_default=False,
                                                   help="Keep the fewest links holding this share of the total link "
                                                        f"influence. [default: {_prune_default('edge_threshold')}]"),
    example: int = typer.Option(0, "--example", min=0, help="Which of the task's prompts to graph (from 0)."),
    whole_task: bool = typer.Option(False, "--whole-task", help="One graph over the task: each of its first "
                                    "--graph-prompts prompts' graphs (target: the task's metric), nodes aligned "
                                    "across prompts by --align, averaged. [default: off]"),
    graph_prompts: int = typer.Option(16, "--graph-prompts", min=1, help="--whole-task: how many of the task's "
                                      "prompts are graphed (one graph each)."),
    align: str = typer.Option(_task_graph_default("align"), "--align", help="--whole-task: relative (a position "
                              "is its offset from the answer position) or role (named by the task's roles, "
                              "e.g. ADJ+1)."),
    corpus: Path | None = typer.Option(None, "--corpus", help="A text file, one context per line: features' top "
                                          "activating contexts are also looked for there. [default: none]"),
    corpus_lines: int = typer.Option(DEFAULT_CORPUS_LINES, "--corpus-lines", min=1,
                                     help="Read at most this many corpus lines."),
    context_prompts: int = typer.Option(DEFAULT_TASK_TEXTS, "--context-prompts", min=1,
                                        help="Look for contexts in at most this many of the task's prompts (one "
                                             "forward each)."),
    contexts: int = typer.Option(DEFAULT_CONTEXTS, "--contexts", min=0,
                                 help="Top activating contexts kept per feature and source."),
    check_features: int | None = typer.Option(None, "--check-features", min=0, show_default=False,
                                              help="Ablate this many of the kept graph's most influential features, "
                                                   "one at a time, in the unfrozen model, against what the graph "
                                                   f"predicts; 0: none. [default: {DEFAULT_CHECK_FEATURES}]"),
    head_links: int | None = typer.Option(None, "--head-links", min=0, show_default=False,
                                          help="Split this many of the strongest links between positions by the "
                                               "attention heads that carry them (L{m}H{h}); 0: none. "
                                               f"[default: {DEFAULT_HEAD_LINKS}]"),
    edge_circuit: Path | None = typer.Option(None, "--edge-circuit", show_default=False,
                                             help="A circuit.json (or its folder) of `circuitwise circuit` on the "
                                                  "same model: its heads are marked among those that carry the "
                                                  "graph's links. [default: none]"),
    scan: str | None = typer.Option(None, "--scan", help="The model's id on Neuronpedia, written as the "
                                       "Neuronpedia file's scan. [default: the model's name]", show_default=False),
    out: Path = typer.Option(Path("runs/graph"), "--out", "-o", help="Folder for graph.json, neuronpedia.json, "
                             "graph.html."),
    device: str | None = opts.DEVICE,
    dtype: str | None = opts.DTYPE,
    max_memory: str | None = opts.MAX_MEMORY,
    n: int | None = opts.N,
    seed: int | None = opts.SEED,
    split: str | None = opts.SPLIT,
    processing: bool | None = opts.PROCESSING,
    force: bool = opts.FORCE,
) -> None:
    """Draw the attribution graph of a prompt through transcoders: features, error nodes, tokens and logits."""
    from circuitwise.errors import ConfigError
    from circuitwise.features.formats import load_transcoders
    from circuitwise.runfolder import RunFolder

    graph_path = _graph_file(task_or_prompt)
    if graph_path is not None:
        given = [flag for flag, value in (("--transcoders", transcoders), ("--target", target),
                                          ("--node-threshold", node_threshold), ("--edge-threshold", edge_threshold),
                                          ("--corpus", corpus), ("--whole-task", whole_task or None),
                                          ("--check-features", check_features), ("--head-links", head_links),
                                          ("--edge-circuit", edge_circuit))
                 if value is not None]
        if given:
            raise ConfigError(f"{task_or_prompt} is a graph file, drawn as it is: {', '.join(given)} apply only when "
                              "a graph is computed. Leave them out (or give a task or a prompt).")
        _draw_file(graph_path, out, scan, force)
        return
    if transcoders is None:
        raise ConfigError("--transcoders is needed to compute a graph: a transcoder folder, or bundled / "
                          "bundled-llama (the sets shipped for the bundled models).")
    node_t = _prune_default("node_threshold") if node_threshold is None else node_threshold
    edge_t = _prune_default("edge_threshold") if edge_threshold is None else edge_threshold
    if node_t <= 0 or edge_t <= 0:
        raise ConfigError("--node-threshold and --edge-threshold are shares of the total influence in (0, 1]; "
                          "0 would keep nothing.")
    if align not in ("relative", "role"):
        raise ConfigError(f"--align {align!r}: choose relative or role.")
    req = resolve(task_or_prompt, target, example, n, seed, split, context_prompts, whole_task)
    checks = _check_request(check_features, head_links, edge_circuit, whole_task)
    texts = _corpus(corpus, corpus_lines)
    budget = None
    if max_memory is not None:
        from circuitwise.sizes import parse_size

        try:
            budget = parse_size(max_memory)
        except ValueError as e:
            raise ConfigError(f"--max-memory {max_memory!r}: {e}") from None
    settings = dict(subject=req.subject, prompt=req.prompt, model=model, transcoders=transcoders, target=req.target,
                    node_threshold=node_t, edge_threshold=edge_t, example=example, n=n, seed=seed, split=split,
                    corpus=str(corpus) if corpus else None, corpus_lines=corpus_lines,
                    context_prompts=context_prompts, contexts=contexts, whole_task=whole_task,
                    graph_prompts=graph_prompts if whole_task else None, align=align if whole_task else None,
                    dtype=dtype, processing=processing, scan=scan, check_features=checks.features,
                    head_links=checks.links, edge_circuit=str(edge_circuit) if edge_circuit else None)
    folder = RunFolder(out, replaces=FILES, command="graph", settings=settings, force=force)
    folder.check()  # a file, another command's folder or another graph's result fails before any work
    tcs = load_transcoders(transcoders)  # a missing or malformed set fails before the model loads
    console.print(Text("plan:", style="bold"))
    for line in _plan_lines(req, model, transcoders, node_t, edge_t, texts, Path(out), graph_prompts, align, checks):
        console.print("  " + line, highlight=False, markup=False)
    with folder:
        paths, summary = _run(req, model, tcs, transcoders, node_t, edge_t, texts, contexts, scan, device, dtype,
                              processing, budget, folder, graph_prompts, align, checks)
    for line in summary:
        console.print("  " + line, highlight=False, markup=False)
    console.print(f"Graph: {paths['html'].resolve()}", highlight=False, markup=False)


def _graph_file(text: str) -> Path | None:
    """``text`` as a graph file to draw (a .json file holding graph.json or Neuronpedia's graph JSON), else None."""
    path = Path(text)
    if len(text) > 4096 or "\n" in text or path.suffix.lower() != ".json" or not _is_file(path):
        return None
    return path


def _draw_file(path: Path, out: Path, scan: str | None, force: bool) -> None:
    """graph.json, neuronpedia.json and graph.html of an existing graph file (no model, no transcoders)."""
    import json

    from circuitwise.errors import SchemaError
    from circuitwise.features.export import from_neuronpedia, to_neuronpedia
    from circuitwise.reports.graph import graph_page
    from circuitwise.runfolder import RunFolder
    from circuitwise.schema.graph import GraphFile, NeuronpediaGraph, viewer_problems

    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise SchemaError(f"Cannot read {path} as JSON ({e}); give a graph.json or a Neuronpedia graph JSON.") from None
    if isinstance(data, dict) and data.get("format") == GraphFile.FORMAT:
        gf = GraphFile.validate_data(data, str(path))
    else:
        gf = from_neuronpedia(data, source=str(path))
    folder = RunFolder(out, replaces=FILES, command="graph", settings={"draw": str(path.resolve()), "scan": scan},
                       force=force)
    folder.check()
    with folder:
        np_data = to_neuronpedia(gf, scan=scan)
        for problem in viewer_problems(NeuronpediaGraph.model_validate(np_data)):
            show_note(f"neuronpedia.json: {problem}")
        folder.write_text("graph.json", gf.dump_text())
        folder.write_text("neuronpedia.json", json.dumps(np_data, allow_nan=False))
        folder.write_text("graph.html", graph_page(gf))
        folder.commit()
    n_feat = sum(n.kind == "feature" for n in gf.nodes)
    console.print(f"  {path}: {n_feat} features, {len(gf.nodes) - n_feat} other nodes, {len(gf.edges)} links",
                  highlight=False, markup=False)
    console.print(f"Graph: {(Path(out) / 'graph.html').resolve()}", highlight=False, markup=False)


def _kept_labels(full: Any, kept: Any) -> Any:
    """``kept`` with its task graph's per-node position labels (prune_graph keeps the full graph's list)."""
    labels = full.meta.get("position_labels")
    if not isinstance(labels, list) or len(labels) != full.n_nodes or len(labels) == kept.n_nodes:
        return kept
    by_node = dict(zip(full.nodes, labels, strict=True))
    return kept.with_(meta={**kept.meta, "position_labels": [by_node[x] for x in kept.nodes]})


def _run(req: GraphRequest, model_name: str, tcs: Any, source: str, node_t: float, edge_t: float,
         corpus: tuple[str, ...], k: int, scan: str | None, device: str | None, dtype: str | None,
         processing: bool | None, budget: int | None, folder: Any, graph_prompts: int = 16,
         align: str = "relative", checks: CheckRequest | None = None) -> tuple[dict[str, Path], list[str]]:
    from circuitwise.features.attribute import attribution_graph
    from circuitwise.features.checks import check_graph
    from circuitwise.features.contexts import feature_contexts, merge_contexts
    from circuitwise.features.export import graph_file, to_neuronpedia
    from circuitwise.features.formats import check_model
    from circuitwise.features.prune import prune_graph
    from circuitwise.models import load_model
    from circuitwise.reports.graph import graph_page
    from circuitwise.schema.graph import NeuronpediaGraph, viewer_problems

    started = time.perf_counter()
    with err_console.status(f"loading {model_name}…") as status:
        # --max-memory is the whole run's budget, the model included, as in every command: a model that
        # cannot sit in it is refused before it loads, and the graph plans within what the model leaves.
        kw: dict[str, Any] = {k: v for k, v in dict(device=device, dtype=dtype, processing=processing,
                                                    max_memory=budget).items() if v is not None}
        m = load_model(model_name, **kw)
        warning = check_model(tcs, m, name=source, allow_other=False)
        if warning:
            show_note(warning)
        checks = checks or CheckRequest()
        if checks.circuit_file is not None:
            from circuitwise.models.fingerprint import check_same_model

            recorded = checks.circuit_file.model.model_dump() if checks.circuit_file.model is not None else {}
            said = check_same_model(recorded, m, what=f"the circuit {checks.circuit}", loaded_name=model_name,
                                    fix="Give --edge-circuit a circuit found on this model (--model), or leave it "
                                        "out.")
            if said:
                show_note(said)
        if req.whole:
            from circuitwise.features.task_graph import task_graph

            status.update(f"attribution graphs of {min(graph_prompts, req.n_prompts)} prompts…")
            full = task_graph(m, tcs, req.task, align=align, max_prompts=graph_prompts)  # type: ignore[arg-type]
        else:
            status.update("attribution graph: clean run and backward passes…")
            full = attribution_graph(m, tcs, req.prompt, _targets(req))
        status.update("pruning…")
        # Named as the user named it ("bundled", a hub name), not by the path it was loaded from.
        kept = prune_graph(full, node_t, edge_t).with_(model=model_name)
        kept = _kept_labels(full, kept)
        found_checks = None
        if not req.whole:
            status.update("checks: ablations in the unfrozen model, faithfulness, head loadings…")
            found_checks = check_graph(m, tcs, full, kept, features=checks.features, links=checks.links)
        feats = sorted({(x.layer, x.feature) for x in kept.nodes if x.kind == "feature"})
        status.update(f"top activating contexts of {len(feats)} features…")
        found = feature_contexts(m, tcs, req.texts, feats, source="task", k=k)
        if corpus:
            found = merge_contexts(found, feature_contexts(m, tcs, corpus, feats, source="corpus", k=k))
    notes = [f"the graph of the task's prompt {req.example}; contexts from {_texts_said(req)}"] if req.is_task else []
    if req.whole:
        notes = [f"contexts from {_texts_said(req)}"]
    description = ""
    if req.target == "metric" and req.answers is not None:
        description = f"logit({req.answers[0]!r}) − logit({req.answers[1]!r})"
    circuit = None
    if checks.circuit is not None:
        from circuitwise.schema.graph import CircuitHeads

        circuit = CircuitHeads(source=str(checks.circuit), heads=list(checks.heads))
    gf = graph_file(kept, transcoders=source, node_threshold=node_t, edge_threshold=edge_t,
                    task=req.subject if req.is_task else None, description=description, contexts=found, notes=notes,
                    checks=found_checks, circuit=circuit)
    # Provenance, as every output: the model's fingerprint (architecture, shapes, processing, weights).
    from circuitwise.models.fingerprint import fingerprint
    from circuitwise.schema.results import Fingerprint

    gf = gf.model_copy(update={"model": gf.model.model_copy(
        update={"fingerprint": Fingerprint.model_validate(fingerprint(m))})})
    folder.write_text("graph.json", gf.dump_text())
    import json

    np_data = to_neuronpedia(gf, scan=scan)
    for problem in viewer_problems(NeuronpediaGraph.model_validate(np_data)):
        show_note(f"neuronpedia.json: {problem}")
    folder.write_text("neuronpedia.json", json.dumps(np_data, allow_nan=False))
    folder.write_text("graph.html", graph_page(gf))
    folder.commit()
    out = folder.out
    s = kept.scores
    summary = [f"{sum(x.kind == 'feature' for x in kept.nodes)} features, {sum(x.kind == 'error' for x in kept.nodes)} "
               f"error nodes, {len(gf.edges)} links kept of {full.n_nodes} nodes "
               f"({sum(x.kind == 'feature' for x in full.nodes)} active features)",
               f"replacement score {s.get('replacement', float('nan')):.3f}, completeness "
               f"{s.get('completeness', float('nan')):.3f} (full graph)",
               *_check_lines(gf),
               f"{time.perf_counter() - started:.1f} s"]
    return {"graph": out / "graph.json", "neuronpedia": out / "neuronpedia.json", "html": out / "graph.html"}, summary


def _check_lines(gf: Any) -> list[str]:
    """The checks in a few lines (the page has them whole)."""
    c = gf.checks
    if c is None:
        return []
    lines = []
    if c.interventions:
        agree = "" if c.sign_agreement is None else f"; {c.sign_agreement:.0%} moved it the way the graph predicts"
        worst = max(c.interventions, key=lambda a: abs(a.actual - a.predicted))
        lines.append(f"ablating {len(c.interventions)} features one at a time in the unfrozen model{agree} "
                     f"(largest miss: {worst.node}, actual {worst.actual:+.3f} vs predicted {worst.predicted:+.3f})")
    if c.faithfulness is not None:
        lines.append(f"faithfulness of the kept features {c.faithfulness:.3f} "
                     "(the unfrozen model, edge circuits' terms)")
    if c.heads:
        top = ", ".join(h.head + (" (in the circuit)" if h.in_circuit else "") for h in c.heads[:5])
        lines.append(f"heads carrying the {c.links_analysed} strongest links between positions: {top}")
    lines += c.notes
    return lines
