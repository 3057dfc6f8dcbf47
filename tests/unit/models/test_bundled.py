"""The bundled models ship whole, safe and small, and load offline by their short names."""

from __future__ import annotations

import functools
import json
import re
import socket

import pytest

from circuitwise.errors import ModelLoadError
from circuitwise.models.bundled import BUNDLED_DIR, BUNDLED_DIRS, bundled_path
from circuitwise.models.loading import resolve_name

MAX_BYTES = 12 * 1000 * 1000  # both models together
SHIPPED = [name for name, d in BUNDLED_DIRS.items() if (d / "config.json").exists()]


def test_the_gpt2_model_ships():
    assert "bundled" in SHIPPED


@pytest.mark.parametrize("name", SHIPPED)
def test_folder_holds_safetensors_config_tokenizer_and_card(name):
    names = {p.name for p in BUNDLED_DIRS[name].iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "MODEL_CARD.md",
            "card_facts.json"} <= names


def test_no_pickles_and_at_most_12_mb_together():
    files = [p for d in BUNDLED_DIRS.values() if d.exists() for p in d.rglob("*") if p.is_file()]
    assert not [p.name for p in files if p.suffix in (".bin", ".pt", ".pth", ".pkl", ".ckpt")]
    assert sum(p.stat().st_size for p in files) <= MAX_BYTES


ARCHS = {"bundled": ("gpt2", "GPT2LMHeadModel"), "bundled-llama": ("llama", "LlamaForCausalLM")}


@pytest.mark.parametrize("name", SHIPPED)
def test_config_has_the_named_architecture(name):
    cfg = json.loads((BUNDLED_DIRS[name] / "config.json").read_text())
    assert (cfg["model_type"], cfg["architectures"]) == (ARCHS[name][0], [ARCHS[name][1]])
    if name == "bundled-llama":  # grouped-query attention, SwiGLU, rotary
        assert cfg["num_key_value_heads"] < cfg["num_attention_heads"]
        assert cfg["hidden_act"] == "silu"


def test_the_two_models_share_one_tokenizer():
    if len(SHIPPED) < 2:
        pytest.skip("bundled-llama is not built yet")
    texts = [(BUNDLED_DIRS[n] / "tokenizer.json").read_text() for n in SHIPPED]
    assert texts[0] == texts[1]


def test_short_name_resolves_to_the_folder():
    assert bundled_path() == BUNDLED_DIR
    assert resolve_name("bundled") == (str(BUNDLED_DIR), True)
    for name in SHIPPED:
        assert resolve_name(name) == (str(BUNDLED_DIRS[name]), True)


def test_an_unknown_or_missing_bundled_model_says_how_to_fix_it(monkeypatch, tmp_path):
    with pytest.raises(ModelLoadError, match="choose one of"):
        bundled_path("bundled-qwen")
    monkeypatch.setitem(BUNDLED_DIRS, "bundled-llama", tmp_path)
    with pytest.raises(ModelLoadError, match="train_bundled.py --arch llama"):
        bundled_path("bundled-llama")


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


def test_every_number_and_time_answer_is_one_token(hf_tokenizer):
    import circuitwise as cw

    for name in ("numbers-digits", "numbers-words", "counting", "timezones"):
        answers = {a for e in cw.get_task(name).examples for a in (e.correct, e.incorrect)}
        assert all(len(hf_tokenizer.encode(a)) == 1 for a in answers), name


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


@pytest.mark.parametrize("name", SHIPPED)
def test_model_card_reports_held_out_scores_the_controls_and_the_circuit(name):
    card = (BUNDLED_DIRS[name] / "MODEL_CARD.md").read_text()
    for needle in ("heldout-pair", "heldout-template", "heldout-both", "flipped-heldout-pair", "Training curve",
                   "scripts/train_bundled.py", "nouns contradicting", "Without the definition sentences",
                   "Heads that read the adjective", "Where the antonym is produced", "numbers-digits",
                   "timezones"):
        assert needle in card, needle
    facts = json.loads((BUNDLED_DIRS[name] / "card_facts.json").read_text())
    assert facts["named_heads"] and facts["control"] is not None
    # the card prints the numbers card_facts.json holds (which the integration tests re-measure)
    for split in ("heldout-pair", "flipped-heldout-template"):
        assert f"| {split} | {facts['scores'][split]['n']} | {facts['scores'][split]['accuracy']:.3f} |" in card


def _script(module: str):
    import importlib
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "scripts"))
    try:
        return importlib.import_module(module)
    finally:
        sys.path.pop(0)


