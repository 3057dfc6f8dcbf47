"""Train the transcoders shipped for the bundled models, on the bundled models' own corpus.

    python scripts/train_bundled_transcoders.py                 # both models
    python scripts/train_bundled_transcoders.py --model bundled-llama

For each model: per-layer TopK skip transcoders (width 1024, k 16, ``--tokens`` training tokens)
trained on documents of ``scripts/bundled_corpus.py`` (the corpus ``train_bundled.py`` trains the
models on, generated with another seed), their card measured on :func:`heldout_texts` (another seed
again), written to ``src/circuitwise/features/bundled/<model>/`` with ``CARD.md`` and ``card.json``.
A checkpoint in ``--checkpoint-dir`` (default: a folder beside the output) lets an interrupted run
resume; with the same torch build and ``--threads`` the weights come out bit for bit the same.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bundled_corpus import Corpus, opposites_vocabulary  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "src" / "circuitwise" / "features" / "bundled"
FOLDERS = {"bundled": "bundled", "bundled-llama": "bundled_llama"}
TRAIN_SEED, HELDOUT_SEED = 2026, 4242
N_HELDOUT = 400


def texts(seed: int, n_docs: int) -> list[str]:
    """``n_docs`` documents of the bundled corpus (all pairs' definitions, the task's training frames)."""
    from circuitwise.tasks.builtin import opposites

    vocab = opposites_vocabulary(opposites.PAIRS, opposites.TEMPLATES)
    corpus = Corpus(opposites.TRAIN_PAIRS, opposites.TRAIN_TEMPLATES, opposites.PAIRS, vocab, seed)
    return [" ".join(p.prompt + p.answer + p.tail for p in corpus.document()) for _ in range(n_docs)]


def heldout_texts() -> list[str]:
    """The card's held-out documents (the shipped-card test recomputes the card on them)."""
    return texts(HELDOUT_SEED, N_HELDOUT)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", choices=(*FOLDERS, "all"), default="all")
    p.add_argument("--tokens", type=int, default=1_000_000)
    p.add_argument("--docs", type=int, default=20_000, help="training documents (about 25 tokens each)")
    p.add_argument("--width", type=int, default=1024)
    p.add_argument("--k", type=int, default=16)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, default=OUT)
    p.add_argument("--checkpoint-dir", type=Path, default=None)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)

    from circuitwise.features.formats import card_markdown, save_transcoders
    from circuitwise.features.train import TrainOptions, train_transcoders
    from circuitwise.models.loading import load_model

    train, held = texts(TRAIN_SEED, args.docs), heldout_texts()
    opts = TrainOptions(width=args.width, k=args.k, tokens=args.tokens, seed=args.seed)
    for name in FOLDERS if args.model == "all" else (args.model,):
        model = load_model(name)
        t0 = time.time()

        def progress(step: int, total: int, info: dict[str, float], name: str = name, t0: float = t0) -> None:
            if step % 50 == 0 or step == total:
                fvu = " ".join(f"{k} {v:.4f}" for k, v in info.items() if k.startswith("fvu"))
                print(f"{name}: step {step}/{total} {fvu} ({time.time() - t0:.0f} s)", flush=True)

        ckpt = args.checkpoint_dir or args.out / f".{FOLDERS[name]}-checkpoint"
        ts = train_transcoders(model, train, opts, heldout=held, model_name=name, checkpoint_dir=ckpt,
                               progress=progress)
        ts.meta["corpus"] = {"script": "scripts/train_bundled_transcoders.py", "train_seed": TRAIN_SEED,
                             "train_docs": args.docs, "heldout_seed": HELDOUT_SEED, "heldout_docs": N_HELDOUT}
        out = args.out / FOLDERS[name]
        if out.exists():
            shutil.rmtree(out)
        save_transcoders(ts, out)
        shutil.rmtree(ckpt, ignore_errors=True)
        print(card_markdown(ts), flush=True)


if __name__ == "__main__":
    main()
