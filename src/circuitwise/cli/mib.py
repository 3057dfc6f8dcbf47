"""`circuitwise mib`: a MIB circuit-track submission, every task × model × method, resumable per pair."""

from __future__ import annotations

import dataclasses
import difflib
from pathlib import Path
from typing import Any

import typer

from circuitwise.cli import app, console, show_note
from circuitwise.cli import options as opts
from circuitwise.cli.benchmark import split_names
from circuitwise.cli.circuit import progress_bar
from circuitwise.errors import ConfigError, NoUsableExamples

DEFAULT_METHODS = ("eap-ig",)


def _pairs(given: list[str], kind: str) -> list[tuple[str, str | None]]:
    """``NAME`` or ``NAME=SOURCE`` entries (repeatable, or comma-separated)."""
    from circuitwise.evaluation.mib_submission import check_name

    out = []
    for item in given:
        for entry in item.split(","):
            name, eq, source = entry.strip().partition("=")
            try:
                check_name(kind, name)
            except ValueError as e:
                raise ConfigError(f"--{kind} {entry!r}: {e}.") from None
            out.append((name, source.strip() or None if eq else None))
    if kind == "task":
        from circuitwise.tasks.mib import MIB_BUILTINS

        # A built-in MIB generator named alone (--task mib-mcqa) is MIB's task of that name, under MIB's name.
        mib_name = {builtin: name for name, builtin in MIB_BUILTINS.items()}
        out = [(mib_name[n], n) if s is None and n in mib_name else (n, s) for n, s in out]
    if len({n for n, _ in out}) != len(out):
        raise ConfigError(f"--{kind} names a {kind} twice; give each once.")
    return out


def _task_source(name: str, source: str | None) -> str | Any:
    """What circuitwise reads for MIB task ``name``: a built-in's name or a task file's path, or MIB's rows
    imported (a Task, written into the submission folder once it is open); bad input fails here, before
    the folder is touched."""
    from circuitwise.tasks import get_task
    from circuitwise.tasks.builtin import specs
    from circuitwise.tasks.mib import MIB_TASKS, import_mib, read_rows

    if source is None:
        from circuitwise.tasks.mib import FROM_FILE, MIB_BUILTINS, from_file_help

        if name in MIB_TASKS and name in MIB_BUILTINS:
            # MIB's own task, named as MIB names it: its offline generator, never a same-named task of
            # circuitwise's (circuitwise's `ioi` is not MIB's templates).
            show_note(f"--task {name}: MIB's {name} generated offline ({MIB_BUILTINS[name]}); give --task "
                      f"{name}=FILE to use MIB's own rows instead.")
            return MIB_BUILTINS[name]
        if name in {s.name for s in specs()}:
            return name

        if name in FROM_FILE:
            raise ConfigError(f"--task {name} needs its data: --task {name}=FILE. " + from_file_help(name))
        generated = ""
        if name not in MIB_TASKS:  # a near miss of MIB's names (arithmetic → its two tasks)
            near = [t for t in MIB_TASKS if t.startswith(name)] or difflib.get_close_matches(name, MIB_TASKS, n=2)
            if near:
                generated = " MIB's tasks of that name: " + ", ".join(
                    f"{t} (generated offline: --task {MIB_BUILTINS[t]})" if t in MIB_BUILTINS else t
                    for t in near) + "."
        raise ConfigError(f"--task {name} needs its data: --task {name}=FILE (MIB's rows, or a circuitwise task "
                          "file); MIB's data sets are not shipped with circuitwise." + generated)
    path = Path(source)
    if path.is_file():
        rows = read_rows(path) if path.suffix.lower() in (".json", ".jsonl") else []
        first = rows[0] if rows and isinstance(rows[0], dict) else {}
        if "prompt" in first and "clean" not in first:  # MIB's layout, not a circuitwise task file
            if name not in MIB_TASKS:
                raise ConfigError(f"{source} holds MIB rows, but {name!r} is not a MIB task ({', '.join(MIB_TASKS)}); "
                                  "name the task as MIB does.")
            done = import_mib(path, name)
            for line in done.lines():
                show_note(line)
            return done.task
    get_task(source)  # a built-in name or a task file; anything else fails here, before any model loads
    return source


