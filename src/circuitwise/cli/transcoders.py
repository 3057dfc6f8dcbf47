"""`circuitwise transcoders`: train transcoders for a model, show a set's card, convert between layouts."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

import typer
from rich.text import Text

from circuitwise.cli import app, console, err_console, show_note
from circuitwise.cli import options as opts
from circuitwise.features.formats import CARD_JSON, CARD_MD, LAYOUTS, MANIFEST, WEIGHTS
from circuitwise.features.train import TrainOptions

transcoders_app = typer.Typer(
    help="Transcoders (sparse stand-ins for the MLPs): train them, show their card, convert their files.",
    no_args_is_help=True,
)
app.add_typer(transcoders_app, name="transcoders")

D = TrainOptions()
FILES = (WEIGHTS, MANIFEST, CARD_MD, CARD_JSON)
CHECKPOINTS = ".patching"  # the run folder keeps this subfolder of an interrupted run for the next one


def _help(text: str, default: Any) -> str:
    return opts.with_default(text, default)


@transcoders_app.command("train")
def train(
    model: str = typer.Argument(..., help="Model name or local checkpoint folder (e.g. bundled, gpt2)."),
    corpus: str = typer.Option(..., "--corpus", help="Training text: a text file (one document a line), a JSONL "
                               "file ({\"text\": …} rows) or a built-in task's name (its prompts and answers)."),
    width: int = typer.Option(D.width, "--width", show_default=False, help=_help("Features per layer.", D.width)),
    k: int = typer.Option(D.k, "--k", show_default=False, help=_help("Active features per token (topk).", D.k)),
    activation: str = typer.Option(D.activation, "--activation", show_default=False,
                                   help=_help("topk or jumprelu.", D.activation)),
    skip: bool = typer.Option(D.skip, "--skip/--no-skip", show_default=False,
                              help=_help("A linear skip path beside the features.", D.skip)),
    cross_layer: bool = typer.Option(D.cross_layer, "--cross-layer/--per-layer", show_default=False,
                                     help=_help("Cross-layer transcoders (each writes every later MLP output).",
                                                "per-layer")),
    site: str = typer.Option(D.site, "--site", show_default=False,
                             help=_help("What they read: mlp_in (the MLP's input, after its norm) or resid_mid "
                                        "(before it).", D.site)),
    tokens: int = typer.Option(D.tokens, "--tokens", show_default=False, help=_help("Training tokens.", D.tokens)),
    batch_tokens: int = typer.Option(D.batch_tokens, "--batch-tokens", show_default=False,
                                     help=_help("Tokens per step.", D.batch_tokens)),
    lr: float = typer.Option(D.lr, "--lr", show_default=False, help=_help("Adam's learning rate.", D.lr)),
    heldout_tokens: int = typer.Option(D.heldout_tokens, "--heldout-tokens", show_default=False,
                                       help=_help("Tokens (the corpus's last) kept out for the card.",
                                                  D.heldout_tokens)),
    seed: int = typer.Option(D.seed, "--seed", show_default=False,
                             help=_help("Initialisation and data order.", D.seed)),
    out: Path = typer.Option(Path("runs/transcoders"), "--out", "-o",
                             help="Folder for the transcoders and their card (an interrupted run resumes there)."),
    device: str | None = opts.DEVICE,
    dtype: str | None = opts.DTYPE,
    processing: bool | None = opts.PROCESSING,
    force: bool = opts.FORCE,
) -> None:
    """Train transcoders for MODEL's MLPs on a corpus; writes them with their card (FVU, KL, top-1 agreement)."""
    from circuitwise.errors import ConfigError
    from circuitwise.features.formats import card_markdown, save_transcoders
    from circuitwise.features.train import read_corpus, train_transcoders
    from circuitwise.models import load_model
    from circuitwise.runfolder import RunFolder

    if activation not in ("topk", "jumprelu"):
        raise ConfigError(f"--activation {activation!r}: choose topk or jumprelu")
    if site not in ("mlp_in", "resid_mid"):
        raise ConfigError(f"--site {site!r}: choose mlp_in or resid_mid")
    options = TrainOptions(width=width, k=k, activation=activation, skip=skip,  # type: ignore[arg-type]
                           cross_layer=cross_layer, site=site, tokens=tokens,  # type: ignore[arg-type]
                           batch_tokens=batch_tokens, lr=lr, heldout_tokens=heldout_tokens, seed=seed)
    options.check()
    texts = read_corpus(corpus)  # a bad corpus fails before the model loads
    settings = dict(model=model, corpus=corpus, options=options.__dict__, dtype=dtype, processing=processing)
    folder = RunFolder(out, replaces=FILES, command="transcoders train", settings=settings, force=force)
    folder.check()
    steps = max(1, tokens // batch_tokens)
    console.print(Text("plan:", style="bold"))
    kind = f"{'cross-layer' if cross_layer else 'per-layer'} {activation}" + (f" k={k}" if activation == "topk"
                                                                               else "")
    console.print(f"  {kind} transcoders, {width} features a layer{', skip path' if skip else ''}, reading {site}; "
                  f"{len(texts)} documents, {steps} steps of {batch_tokens} tokens; out {out}",
                  highlight=False, markup=False)
    with folder:
        kw: dict[str, Any] = {k_: v for k_, v in dict(device=device, dtype=dtype, processing=processing).items()
                              if v is not None}
        with err_console.status(f"loading {model}…"):
            m = load_model(model, **kw)
        ckpt = folder.path / CHECKPOINTS / "transcoders"
        started = time.perf_counter()
        ts = _train_with_bar(m, texts, options, model, ckpt, train_transcoders)
        if ts.meta["training"].get("resumed_at") is not None:  # step 0 too: interrupted before its first step
            show_note(f"resumed at step {ts.meta['training']['resumed_at']} from the interrupted run's checkpoint")
        shutil.rmtree(folder.path / CHECKPOINTS, ignore_errors=True)
        for name in FILES:
            (folder.path / name).unlink(missing_ok=True)
        save_transcoders(ts, folder.path)
        folder.commit()
    console.print(card_markdown(ts), highlight=False, markup=False)
    console.print(f"Transcoders: {Path(out).resolve()} ({time.perf_counter() - started:.0f} s)", highlight=False,
                  markup=False)


def _train_with_bar(m: Any, texts: list[str], options: TrainOptions, name: str, ckpt: Path, train_fn: Any) -> Any:
    from circuitwise.cli.progress import Bars

    with Bars(err_console) as bars:
        def progress(step: int, total: int, info: dict[str, float]) -> None:
            bars.step("training", step, total)

        return train_fn(m, texts, options, model_name=name, checkpoint_dir=ckpt, progress=progress)


@transcoders_app.command("card")
def card(
    source: str = typer.Argument(..., help="A transcoder folder (any layout) or bundled / bundled-llama."),
    as_json: bool = typer.Option(False, "--json", help="Print the card as JSON. [default: off]"),
) -> None:
    """Show a transcoder set's card: what it is, and its FVU, KL and top-1 agreement where they were measured."""
    from circuitwise.features.formats import card_markdown, load_transcoders

    ts = load_transcoders(source)
    if as_json:
        t0 = ts[0]
        typer.echo(json.dumps({"model": ts.model, "layers": len(ts), "n_features": t0.n_features,
                               "activation": t0.activation, "k": t0.k, "skip": t0.W_skip is not None,
                               "cross_layer": ts.cross_layer, "site": t0.site, "card": ts.meta.get("card"),
                               "training": ts.meta.get("training")}, indent=1))
        return
    console.print(card_markdown(ts), highlight=False, markup=False)
    if not ts.meta.get("card"):
        show_note("this set records no card (trained elsewhere); its numbers are measured by "
                  "`circuitwise transcoders train`")


@transcoders_app.command("convert")
def convert(
    source: str = typer.Argument(..., help="A transcoder folder (any layout) or bundled / bundled-llama."),
    dest: Path = typer.Argument(..., help="A new or empty folder to write into."),
    layout: str = typer.Option("circuitwise", "--layout", show_default=False,
                               help=f"Layout to write: {', '.join(LAYOUTS)}. [default: circuitwise]"),
) -> None:
    """Rewrite a transcoder set in another layout (circuit-tracer's, Gemma Scope's, circuitwise's)."""
    from circuitwise.errors import ConfigError
    from circuitwise.features.formats import load_transcoders, save_transcoders

    if layout not in LAYOUTS:
        raise ConfigError(f"--layout {layout!r}: choose one of {', '.join(LAYOUTS)}")
    ts = load_transcoders(source)
    save_transcoders(ts, dest, layout=layout)  # type: ignore[arg-type]
    console.print(f"{len(ts)} transcoders written to {dest.resolve()} ({layout} layout)", highlight=False,
                  markup=False)
