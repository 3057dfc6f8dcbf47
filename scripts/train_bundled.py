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

It takes about 7 minutes on one thread of a busy 2-core machine. With the same torch build and
thread count (``--threads``, default 1) the weights come out bit for bit the same.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
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
DEFAULT_OUT = ROOT / "src" / "circuitwise" / "models" / "bundled"
MAX_BYTES = 8 * 1024 * 1024
HELDOUT_SPLITS = ("heldout-pair", "heldout-template", "heldout-both")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--weight-decay", type=float, default=0.1)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--d-model", type=int, default=128)
    p.add_argument("--n-positions", type=int, default=64)
    p.add_argument("--vocab-size", type=int, default=2048, help="upper bound; BPE stops when out of merges")
    p.add_argument("--mlp-free-last", action=argparse.BooleanOptionalAction, default=True,
                   help="zero and freeze the last layer's MLP, so attention heads write the answer")
    p.add_argument("--answer-weight", type=float, default=4.0)
    p.add_argument("--eval-every", type=int, default=250)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--n-heldout", type=int, default=400, help="prompts per held-out split")
    return p.parse_args(argv)


# -- the task ---------------------------------------------------------------------------------

def task_splits(seed: int, n_heldout: int):
    """(pairs, templates, training examples, {held-out split: Task}) from the task library."""
    from circuitwise.tasks.builtin import opposites

    # Every prompt of the training split (training pairs on training templates, both directions,
    # every noun pairing); held-out pairs and templates stay out of the opposites sentences.
    train = list(opposites.build(split="train", seed=seed).examples)
    heldout = {s: opposites.build(n=n_heldout, seed=seed, split=s) for s in HELDOUT_SPLITS}
    return opposites.PAIRS, opposites.TEMPLATES, train, heldout


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


def train(args, corpus: Corpus, tok, probes: dict) -> tuple[object, list[dict]]:
    from transformers import GPT2Config, GPT2LMHeadModel

    bos = tok.convert_tokens_to_ids(EOT)
    cfg = GPT2Config(
        vocab_size=len(tok), n_positions=args.n_positions, n_embd=args.d_model,
        n_layer=args.layers, n_head=args.heads, bos_token_id=bos, eos_token_id=bos,
        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, tie_word_embeddings=True,
    )
    torch.manual_seed(args.seed)
    model = GPT2LMHeadModel(cfg)
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
        ids, w = make_batch(corpus, encode, bos, args.batch_size, args.n_positions)
        logits = model(ids).logits[:, :-1]
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
        raise RuntimeError(f"bundled model is {size / 2**20:.2f} MiB, over the 8 MiB limit")
    return size


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    random.seed(args.seed)
    t_start = time.time()

    pairs, templates, train_examples, heldout = task_splits(args.seed, args.n_heldout)
    vocab = opposites_vocabulary(pairs, templates)
    tok = train_tokenizer(Corpus(train_examples, pairs, vocab, args.seed + 1), args.vocab_size)
    corpus = Corpus(train_examples, pairs, vocab, args.seed, answer_weight=args.answer_weight)
    probe = random.Random(args.seed).sample(train_examples, min(200, len(train_examples)))
    from circuitwise.tasks.task import Example, Task

    # The flip corruption with its answers swapped: right only if the first adjective decides.
    def flipped(task):
        return Task("flipped", tuple(Example(e.corrupted, e.incorrect, e.correct) for e in task.examples))

    flips = flipped(heldout["heldout-template"])
    probes = {"train": Task("train-probe", tuple(probe)), **heldout, "flipped-heldout-template": flips}
    model, curve = train(args, corpus, tok, probes)
    train_minutes = (time.time() - t_start) / 60
    size = save(model, tok, args.out)

    import circuitwise as cw
    from bundled_card import write_card
    from bundled_eval import ablation, attention_by_role, components, scores

    bridge = cw.load_model(str(args.out), device="cpu")
    from circuitwise.tasks.builtin import opposites

    studied = {**heldout, "all": opposites.build(n=args.n_heldout, seed=args.seed)}
    results = {name: scores(bridge, task) for name, task in studied.items()}
    results["flipped-train"] = scores(bridge, flipped(probes["train"]))
    results["flipped-heldout-template"] = scores(bridge, flips)
    abl = {name: ablation(bridge, task) for name, task in studied.items()}
    comps = {name: components(bridge, task) for name, task in studied.items()}
    attn = {name: attention_by_role(bridge, studied[name]) for name in ("all", "heldout-template")}
    stats = {
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "n_params": sum(p.numel() for p in model.parameters()),
        "size_bytes": size,
        "train_minutes": round(train_minutes, 2),
        "total_minutes": round((time.time() - t_start) / 60, 2),
        "n_train_examples": len({e.clean for e in train_examples}),
        "n_heldout": args.n_heldout,
        "n_train_pairs": len(opposites.TRAIN_PAIRS),
        "n_train_templates": len(opposites.TRAIN_TEMPLATES),
        "vocab_size": len(tok),
        "torch": torch.__version__,
        "python": platform.python_version(),
    }
    write_card(args.out / "MODEL_CARD.md", stats, curve, results, abl, comps, attn, pairs, templates)
    print(json.dumps({"scores": {k: v.__dict__ for k, v in results.items()},
                      "ablation": {k: {"heads": v.heads, "clean": v.clean, "drop_all_pos": v.drop_all_pos,
                                       "drop_last_pos": v.drop_last_pos} for k, v in abl.items()},
                      **stats}, indent=1))


if __name__ == "__main__":
    main()