@app.command()
def mib(
    task: list[str] | None = typer.Option(None, "--task", metavar="NAME[=SOURCE]", show_default=False, help=(
        "A MIB task (ioi, mcqa, arithmetic-addition, arithmetic-subtraction, arc-easy, arc-challenge, or any "
        "name), with its data: MIB's rows (JSON/JSONL), a circuitwise task file or a built-in task; "
        "ioi, mcqa, arithmetic-addition and arithmetic-subtraction alone (or mib-ioi …) are MIB's tasks "
        "generated offline. Repeat, or separate with commas. [required; no default]")),
    model: list[str] | None = typer.Option(None, "--model", "-m", metavar="NAME[=SOURCE]", show_default=False, help=(
        "A model by MIB's name (gpt2, qwen2.5, gemma2, llama3: their Hub checkpoints) or any name=SOURCE (a Hub "
        "name, a local checkpoint folder, bundled). Repeat, or separate with commas. [required; no default]")),
    methods: list[str] | None = typer.Option(None, "--circuit", metavar="METHOD", show_default=False, help=(
        f"Discovery method(s), repeatable or comma-separated. [default: {', '.join(DEFAULT_METHODS)}]")),
    out: Path = typer.Option(Path("runs/mib"), "--out", "-o", help="Submission folder: "
                             "METHOD/TASK_MODEL/importances.json (or the circuits), leaderboard.json and .html."),
    form: str = typer.Option("scores", "--form", help="What each TASK_MODEL folder holds, as MIB's README allows: "
                             "scores (importances.json, every edge's score) or circuits (9 files, one circuit per "
                             "edge budget 0.1 %…50 %, pruned; circuit_0.1pct.json …)."),
    by: str | None = typer.Option(None, "--by", show_default=False, help="With --form circuits: rank edges by abs "
                                  "(magnitude) or signed score; one ranking gives both CPR and CMD. [default: abs]"),
    ablation: str = typer.Option("corrupted", "--ablation", help="Edges outside a circuit read the corrupted run "
                                 "(MIB's patching), or the mean."),
    level: str = typer.Option("edge", "--level", help="What is scored, as MIB's --level: every edge, every node "
                              "(input, head, MLP) or every neuron (each of a node's d_model output dimensions); "
                              "node and neuron: eap / eap-ig, scores form (neurons as importances.pt)."),
    metric: str | None = opts.METRIC,
    n: int | None = opts.N,
    seed: int | None = opts.SEED,
    batch_size: int | None = typer.Option(None, "--batch-size", min=1,
                                          help="Prompts per forward; default from the model size."),
    device: str | None = opts.DEVICE,
    dtype: str | None = opts.DTYPE,
    max_memory: str | None = opts.MAX_MEMORY,
    device_map: str | None = opts.DEVICE_MAP,
    n_devices: int | None = opts.N_DEVICES,
    processing: bool | None = opts.PROCESSING,
    force: bool = opts.FORCE,
    old_tasks: list[str] | None = opts.alias("--tasks"),
    old_models: list[str] | None = opts.alias("--models"),
    old_methods: list[str] | None = opts.alias("--methods"),
) -> None:
    """Run every method on every task × model and write MIB's circuit-track submission, checked against its rules."""
    from circuitwise.evaluation.mib_submission import (
        MIB_MODELS,
        check_layout,
        leaderboard,
        pair_done,
        pair_folder,
        read_done,
        run_pair,
    )
    from circuitwise.models.fingerprint import fingerprint
    from circuitwise.models.loading import check_loadable
    from circuitwise.pipeline import load_study
    from circuitwise.plan import Study, mib_request, study_config
    from circuitwise.runfolder import RunFolder, atomic_write_json, read_marker

    task = opts.merge(task, old_tasks, old="--tasks", new="--task")
    model = opts.merge(model, old_models, old="--models", new="--model")
    methods = opts.merge(methods, old_methods, old="--methods", new="--circuit")
    for given, flag in ((task, "--task"), (model, "--model")):
        if not given:  # required, but typer's own check would not see the plural spelling
            raise ConfigError(f"Missing option {flag}: give at least one (repeat it, or separate names with commas), "
                              "e.g. `circuitwise mib --task mib-ioi --model bundled`.")
    metric = opts.metric_name(metric)
    request = mib_request(split_names(methods) or list(DEFAULT_METHODS), form=form, by=by, ablation=ablation,
                          level=level, metric=metric)
    names = list(request.methods)
    tasks, models = _pairs(task, "task"), _pairs(model, "model")

    def loading(task_src: str, model_src: str) -> Any:
        return study_config("mib", task=task_src, model=model_src, n=n, seed=seed, device=device, dtype=dtype,
                            max_memory=max_memory, drop_invalid=True, device_map=device_map, n_devices=n_devices,
                            processing=processing, metric=metric)

    loading(tasks[0][0], models[0][1] or models[0][0])  # the loading options, checked before the folder is touched
    # Pairs accumulate in one folder (more tasks, models or methods later); these decide every pair's numbers.
    settings = dict(metric=metric, **request.settings(), n=n, seed=seed, dtype=dtype, processing=processing)
    folder = RunFolder(out, command="mib", settings=settings, force=force, in_place=True)
    folder.check()  # a file, another command's folder, or pairs of other settings: before any model loads
    # Past check(), a mib folder of other settings is being replaced (--force): none of its pairs is reused.
    before = read_marker(folder.out)
    replacing = before is not None and before.get("command") == "mib" and before.get("settings") != folder.settings
    read = {name: _task_source(name, src) for name, src in tasks}  # every task read first, before the folder
    # Every model too: a mistyped folder or an unreachable Hub name failed only once the pairs before it had run.
    for model_name, model_src in models:
        check_loadable(model_src or MIB_MODELS.get(model_name, model_name))
    with folder:
        folder.mark_in_place(complete=False)
        sources: dict[str, str] = {}
        for name, got in read.items():
            if not isinstance(got, str):  # MIB's rows, imported: kept beside the pairs they made
                dest = folder.out / ".tasks" / f"{name}.jsonl"
                dest.parent.mkdir(parents=True, exist_ok=True)
                got.to_jsonl(dest)
                got = str(dest)
            sources[name] = got
        state = folder.out / "leaderboard.json"
        done = {} if replacing else read_done(state)
        results = list(done.values())
        skipped: list[str] = []
        for model_name, model_src in models:
            the_model = None
            checked = False  # this model's finished pairs against the loaded weights (on its first load)
            pending = list(tasks)
            while pending:
                task_name, _ = pending.pop(0)
                todo = [m for m in names if (m, task_name, model_name) not in done
                        or not pair_done(pair_folder(folder.out, m, task_name, model_name), request.form,
                                         request.level)]
                if not todo:
                    continue
                study = Study(loading(sources[task_name], model_src or MIB_MODELS.get(model_name, model_name)),
                              "mib")
                # The runner's one loading step; a model already loaded for an earlier task is reused.
                try:
                    prepared = load_study(study, model=the_model, notes=show_note,
                                          progress=lambda msg: console.print(msg, highlight=False, markup=False))
                except NoUsableExamples as e:
                    # This pair cannot be scored (MIB's loader drops the same examples); the others can.
                    show_note(f"{task_name} × {model_name} skipped: {e}")
                    skipped.append(f"{task_name}_{model_name}")
                    continue
                the_model, tok = prepared.model, prepared.tok
                fp = fingerprint(the_model)
                if not checked:
                    checked = True
                    stale = _stale_pairs(done, model_name, fp, out=folder.out, force=force)
                    if stale:  # --force: every pair of this model is scored again on these weights
                        results = [x for x in results if (x.method, x.task, x.model) not in stale]
                        done = {k: v for k, v in done.items() if k not in stale}
                        pending = list(tasks)
                        continue
                for method in todo:
                    console.print(f"{method} on {task_name} × {model_name} ({len(tok)} prompts)", highlight=False,
                                  markup=False)
                    with progress_bar() as update:
                        r = run_pair(the_model, tok, method=method, task=task_name, model_name=model_name,
                                     out=folder.out, metric=metric, ablation=ablation,  # type: ignore[arg-type]
                                     batch_size=batch_size, progress=update, form=request.form, by=request.by,
                                     level=request.level)
                    r = dataclasses.replace(r, fingerprint=fp)
                    results = [x for x in results if (x.method, x.task, x.model) != (method, task_name, model_name)]
                    results.append(r)
                    board = leaderboard(results)
                    atomic_write_json(state, board)  # each finished pair is kept: a rerun resumes after it
                    _write_page(folder.out / "leaderboard.html", board)
        if not results and skipped:
            # Nothing to submit is a failure, not an empty submission reported in a note.
            raise NoUsableExamples(f"No task × model pair has a usable example ({', '.join(skipped)}): there is "
                                   "nothing to submit. Use a model whose tokenizer gives the tasks' answers as "
                                   "single tokens (MIB's models), or other tasks.")
        problems = check_layout(folder.out, sorted({r.method for r in results}))
        for p in problems:
            show_note(p)
        folder.mark_in_place(complete=True)
    _print_board(leaderboard(results))
    if skipped:
        show_note(f"pairs with no usable example, not in the submission: {', '.join(skipped)}")
    console.print(f"Submission: {folder.out.resolve()} ({'ready for MIB' if not problems else 'see the notes'})",
                  highlight=False, markup=False)


