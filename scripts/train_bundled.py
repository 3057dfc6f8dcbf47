"""Train circuitwise's bundled model: a small GPT-2 with a real opposites circuit, offline.

    python scripts/train_bundled.py            # writes src/circuitwise/models/bundled/

What it does, all seeded (``--seed``) and on the CPU:

1. builds a synthetic corpus (``scripts/bundled_corpus.py``): opposites sentences from the
   built-in ``opposites`` task's *training* split only (some of them its flip corruption), mixed
   with noun facts, copy, filler, IOI-style and counting sentences;
2. trains a GPT-2-style byte-level BPE on it, checking every task word is one token;
3. trains a small ``GPT2LMHeadModel`` (next-token loss on every token, the opposites answer
   token weighted up), logging held-out scores along the way;
4. saves safetensors + tokenizer files, then re-loads the folder with ``cw.load_model`` and
   measures held-out accuracy, logit difference and the top-3-head mean-ablation drop with
   circuitwise's own functions (``scripts/bundled_eval.py``);
5. writes ``MODEL_CARD.md`` beside the weights.

The defaults are the shipped models' recipe: 2000 steps (``--steps``; about 0.3 s a step on one
core, so some 10 minutes, plus a few seconds per ``--eval-every`` evaluation), lr 3e-3, weight
decay 0.3; for ``--arch gpt2`` also 128 positions and ``--position-jitter``. Held-out scores are
not monotone in the steps: a model that has fitted its training frames can lose the held-out
ones, which is why the corpus composes its frames at random rather than relying on more steps.
With the same torch build and thread count (``--threads``, default 1) the weights come out bit
for bit the same; the evaluations along the way do not change them.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import math
import os
import platform
import random
import shutil
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bundled_corpus import EOT, Corpus, encode_document, opposites_vocabulary, train_tokenizer  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "src" / "circuitwise" / "models"
DEFAULT_OUT = {"gpt2": MODELS / "bundled", "llama": MODELS / "bundled_llama"}
MAX_BYTES = 6 * 1024 * 1024  # each; the two bundled models together stay within 12 MB
HELDOUT_SPLITS = ("heldout-pair", "heldout-template", "heldout-both")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=None, help="default: the package's folder for --arch")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--weight-decay", type=float, default=0.3)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--d-model", type=int, default=128)
    p.add_argument("--n-positions", type=int, default=None, help="the model's positions (default: gpt2 128, llama 64)")
    p.add_argument("--doc-tokens", type=int, default=64, help="training documents are cut to this many tokens")
    p.add_argument("--position-jitter", action=argparse.BooleanOptionalAction, default=None,
                   help="gpt2 only (its default): start each training row at a random position (seeded), so "
                        "learned position embeddings cannot tie a template's words to where they stand")
    p.add_argument("--vocab-size", type=int, default=2048, help="upper bound; BPE stops when out of merges")
    p.add_argument("--arch", choices=("gpt2", "llama"), default="gpt2",
                   help="GPT2LMHeadModel (writes models/bundled) or LlamaForCausalLM (models/bundled_llama)")
    p.add_argument("--kv-heads", type=int, default=2, help="llama only: key/value heads (grouped-query)")
    p.add_argument("--d-mlp", type=int, default=None, help="MLP width (default 4 d_model; llama 3 d_model)")
    p.add_argument("--definitions", choices=("all", "train"), default="all",
                   help="pairs the definition sentences cover; 'train' is the control run without "
                        "the held-out pairs' antonymy")
    p.add_argument("--mlp-free-last", action=argparse.BooleanOptionalAction, default=False,
                   help="zero and freeze the last layer's MLP, so attention heads write the answer")
    p.add_argument("--control", type=Path, default=None,
                   help="training_log.json of the --definitions train control run, quoted in the card")
    p.add_argument("--eval-only", action="store_true",
                   help="skip training: measure the folder --out already holds (its training_log.json "
                        "gives the curve) and write its card")
    p.add_argument("--final-eval", action=argparse.BooleanOptionalAction, default=True,
                   help="measure the saved folder through circuitwise and write MODEL_CARD.md")
    p.add_argument("--answer-weight", type=float, default=4.0)
    p.add_argument("--eval-every", type=int, default=400)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--n-heldout", type=int, default=400, help="prompts per held-out split")
    args = p.parse_args(argv)
    # The per-architecture defaults (the shipped recipes).
    if args.n_positions is None:
        args.n_positions = 128 if args.arch == "gpt2" else 64
    if args.position_jitter is None:
        args.position_jitter = args.arch == "gpt2"
    if args.position_jitter and args.arch != "gpt2":
        p.error("--position-jitter is for --arch gpt2's learned positions (rotary ones are relative)")
    if args.doc_tokens > args.n_positions:
        p.error("--doc-tokens must be at most --n-positions")
    return args


# -- the task ---------------------------------------------------------------------------------

def flipped(task):
    """The flip corruption with its answers swapped: right only if the first adjective decides
    (and the nouns, which typify the clean prompt's adjectives, point to the wrong answer)."""
    from circuitwise.tasks.task import Example, Task

    return Task(f"flipped-{task.name}",
                tuple(Example(e.corrupted, e.incorrect, e.correct) for e in task.examples))


def probe_tasks(seed: int, n: int) -> dict:
    """Every split the card reports: opposites held out (as is and flipped), numbers, time zones."""
    import circuitwise as cw

    out = {"train": cw.get_task("opposites", n=200, seed=seed, split="train")}
    out["timezones[train]"] = cw.get_task("timezones", n=200, seed=seed, split="train")
    for s in HELDOUT_SPLITS:
        out[s] = cw.get_task("opposites", n=n, seed=seed, split=s)
    for s in HELDOUT_SPLITS:
        out[f"flipped-{s}"] = flipped(out[s])
    for t in ("numbers-digits", "numbers-words"):
        out[f"{t}[heldout-template]"] = cw.get_task(t, n=n, seed=seed, split="heldout-template")
    for form in ("digits", "words"):
        out[f"timezones[{form}-heldout-template]"] = cw.get_task(
            "timezones", n=n, seed=seed, split=f"{form}-heldout-template")
    return out


# -- training ---------------------------------------------------------------------------------

def make_batch(corpus: Corpus, encode, bos: int, batch_size: int, n_pos: int):
    rows = [encode_document(encode, corpus.document(), bos) for _ in range(batch_size)]
    rows = [(ids[:n_pos], w[: n_pos - 1]) for ids, w in rows]
    width = max(len(ids) for ids, _ in rows)
    ids_t = torch.full((batch_size, width), bos, dtype=torch.long)
    w_t = torch.zeros(batch_size, width - 1)
    for i, (ids, w) in enumerate(rows):
        ids_t[i, : len(ids)] = torch.tensor(ids)
        w_t[i, : len(w)] = torch.tensor(w)
    return ids_t, w_t


@torch.no_grad()
def quick_scores(model, tok, task) -> tuple[float, float]:
    """Accuracy and mean logit diff with plain Hugging Face (for the training curve only)."""
    bos = tok.convert_tokens_to_ids(EOT)
    prompts = [[bos] + tok.encode(e.clean) for e in task.examples]
    ans = torch.tensor([[tok.encode(e.correct)[0], tok.encode(e.incorrect)[0]] for e in task.examples])
    width = max(map(len, prompts))
    ids = torch.full((len(prompts), width), bos)
    for i, p in enumerate(prompts):
        ids[i, : len(p)] = torch.tensor(p)
    last = torch.tensor([len(p) - 1 for p in prompts])
    logits = model(ids).logits[torch.arange(len(prompts)), last]
    ld = logits.gather(1, ans)
    ld = ld[:, 0] - ld[:, 1]
    return float((ld > 0).float().mean()), float(ld.mean())


def build_model(args, vocab_size: int, bos: int):
    if args.arch == "llama":
        from transformers import LlamaConfig, LlamaForCausalLM

        cfg = LlamaConfig(
            vocab_size=vocab_size, hidden_size=args.d_model, intermediate_size=args.d_mlp or 3 * args.d_model,
            num_hidden_layers=args.layers, num_attention_heads=args.heads, num_key_value_heads=args.kv_heads,
            max_position_embeddings=args.n_positions, rms_norm_eps=1e-5, rope_theta=10000.0,
            hidden_act="silu", attention_bias=False, mlp_bias=False, tie_word_embeddings=True,
            bos_token_id=bos, eos_token_id=bos, attention_dropout=0.0,
        )
        return LlamaForCausalLM(cfg)
    from transformers import GPT2Config, GPT2LMHeadModel

    cfg = GPT2Config(
        vocab_size=vocab_size, n_positions=args.n_positions, n_embd=args.d_model,
        n_layer=args.layers, n_head=args.heads, n_inner=args.d_mlp, bos_token_id=bos, eos_token_id=bos,
        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, tie_word_embeddings=True,
    )
    return GPT2LMHeadModel(cfg)


def train(args, corpus: Corpus, tok, probes: dict) -> tuple[object, list[dict]]:
    bos = tok.convert_tokens_to_ids(EOT)
    torch.manual_seed(args.seed)
    model = build_model(args, len(tok), bos)
    frozen = set()
    if args.mlp_free_last:
        # The architecture stays GPT-2 (so every loader takes it); the last MLP just writes zero.
        mlp = model.transformer.h[-1].mlp
        for p in mlp.parameters():
            torch.nn.init.zeros_(p)
            p.requires_grad_(False)
            frozen.add(id(p))
    params = [p for p in model.parameters() if id(p) not in frozen]
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": args.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=args.lr, betas=(0.9, 0.98))
    warmup = max(1, args.steps // 20)

    def lr_at(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        t = (step - warmup) / max(1, args.steps - warmup)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * t))

    encode = functools.lru_cache(maxsize=None)(lambda s: tuple(tok.encode(s)))
    # Its own generator, so the corpus and the weights' initialisation are those of a run without it.
    jitter = torch.Generator().manual_seed(args.seed + 2) if args.position_jitter else None
    curve, t0, running = [], time.time(), []
    for step in range(args.steps + 1):
        if step % args.eval_every == 0 or step == args.steps:
            model.eval()
            row = {"step": step, "minutes": round((time.time() - t0) / 60, 2),
                   "loss": round(sum(running) / len(running), 4) if running else None}
            for name, task in probes.items():
                row[f"{name}_acc"], row[f"{name}_ld"] = quick_scores(model, tok, task)
            curve.append(row)
            running = []
            print(json.dumps(row), flush=True)
            model.train()
        if step == args.steps:
            break
        for g in opt.param_groups:
            g["lr"] = args.lr * lr_at(step)
        ids, w = make_batch(corpus, encode, bos, args.batch_size, args.doc_tokens)
        positions = None
        if jitter is not None:
            start = torch.randint(0, args.n_positions - ids.shape[1] + 1, (len(ids), 1), generator=jitter)
            positions = start + torch.arange(ids.shape[1])
        logits = model(ids, position_ids=positions).logits[:, :-1]
        ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1), reduction="none")
        loss = (ce * w.reshape(-1)).sum() / w.sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        running.append(float(loss.detach()))
    model.eval()
    return model, curve


