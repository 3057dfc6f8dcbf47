"""The bundled model's synthetic corpus and its byte-level BPE tokenizer.

Sentence kinds (one :class:`Piece` each; a document is 1–3 of them):

``opposite``  the built-in ``opposites`` task's *training split* prompt with its answer
              ("A grandfather is old, but a kitten is young."); a share of them are the task's
              own ``flip`` corruptions with their answer ("A grandfather is young, but a kitten
              is old."), so the first adjective, not the nouns, decides the answer.
``fact``      one noun and one adjective it typifies, from the task's word lists, for every
              pair ("The library is quiet."). The two adjectives of a pair never share a
              sentence here, so a held-out pair is never seen together: the model can answer it
              only from what it knows about the second noun and from the adjective it must not
              repeat.
``copy``      "The fox is red, and the cat is also red.": the same (non-task) adjective again
              after "and", so the model has to read the connective, not just the frame.
``filler``    sentences with no opposites, using the task templates' words one at a time (so a
              held-out template is a new sentence, not new words).
``ioi``       "When Mary and John went to the store, John gave a drink to Mary."
``counting``  "Count: three, four, five."
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from typing import Iterable, Sequence

EOT = "<|endoftext|>"

NAMES = (
    "Mary", "John", "Alice", "Bob", "Tom", "Anna", "Lucy", "James", "Sarah", "David", "Emma",
    "Paul", "Kate", "Mark", "Laura", "Peter", "Rose", "Jack", "Julia", "Sam",
)
PLACES = ("store", "park", "school", "beach", "market", "garden", "station", "office", "farm", "city")
OBJECTS = ("drink", "book", "ring", "letter", "gift", "ball", "key", "flower", "coin", "hat")
VERBS = ("saw", "liked", "found", "painted", "watched", "followed", "visited", "carried")
# Adjectives outside the task, with no opposite among them: filler and copy sentences only.
FILLER_ADJ = ("red", "blue", "green", "yellow", "purple", "orange", "pink", "brown", "new",
              "nice", "strange", "funny", "busy", "calm", "wooden", "striped", "famous", "lucky")
NUMBERS = ("one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
           "eleven", "twelve")

IOI_TEMPLATES = (
    "When {A} and {B} went to the {place}, {B} gave a {obj} to {A}.",
    "After {A} and {B} went to the {place}, {B} gave a {obj} to {A}.",
    "Then {A} and {B} had a long day at the {place}, and {B} gave a {obj} to {A}.",
    "While {A} and {B} were at the {place}, {B} handed a {obj} to {A}.",
)

# Share of each sentence kind, and of opposites sentences that are flip corruptions.
MIX = {"opposite": 0.4, "fact": 0.25, "copy": 0.05, "filler": 0.15, "ioi": 0.09, "counting": 0.06}
FLIP_SHARE = 0.15


@dataclass(frozen=True)
class Piece:
    """A sentence split where the loss is weighted: ``prompt`` + ``answer`` + ``tail``."""

    prompt: str
    answer: str = ""
    tail: str = ""
    weight: float = 1.0  # loss weight of the answer token


@dataclass(frozen=True)
class Vocabulary:
    """The words of the opposites task (all splits) the tokenizer must keep whole."""

    adjectives: tuple[str, ...]
    nouns: tuple[str, ...]
    template_words: tuple[str, ...]

    def task_words(self) -> list[str]:
        extra = (*NAMES, *PLACES, *OBJECTS, *VERBS, *FILLER_ADJ, *NUMBERS, "Count", "also", "and")
        return sorted({*self.adjectives, *self.nouns, *self.template_words, *extra})


def opposites_vocabulary(pairs: Sequence, templates: Sequence[str]) -> Vocabulary:
    adjs, nouns = set(), set()
    for p in pairs:
        adjs |= {p.a, p.b}
        nouns |= set(p.nouns_a) | set(p.nouns_b)
    words: set[str] = set()
    for t in templates:
        words |= set(re.findall(r"[A-Za-z]+", re.sub(r"\{[^}]*\}", " ", t)))
    words |= {"a", "an", "A", "An"}  # the templates' {art}/{Art} placeholders
    return Vocabulary(tuple(sorted(adjs)), tuple(sorted(nouns)), tuple(sorted(words)))


def noun_facts(pairs: Sequence) -> list[tuple[str, str]]:
    """(noun, adjective) for every noun listed under a pole, over all pairs."""
    return sorted({(n, p.a) for p in pairs for n in p.nouns_a} | {(n, p.b) for p in pairs for n in p.nouns_b})


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


class Corpus:
    """Seeded generator of training documents (lists of :class:`Piece`)."""

    def __init__(self, train_examples: Sequence, pairs: Sequence, vocab: Vocabulary, seed: int,
                 answer_weight: float = 4.0, mix: dict[str, float] = MIX, flip_share: float = FLIP_SHARE):
        self.examples = list(train_examples)
        self.facts = noun_facts(pairs)
        self.vocab = vocab
        self.rng = random.Random(seed)
        self.answer_weight = answer_weight
        self.flip_share = flip_share
        self.nouns = list(vocab.nouns)
        self.kinds = [getattr(self, k) for k in mix]
        self.weights = list(mix.values())

    # -- sentence kinds ----------------------------------------------------------------------
    def opposite(self) -> Piece:
        ex = self.rng.choice(self.examples)
        if self.rng.random() < self.flip_share:
            return Piece(ex.corrupted, ex.meta["corrupted_answer"], ".", self.answer_weight)
        return Piece(ex.clean, ex.correct, ".", self.answer_weight)

    def fact(self) -> Piece:
        r = self.rng
        noun, adj = r.choice(self.facts)
        art, name = _article(noun), r.choice(NAMES)
        frame = r.choice((
            f"The {noun} is", f"The {noun} was", f"{art.capitalize()} {noun} is",
            f"The {noun} seemed", f"The {noun} looks", f"{name} said that the {noun} was",
            f"Everyone knows that {art} {noun} is", f"{art.capitalize()} {noun} is usually",
        ))
        return Piece(frame, " " + adj, ".", 2.0)

    def copy(self) -> Piece:
        r = self.rng
        n1, n2 = r.sample(self.nouns, 2)
        adj = r.choice(FILLER_ADJ)
        return Piece(f"The {n1} is {adj}, and the {n2} is also", " " + adj, ".", 2.0)

    def filler(self) -> Piece:
        r = self.rng
        n1, n2 = r.sample(self.nouns, 2)
        adj, name, place = r.choice(FILLER_ADJ), r.choice(NAMES), r.choice(PLACES)
        forms = (
            f"The {n1} is {adj}.",
            f"{_article(adj).capitalize()} {adj} {n1} is near the {n2}.",
            f"My friend has {_article(adj)} {adj} {n1}.",
            f"In the {place}, {name} {r.choice(VERBS)} the {n1}.",
            f"{name} looks at the picture of the {n1}.",
            f"Everyone knows that {name} {r.choice(VERBS)} the {n1}.",
            f"{name} said that the {n1} was in the {place}.",
            f"{name} usually {r.choice(VERBS)} {_article(n1)} {n1} near the {n2}.",
            f"It was {_article(adj)} {adj} day at the {place}.",
            f"The {n1} and the {n2} went to the {place}.",
        )
        return Piece(r.choice(forms))

    def ioi(self) -> Piece:
        a, b = self.rng.sample(NAMES, 2)
        text = self.rng.choice(IOI_TEMPLATES).format(
            A=a, B=b, place=self.rng.choice(PLACES), obj=self.rng.choice(OBJECTS))
        head, _, _ = text.rpartition(" " + a + ".")
        return Piece(head, " " + a, ".", 2.0)

    def counting(self) -> Piece:
        start = self.rng.randrange(0, len(NUMBERS) - 4)
        k = self.rng.randrange(3, min(7, len(NUMBERS) - start) + 1)
        words = NUMBERS[start:start + k]
        return Piece(("Count: " if self.rng.random() < 0.5 else "") + ", ".join(words) + ".")

    def document(self, n_sentences: int | None = None) -> list[Piece]:
        """One training document: 1–3 sentences, any kind in any slot."""
        n = n_sentences or self.rng.choice((1, 1, 2, 2, 3))
        return [self.rng.choices(self.kinds, weights=self.weights)[0]() for _ in range(n)]

    def tokenizer_text(self, n_docs: int) -> Iterable[str]:
        for _ in range(n_docs):
            yield " ".join(p.prompt + p.answer + p.tail for p in self.document())


def single_token_forms(words: Sequence[str]) -> list[str]:
    """The strings that must each be one token: ``" word"`` always, ``"Word"`` when capitalised."""
    return [" " + w for w in words] + [w for w in words if w[0].isupper()]


def train_tokenizer(corpus: Corpus, vocab_size: int, n_docs: int = 20000):
    """A GPT-2-style byte-level BPE (leading-space tokens) in which every task word is one token."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import GPT2TokenizerFast

    tk = Tokenizer(models.BPE())
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    tk.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOT],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    # Every task word after a space, and capitalised words (sentence starts, names) also without
    # one, often enough that BPE merges each whole.
    forms = single_token_forms(corpus.vocab.task_words())
    word_lines = [" ".join(forms)] * 200 + [f for f in forms if not f.startswith(" ")] * 200
    tk.train_from_iterator([*corpus.tokenizer_text(n_docs), *word_lines], trainer=trainer)
    fast = GPT2TokenizerFast(tokenizer_object=tk, bos_token=EOT, eos_token=EOT, unk_token=EOT)
    split = [f for f in forms if len(fast.encode(f)) != 1]
    if split:
        raise RuntimeError(f"task words not single tokens: {split[:20]}; raise --vocab-size")
    return fast


def encode_document(encode, doc: list[Piece], bos_id: int) -> tuple[list[int], list[float]]:
    """Token ids (BOS first) and per-target loss weights (weights[i] is for predicting ids[i+1]).

    Pieces are encoded apart (``encode``: text -> ids); GPT-2's pre-tokenizer splits before a
    space, so this equals encoding the joined text, and the answer's position is known.
    """
    ids, weights = [bos_id], []
    for i, piece in enumerate(doc):
        sep = " " if i else ""
        for text, w in ((sep + piece.prompt, 1.0), (piece.answer, piece.weight), (piece.tail, 1.0)):
            if not text:
                continue
            part = list(encode(text))
            ids += part
            weights += [w] + [1.0] * (len(part) - 1)
    return ids, weights


__all__ = ["Corpus", "EOT", "Piece", "Vocabulary", "encode_document", "opposites_vocabulary",
           "single_token_forms", "train_tokenizer"]