def _stale_pairs(done: dict[tuple[str, str, str], Any], model_name: str, fp: dict[str, Any], *, out: Path,
                 force: bool) -> set[tuple[str, str, str]]:
    """The finished pairs of ``model_name`` that another checkpoint (by fingerprint) scored: refused, naming
    both, unless ``force`` has them scored again."""
    from circuitwise.errors import OutputError
    from circuitwise.models.fingerprint import mismatch

    stale: dict[tuple[str, str, str], str] = {}
    for key, r in done.items():
        if r.model == model_name and isinstance(r.fingerprint, dict):
            said = mismatch(r.fingerprint, fp, what=f"{r.method}/{r.task}_{r.model} in --out {out}",
                            have_name=model_name, want_name=model_name)
            if said is not None:
                stale[key] = said
    if stale and not force:
        first = next(iter(stale.values()))
        raise OutputError(f"{first} {len(stale)} finished pair(s) of model {model_name!r} were scored on those "
                          "weights; resuming would put two models in one submission. Give another --out, or add "
                          "--force to score them again on the loaded model.")
    return set(stale)


def _cells(board: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    headers = ["method", *(f"{c} CPR ↑ / CMD ↓" for c in board["columns"])]
    rows = []
    for method, cols in board["methods"].items():
        rows.append([method, *("—" if cols[c] is None else f"{cols[c]['cpr']:.3f} / {cols[c]['cmd']:.3f}"
                               for c in board["columns"])])
    return headers, rows


def _write_page(path: Path, board: dict[str, Any]) -> None:
    from circuitwise.reports.html import Page, esc, table
    from circuitwise.runfolder import atomic_write_text

    headers, rows = _cells(board)
    forms = sorted({"importance scores" if p.get("form", "scores") == "scores"
                    else f"circuits at MIB's budgets (ranked {p.get('by')})" for p in board["pairs"]})
    page = Page("MIB circuit track", f"{len(board['pairs'])} task × model × method pairs; {', '.join(forms)}")
    page.add("leaderboard", "CPR (higher is better) and CMD (lower is better) per task and model",
             table(headers, [[esc(c) for c in row] for row in rows], numeric=range(1, len(headers))))
    atomic_write_text(path, page.render())


def _print_board(board: dict[str, Any]) -> None:
    from rich.table import Column, Table

    headers, rows = _cells(board)
    # Pair names are long (counting_bundled-llama): wrap them on a narrow terminal, never cut them.
    t = Table(*(Column(h.replace(" CPR", "\nCPR"), overflow="fold") for h in headers))
    for row in rows:
        t.add_row(*row)
    console.print(t)


__all__ = ["mib"]