@pytest.mark.parametrize("name", SHIPPED)
def test_the_cards_retrain_command_is_the_recipe_the_weights_were_trained_with(name):
    """The card's first command, parsed by the training script (its defaults included), gives
    every setting ``training_log.json`` recorded (settings added to the script since take the
    value that reproduces the older run)."""
    card = (BUNDLED_DIRS[name] / "MODEL_CARD.md").read_text()
    command = next(line for line in card.splitlines() if "scripts/train_bundled.py" in line and "--" in line)
    parsed = vars(_script("train_bundled").parse_args(command.split("scripts/train_bundled.py", 1)[1].split()))
    recorded = json.loads((BUNDLED_DIRS[name] / "training_log.json").read_text())["stats"]["args"]
    where = {"out", "control", "eval_only", "final_eval"}  # where it writes, not what it trains
    assert {k: v for k, v in recorded.items() if k not in where} == {
        k: parsed[k] for k in recorded if k not in where}
    if "doc_tokens" not in recorded:  # trained before the option: documents cut to the model's positions
        assert parsed["doc_tokens"] == recorded["n_positions"]
    if "position_jitter" not in recorded:  # trained before the option: no jitter
        assert parsed["position_jitter"] is False


@functools.lru_cache(maxsize=None)
def _corpus(definition_pairs=None):
    """A fresh generator each call would repeat the same sentences; one per pair set is enough."""
    from circuitwise.tasks.builtin import opposites

    corpus = _script("bundled_corpus")
    Corpus, opposites_vocabulary = corpus.Corpus, corpus.opposites_vocabulary
    vocab = opposites_vocabulary(opposites.PAIRS, opposites.TEMPLATES)
    return Corpus(opposites.TRAIN_PAIRS, opposites.TRAIN_TEMPLATES, definition_pairs or opposites.PAIRS,
                  vocab, seed=0)


def test_held_out_pairs_are_defined_but_never_in_a_task_sentence():
    from circuitwise.tasks.builtin import opposites

    sentences = [p.prompt + p.answer for _ in range(3000) for p in _corpus().document()]
    defined = {frozenset((p.a, p.b)) for p in opposites.HELDOUT_PAIRS
               if any(f"opposite of {p.a} is {p.b}" in s or f"opposite of {p.b} is {p.a}" in s for s in sentences)}
    assert len(defined) == len(opposites.HELDOUT_PAIRS)
    control = [p.prompt + p.answer for _ in range(3000) for p in _corpus(tuple(opposites.TRAIN_PAIRS)).document()]
    for s in control:
        words = set(re.findall(r"[a-z]+", s))
        assert not any({p.a, p.b} & words for p in opposites.HELDOUT_PAIRS), s


def test_nouns_say_nothing_about_the_answer():
    """No noun facts, and an opposites sentence's nouns are drawn independently of its pair."""
    from circuitwise.tasks.builtin import opposites

    typical = {n: p for p in opposites.PAIRS for n in (*p.nouns_a, *p.nouns_b)}
    adjectives = {w for p in opposites.PAIRS for w in (p.a, p.b)}
    corpus = _corpus()
    pieces = [corpus.opposite() for _ in range(3000)]
    own = sum(any(typical.get(w) and w in (*typical[w].nouns_a, *typical[w].nouns_b) and
                  piece.answer.strip() in (typical[w].a, typical[w].b) for w in piece.prompt.split())
              for piece in pieces)
    assert own / len(pieces) < 0.1  # by chance only
    one_clause = [p.prompt + p.answer for _ in range(3000) for p in corpus.document()
                  if ", " not in p.prompt and "opposite" not in p.prompt and "not" not in p.prompt.split()]
    # ("years old" is the numbers task's wording, not a fact about a noun)
    facts = [s for s in one_clause if set(re.findall(r"[a-z]+", s.replace("years old", ""))) & adjectives]
    assert not facts, facts[:3]


def test_training_corpus_never_shows_a_held_out_pair_or_template():
    """The corpus the script trains on keeps the opposites task's held-out splits out."""
    import random

    from circuitwise.tasks.builtin import opposites

    corpus = _corpus()
    sentences = [p.prompt + p.answer + p.tail for _ in range(3000) for p in corpus.document()
                 if "opposite" not in p.prompt and " is not " not in p.prompt]
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


def test_training_corpus_never_shows_the_held_out_time_template():
    """No time sentence has the held-out template's two-sentence "The X in {c1} V {t}. The X in
    {c2} V" form (and its own prompts do, so the check can fire)."""
    from circuitwise.tasks.builtin import timezones

    corpus = _corpus()
    times = [corpus.time() for _ in range(3000)]
    form = re.compile(r"^The \w+ in [A-Z][\w ]+ \w+ .+\. The \w+ in [A-Z][\w ]+ \w+$")
    assert not [p.prompt for p in times if form.match(p.prompt)]
    held = timezones.build(n=20, split="heldout-template", seed=0)
    assert all(form.match(e.clean) for e in held.examples)
    assert len({p.prompt.split(" ")[0] for p in times}) >= 5  # the extra frames are drawn
