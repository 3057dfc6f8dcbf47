"""The bundled model ships whole, safe and small, and loads offline by its short name."""

from __future__ import annotations

import json
import re
import socket

import pytest

from circuitwise.models.bundled import BUNDLED_DIR, bundled_path
from circuitwise.models.loading import resolve_name

MAX_BYTES = 8 * 1024 * 1024


def test_folder_holds_safetensors_config_tokenizer_and_card():
    names = {p.name for p in BUNDLED_DIR.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "MODEL_CARD.md"} <= names


def test_no_pickles_and_at_most_8_mib():
    files = [p for p in BUNDLED_DIR.rglob("*") if p.is_file()]
    assert not [p.name for p in files if p.suffix in (".bin", ".pt", ".pth", ".pkl", ".ckpt")]
    assert sum(p.stat().st_size for p in files) <= MAX_BYTES


def test_config_is_gpt2():
    cfg = json.loads((BUNDLED_DIR / "config.json").read_text())
    assert cfg["model_type"] == "gpt2"
    assert cfg["architectures"] == ["GPT2LMHeadModel"]


def test_short_name_resolves_to_the_folder():
    assert bundled_path() == BUNDLED_DIR
    assert resolve_name("bundled") == (str(BUNDLED_DIR), True)


@pytest.fixture(scope="module")
def hf_tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(BUNDLED_DIR))


def test_tokenizer_follows_gpt2_conventions(hf_tokenizer):
    eot = "<|endoftext|>"
    assert hf_tokenizer.bos_token == hf_tokenizer.eos_token == eot
    # Leading-space tokens, no BOS added by encode(), byte-level round trip of any text.
    ids = hf_tokenizer.encode(" young")
    assert len(ids) == 1 and ids[0] != hf_tokenizer.bos_token_id
    assert hf_tokenizer.convert_ids_to_tokens(ids)[0] == "\u0120young"
    text = "Zebras & naïve café: 42!"
    assert hf_tokenizer.decode(hf_tokenizer.encode(text)) == text


def test_every_opposites_word_is_one_token(hf_tokenizer):
    from circuitwise.tasks.builtin import opposites

    words = {w for p in opposites.PAIRS for w in (p.a, p.b, *p.nouns_a, *p.nouns_b)}
    for t in opposites.TEMPLATES:
        words |= set(re.findall(r"[A-Za-z]+", re.sub(r"\{[^}]*\}", " ", t)))
    split = [w for w in sorted(words) if len(hf_tokenizer.encode(" " + w)) != 1]
    assert not split, f"not single tokens: {split}"
    openers = {t.split()[0] for t in opposites.TEMPLATES if not t.startswith("{")} | {"A", "An"}
    assert all(len(hf_tokenizer.encode(w)) == 1 for w in openers)


def test_loads_by_name_with_the_network_cut(monkeypatch):
    """cw.load_model('bundled') needs no Hub: any attempt to open a socket fails the test."""
    import circuitwise as cw

    def no_network(*args, **kwargs):
        raise AssertionError("the bundled model tried to reach the network")

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    model = cw.load_model("bundled", device="cpu")
    assert model.cfg.n_layers >= 1 and model.cfg.default_prepend_bos
    tokens = model.to_tokens("A grandfather is old, but a kitten is")
    assert int(tokens[0, 0]) == model.tokenizer.bos_token_id


def test_model_card_reports_held_out_scores_and_the_ablation():
    card = (BUNDLED_DIR / "MODEL_CARD.md").read_text()
    for needle in ("heldout-pair", "heldout-template", "Training curve", "scripts/train_bundled.py", "top-3 heads"):
        assert needle in card


def test_training_corpus_never_shows_a_held_out_pair_or_template():
    """The corpus the script trains on keeps the opposites task's held-out splits out."""
    import random
    import sys
    from pathlib import Path

    from circuitwise.tasks.builtin import opposites

    sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "scripts"))
    try:
        from bundled_corpus import Corpus, opposites_vocabulary
    finally:
        sys.path.pop(0)
    train = opposites.build(split="train").examples
    corpus = Corpus(train, opposites.PAIRS, opposites_vocabulary(opposites.PAIRS, opposites.TEMPLATES), seed=0)
    sentences = [p.prompt + p.answer + p.tail for _ in range(3000) for p in corpus.document()]
    assert any(", but " in s for s in sentences)
    held_templates = [
        re.compile(re.sub(r"\\\{[^}]*\\\}", r"\\w+", re.escape(t))) for t in opposites.HELDOUT_TEMPLATES
    ]
    for s in sentences:
        words = set(re.findall(r"[a-z]+", s))
        assert not any({p.a, p.b} <= words for p in opposites.HELDOUT_PAIRS), s
        assert not any(t.match(s) for t in held_templates), s
    # and the held-out template pattern does match its own prompts (the check above can fire)
    probe = opposites.build(n=5, split="heldout-template", seed=random.Random(0).randrange(100))
    assert all(any(t.match(e.clean) for t in held_templates) for e in probe.examples)
