"""`circuitwise prompt`: the seed's test_prompt — how a model answers one prompt."""

from __future__ import annotations

import json
from typing import Any, Optional

import torch
import typer
from rich.table import Table

from circuitwise.cli import options as opts
from circuitwise.cli import app, console, show_note
from circuitwise.config import RunConfig
from circuitwise.errors import ConfigError
from circuitwise.models import load_model
from circuitwise.models.processing import notes_of as processing_notes

_model_default = RunConfig.model_fields["model"].default


@torch.inference_mode()
def _size(text: str) -> int:
    from circuitwise.sizes import parse_size

    try:
        return parse_size(text)
    except ValueError as e:
        raise ConfigError(f"--max-memory: {e}.") from None


def test_prompt(model: Any, prompt: str, answer: str, *, top_k: int = 10, prepend_space: bool = True) -> dict[str, Any]:
    """Tokens, the answer's rank/logit/prob at each of its tokens, and the top-k next tokens.

    Like TransformerLens's ``utils.test_prompt``: the answer is appended to the prompt, and the
    logits before each answer token are read, so multi-token answers are shown token by token.
    """
    if not prompt:
        raise ConfigError("The prompt is empty. Give the text the model should continue.")
    if not answer.strip():
        raise ConfigError("The answer is empty. Give the expected next word, e.g. --answer ' young'.")
    if prepend_space and not answer.startswith(" "):
        answer = " " + answer
    # Untruncated: to_tokens cuts at the context length by default, which left a long prompt no answer token.
    p_ids = model.to_tokens(prompt, truncate=False)[0].tolist()
    full = model.to_tokens(prompt + answer, truncate=False)[0]
    if full.shape[0] > model.cfg.n_ctx:
        raise ConfigError(f"Prompt and answer are {full.shape[0]} tokens; the model's context is {model.cfg.n_ctx}. Shorten them.")
    a_ids = full[len(p_ids):].tolist() if full[: len(p_ids)].tolist() == p_ids else model.to_tokens(answer, prepend_bos=False, truncate=False)[0].tolist()
    tokens = torch.tensor([p_ids + a_ids], device=model.cfg.device)
    logits = model(tokens)[0].float()
    dec = lambda i: model.tokenizer.decode([int(i)])  # noqa: E731
    per_token = []
    for j, aid in enumerate(a_ids):
        row = logits[len(p_ids) - 1 + j]
        probs = row.softmax(-1)
        per_token.append({"token": dec(aid), "rank": int((row > row[aid]).sum()),
                          "logit": float(row[aid]), "prob": float(probs[aid])})
    row = logits[len(p_ids) - 1]
    probs = row.softmax(-1)
    vals, ids = row.topk(min(top_k, row.shape[0]))
    # Whether the model's own convention (TL's cfg.default_prepend_bos) put a BOS first.
    plain = model.to_tokens(prompt, prepend_bos=False, truncate=False)[0].tolist()
    return {
        "prepend_bos": len(p_ids) == len(plain) + 1 and p_ids[1:] == plain,
        "prompt_tokens": [dec(i) for i in p_ids],
        "answer_tokens": [dec(i) for i in a_ids],
        "answer": per_token[0],
        "answer_per_token": per_token,
        "top_k": [{"token": dec(i), "logit": float(v), "prob": float(probs[i])} for v, i in zip(vals, ids)],
    }


@app.command()
def prompt(
    text: str = typer.Argument(..., help="The prompt, e.g. 'A tortoise is old, but a kitten is'."),
    answer: str = typer.Option(..., "--answer", "-a", help="The expected answer, e.g. ' young' (a leading space is added if missing)."),
    model: str = typer.Option(_model_default, "--model", "-m", help=RunConfig.model_fields["model"].description),
    top_k: int = typer.Option(10, "--top-k", "-k", min=1, help="How many of the most likely next tokens to show."),
    device: Optional[str] = opts.DEVICE,
    dtype: Optional[str] = opts.DTYPE,
    max_memory: Optional[str] = opts.MAX_MEMORY,
    device_map: Optional[str] = opts.DEVICE_MAP,
    n_devices: Optional[int] = opts.N_DEVICES,
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead of tables. [default: off]"),
    no_prepend_space: bool = typer.Option(False, "--no-prepend-space",
                                          help="Use the answer exactly as given. [default: off]"),
    processing: Optional[bool] = opts.PROCESSING,
) -> None:
    """How the model answers one prompt: tokens, the answer's rank, logit and probability, the top-k."""
    if processing is None:
        processing = RunConfig.model_fields["processing"].default
    m = load_model(model, device=device, processing=processing, dtype=dtype,
                   max_memory=None if max_memory is None else _size(max_memory), device_map=device_map,
                   n_devices=n_devices)
    for note in processing_notes(m):
        show_note(note)
    res = test_prompt(m, text, answer, top_k=top_k, prepend_space=not no_prepend_space)
    if as_json:
        typer.echo(json.dumps(res, ensure_ascii=False))
        return
    bos = "BOS prepended" if res["prepend_bos"] else "no BOS prepended"
    console.print(f"Tokenized prompt ({bos}, the model's convention): {res['prompt_tokens']}",
                  highlight=False, markup=False, soft_wrap=True)
    console.print(f"Tokenized answer: {res['answer_tokens']}", highlight=False, markup=False, soft_wrap=True)
    for a in res["answer_per_token"]:
        console.print(f"Performance on answer token {a['token']!r}: rank {a['rank']}, logit {a['logit']:.2f}, "
                      f"prob {a['prob']:.2%}", highlight=False, markup=False)
    t = Table("rank", "token", "logit", "prob", title=f"Top {top_k} next tokens")
    for i, r in enumerate(res["top_k"]):
        t.add_row(str(i), repr(r["token"]), f"{r['logit']:.2f}", f"{r['prob']:.2%}")
    console.print(t)