# -- saving and the card ----------------------------------------------------------------------

def save(model, tok, out: Path) -> int:
    if out.exists():
        for f in out.iterdir():
            if f.name != "MODEL_CARD.md":
                f.unlink() if f.is_file() else shutil.rmtree(f)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)
    for junk in ("generation_config.json",):
        (out / junk).unlink(missing_ok=True)
    if any(out.glob("*.bin")) or any(out.glob("*.pt")):
        raise RuntimeError("pickled weights were written; the bundled model must be safetensors only")
    size = sum(f.stat().st_size for f in out.iterdir() if f.is_file())
    if size > MAX_BYTES:
        raise RuntimeError(f"bundled model is {size / 2**20:.2f} MiB, over the {MAX_BYTES / 2**20:.0f} MiB limit")
    return size


def _portable(path: Path) -> str:
    """A path as the log records it: relative to the repository when inside it (no machine's
    home directory in a shipped file)."""
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def train_and_save(args, pairs, vocab, corpus, probes, t_start) -> tuple[dict, list[dict]]:
    from circuitwise.tasks.builtin import opposites

    # The tokenizer sees every pair's definitions whatever the run, so the control run differs
    # from the main one only in its training sentences.
    tok = train_tokenizer(Corpus(opposites.TRAIN_PAIRS, opposites.TRAIN_TEMPLATES, pairs, vocab, args.seed + 1),
                          args.vocab_size)
    model, curve = train(args, corpus(args.seed), tok, probes)
    train_minutes = (time.time() - t_start) / 60
    size = save(model, tok, args.out)
    stats = {
        "args": {k: _portable(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "n_params": sum(p.numel() for p in model.parameters()),
        "size_bytes": size,
        "train_minutes": round(train_minutes, 2),
        "n_train_pairs": len(opposites.TRAIN_PAIRS),
        "n_train_templates": len(opposites.TRAIN_TEMPLATES),
        "vocab_size": len(tok),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "load_at_start": os.getloadavg()[0],
    }
    (args.out / "training_log.json").write_text(json.dumps({"stats": stats, "curve": curve}, indent=1))
    return stats, curve


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    args.out = args.out or DEFAULT_OUT[args.arch]
    torch.set_num_threads(args.threads)
    random.seed(args.seed)
    t_start = time.time()
    from circuitwise.tasks.builtin import opposites

    pairs, templates = opposites.PAIRS, opposites.TEMPLATES
    definition_pairs = pairs if args.definitions == "all" else opposites.TRAIN_PAIRS
    vocab = opposites_vocabulary(pairs, templates)

    def corpus(seed: int) -> Corpus:
        return Corpus(opposites.TRAIN_PAIRS, opposites.TRAIN_TEMPLATES, definition_pairs, vocab, seed,
                      answer_weight=args.answer_weight)

    probes = probe_tasks(args.seed, args.n_heldout)
    if args.eval_only:
        logged = json.loads((args.out / "training_log.json").read_text())
        stats, curve = logged["stats"], logged["curve"]
    else:
        stats, curve = train_and_save(args, pairs, vocab, corpus, probes, t_start)
    if not args.final_eval:
        return
    import circuitwise as cw
    from bundled_card import facts, write_card
    from bundled_eval import evaluate

    t_eval = time.time()
    bridge = cw.load_model(str(args.out), device="cpu")
    measured = evaluate(bridge, probes, args.seed, args.n_heldout)
    stats["eval_minutes"] = round((time.time() - t_eval) / 60, 2)
    stats["total_minutes"] = round(stats["train_minutes"] + (time.time() - t_eval) / 60, 2)
    stats["load_at_end"] = os.getloadavg()[0]
    stats["args"] = {**stats["args"], "out": _portable(args.out)}
    stats["sha256"] = hashlib.sha256((args.out / "model.safetensors").read_bytes()).hexdigest()
    control = json.loads(args.control.read_text()) if args.control else None
    (args.out / "training_log.json").write_text(json.dumps({"stats": stats, "curve": curve}, indent=1))
    (args.out / "card_facts.json").write_text(json.dumps(
        {"seed": args.seed, "n": args.n_heldout, **facts(measured),
         "control": control["curve"][-1] if control else None}, indent=1))
    write_card(args.out / "MODEL_CARD.md", stats, curve, measured, control, pairs, templates)
    print(json.dumps({"stats": stats, "scores": {k: v.__dict__ for k, v in measured["scores"].items()},
                      "named_heads": measured["named_heads"]}, indent=1))


if __name__ == "__main__":
    main()
