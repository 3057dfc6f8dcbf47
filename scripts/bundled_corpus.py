"""The bundled models' synthetic corpus and its byte-level BPE tokenizer.

Sentence kinds (one :class:`Piece` each; a document is 1–3 of them):

``opposite``    a sentence of the ``opposites`` task's **training templates and training pairs
                only**, in either direction, with its answer ("The castle is old, but the
                puppy is young."). Its two nouns are drawn from the whole noun list, independent
                of the pair, so they say nothing about the answer: only the first adjective does.
                The others use frames of our own: :data:`EXTRA_OPPOSITE_TEMPLATES` and frames
                composed from :data:`OPPOSITE_PREFIXES` × :data:`OPPOSITE_CLAUSES` ×
                :data:`OPPOSITE_VERBS`, which put the adjective anywhere from 3 to 10 words in.
``definition``  the antonymy of **every** pair, both directions, in single-clause frames that
                are not the task's ("The opposite of old is young.", "What is the opposite of
                young? It is old."). Held-out pairs are learned from these alone.
``copy``        "The fox is red, and the cat is also red.": the same (non-task) adjective again
                after "and", so the model has to read the connective.
``filler``      sentences with no opposites, using the task templates' words one at a time (so a
                held-out template is a new sentence, not new words).
``ioi``         "When Mary and John went to the store, John gave a drink to Mary."
``count``       sequences up or down, in digits or in words ("Count: 3, 4, 5, 6.", "Count down:
                nine, eight, seven.").
``number``      the ``numbers-digits`` / ``numbers-words`` training-split prompts with their answer
                (both forms), the ``counting`` task's coin prompts in both forms, and age
                sentences ("Last year Tom was 7. This year he is 8.").
``time``        the ``timezones`` training-template prompts in both forms with their answer
                ("In Paris the time is 3:00 PM. In Boston the time is 9."), and more often
                frames of our own: :data:`EXTRA_TIME_TEMPLATES` and :data:`TIME_STATEMENTS` ×
                :data:`TIME_QUESTIONS` ("Chicago: three AM. Madrid: ten.").

No sentence states a noun fact ("The library is quiet."), and the opposites task's held-out
pairs and held-out templates never occur as two-clause "…, but …" sentences.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from typing import Iterable, Sequence

EOT = "<|endoftext|>"

NAMES = (
    "Mary", "John", "Alice", "Bob", "Tom", "Anna", "Lucy", "James", "Sarah", "David", "Emma",
    "Paul", "Kate", "Mark", "Laura", "Peter", "Rose", "Jack", "Julia", "Sam", "Lisa",
)
PLACES = ("store", "park", "school", "beach", "market", "garden", "station", "office", "farm", "city")
OBJECTS = ("drink", "book", "ring", "letter", "gift", "ball", "key", "flower", "coin", "hat")
VERBS = ("saw", "liked", "found", "painted", "watched", "followed", "visited", "carried")
# Adjectives outside the task, with no opposite among them: filler and copy sentences only.
FILLER_ADJ = ("red", "blue", "green", "yellow", "purple", "orange", "pink", "brown", "new",
              "nice", "strange", "silly", "busy", "calm", "wooden", "striped", "famous", "lucky")
NUMBER_WORDS = (
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
    "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen",
    "nineteen", "twenty",
)
EXTRA_WORDS = ("Count", "down", "also", "and", "opposite", "word", "What", "It", "it", "If",
               "something", "not", "Last", "This", "year", "AM", "PM", "hours", "Numbers", "Going",
               "Backwards", "felt", "think", "I", "Yesterday", "today", "can", "be", "became", "At",
               "thinks", "appeared", "story", "says", "Here", "there", "stays", "then", "so", "clock",
               "shows", "time", "Tomorrow", "looked", "remains", "will", "years", "old", "Next", "next", "last", "This")

IOI_TEMPLATES = (
    "When {A} and {B} went to the {place}, {B} gave a {obj} to {A}.",
    "After {A} and {B} went to the {place}, {B} gave a {obj} to {A}.",
    "Then {A} and {B} had a long day at the {place}, and {B} gave a {obj} to {A}.",
    "While {A} and {B} were at the {place}, {B} handed a {obj} to {A}.",
)
# More "…, but …" frames than the task's training templates (none of them a held-out template or
# its verb), so "the adjective before but" is learned as a pattern, not as six sentences.
EXTRA_OPPOSITE_TEMPLATES = (
    "The {n1} felt {a1}, but the {n2} felt",
    "I think the {n1} is {a1}, but the {n2} is",
    "Yesterday the {n1} was {a1}, but today the {n2} is",
    "{Art1} {n1} can be {a1}, but {art2} {n2} can be",
    "The {n1} became {a1}, but the {n2} became",
    "At the {place} the {n1} was {a1}, but the {n2} was",
    "{name} thinks the {n1} is {a1}, but the {n2} is",
    "The {n1} appeared {a1}, but the {n2} appeared",
    "The story says the {n1} is {a1}, but the {n2} is",
    "Here the {n1} stays {a1}, but there the {n2} stays",
    # The adjective later in the sentence, after a prefix clause (held-out templates put it 7–8
    # tokens in; GPT-2's learned positions must see the "…, but …" pattern that far in too). No
    # prefix here is a held-out template's ("In the picture", "said that the {n1} was") nor its
    # verb ("looks"); each ends in a training template's own clause pair.
    "When we got to the {place}, the {n1} was {a1}, but the {n2} was",
    "On the way to the {place}, the {n1} seemed {a1}, but the {n2} seemed",
    "Last week at the {place}, the {n1} was {a1}, but the {n2} was",
    "At the end of the day, the {n1} is {a1}, but the {n2} is",
    "According to {name}, the {n1} is {a1}, but the {n2} is",
    "From where {name} stood, the {n1} seemed {a1}, but the {n2} seemed",
    "After the trip to the {place}, the {n1} felt {a1}, but the {n2} felt",
    "Every morning at the {place}, {art1} {n1} is {a1}, but {art2} {n2} is",
)
# Frames composed at random from a prefix and a clause pair (16 × 2 × 9 of them), so that no
# single frame can be memorised and "the adjective before but" is found wherever it stands.
# Prefixes: none starts like a number sentence ("This year …", "Next year …"); none is a held-out template's ("In the picture, …", "… said that …"), and none has
# the "<someone> <verb> that the {n1} was" form; the verbs leave out the held-out "looks".
OPPOSITE_PREFIXES = (
    "", "I think ", "{name} thinks ", "The story says ", "Yesterday ", "As usual, ",
    "When we got to the {place}, ", "On the way to the {place}, ", "Last week at the {place}, ",
    "At the end of the day, ", "According to {name}, ", "From where {name} stood, ",
    "After the trip to the {place}, ", "Every morning at the {place}, ", "Near the {place}, ",
)
OPPOSITE_CLAUSES = ("the {n1} {v} {a1}, but the {n2} {v}", "{art1} {n1} {v} {a1}, but {art2} {n2} {v}")
OPPOSITE_VERBS = ("is", "was", "seemed", "felt", "appeared", "became", "stays", "remains", "is usually")
# Verbs that link a noun to an adjective; filler and copy sentences use them all with non-task
# adjectives, so a held-out template's verb ("looks") is known as one.
COPULAS = ("is", "was", "seemed", "looks", "looked", "felt", "appeared", "became", "stays", "remains")
# Sentences of our own that compute a time zone (the task's held-out template is not among them,
# nor its two-sentence "The X in {c1} V {t}. The X in {c2} V" form). The two-sentence ones teach
# that a city named after a full stop still asks for the converted hour. The "When the clock …"
# frame is kept although it shares the held-out template's words: it is one sentence with a
# "When …," clause (the form of the task's training template "When it is {t} in {c1}, in {c2} it
# is"), and without it nothing links "shows" to a converted hour, only to a stated one (fillers).
EXTRA_TIME_TEMPLATES = (
    "At {t} in {c1}, the time in {c2} is",
    "If it is {t} in {c1}, then in {c2} it is",
    "It is {t} in {c1}, so in {c2} the time is",
    "When the clock in {c1} shows {t}, the clock in {c2} shows",
)
# Two-sentence frames composed at random (16 × 18): a statement of the time in {c1}, then a
# question for {c2}. No statement has the held-out "The X in {c1} V {t}." form.
TIME_STATEMENTS = (
    "In {c1} the time is {t}.", "It is {t} in {c1}.", "In {c1} it is {t}.", "Right now it is {t} in {c1}.",
    "{name} is in {c1}, where it is {t}.", "{c1}: {t}.", "It is {t} now in {c1}.", "The time is {t} in {c1}.",
    "In {c1}, the clock shows {t}.", "In {c1} the clocks read {t}.", "It is now {t} in {c1}.",
    "{name} landed in {c1} at {t}.", "My watch says {t} here in {c1}.", "At the {place} in {c1} it is {t}.",
    "{name} sees {t} on the clock in {c1}.", "Here in {c1} it is {t}.",
)
TIME_QUESTIONS = (
    "In {c2} the time is", "In {c2}, it is", "In {c2} it is", "What time is it in {c2}? It is", "{c2}:",
    "Right now in {c2} it is", "Over in {c2} it is", "And in {c2}, the time is",
    # Ending on other words than "is", so no one last word is what asks for the converted hour.
    "In {c2}, the clock shows", "In {c2} the clocks read", "So in {c2} it is", "Then in {c2} it is",
    "In {c2} the time must be", "And in {c2} the clock says", "A watch in {c2} would show",
    "Meanwhile in {c2} it is", "At the same moment in {c2} it is", "In {c2}, a clock on the wall shows",
)
# Antonymy without the task's two-clause form: {x} is the given adjective, the answer its opposite.
DEFINITION_FRAMES = (
    "The opposite of {x} is",
    "The word {x} is the opposite of",
    "What is the opposite of {x}? It is",
    "If something is not {x}, it is",
    # {x} after a noun and a verb, as in the task, but stated as a definition: {n} is drawn at
    # random from all nouns, so this is no fact about it.
    "If the {n} is not {x}, then it is",
    "The {n} is not {x}. It is",
)

# Share of each sentence kind.
# Time zones are the slowest to learn, so they get the largest share (taken from the definition,
# filler, count and IOI sentences).
MIX = {"opposite": 0.22, "definition": 0.16, "copy": 0.04, "filler": 0.05, "ioi": 0.03,
       "count": 0.06, "number": 0.18, "time": 0.26}


@dataclass(frozen=True)
class Piece:
    """A sentence split where the loss is weighted: ``prompt`` + ``answer`` + ``tail``."""

    prompt: str
    answer: str = ""
    tail: str = ""
    weight: float = 1.0  # loss weight of the answer token


@dataclass(frozen=True)
class Vocabulary:
    """The words of the tasks (all splits) the tokenizer must keep whole."""

    adjectives: tuple[str, ...]
    nouns: tuple[str, ...]
    template_words: tuple[str, ...]

    def task_words(self) -> list[str]:
        extra = (*NAMES, *PLACES, *OBJECTS, *VERBS, *FILLER_ADJ, *NUMBER_WORDS, *EXTRA_WORDS,
                 *(str(k) for k in range(0, 21)))
        return sorted({*self.adjectives, *self.nouns, *self.template_words, *extra})


def _words(texts: Iterable[str]) -> set[str]:
    out: set[str] = set()
    for t in texts:
        out |= set(re.findall(r"[A-Za-z]+", re.sub(r"\{[^}]*\}", " ", t)))
    return out


def opposites_vocabulary(pairs: Sequence, templates: Sequence[str]) -> Vocabulary:
    """The opposites task's words, and those of the number, counting and time-zone tasks."""
    from circuitwise.tasks.builtin import counting, numbers, timezones

    adjs, nouns = set(), set()
    for p in pairs:
        adjs |= {p.a, p.b}
        nouns |= set(p.nouns_a) | set(p.nouns_b)
    words = _words(templates) | {"a", "an", "A", "An"}  # the templates' {art}/{Art} placeholders
    words |= _words([t.text for t in numbers.TEMPLATES]) | set(numbers.OBJECTS)
    words |= _words(counting.TEMPLATES) | {w for o in counting.OBJECTS for w in o}
    words |= _words(timezones.TEMPLATES) | _words(c for c, _ in timezones.CITIES)
    from circuitwise.tasks.builtin._common import PEOPLE

    words |= {w for person in PEOPLE for w in person}
    return Vocabulary(tuple(sorted(adjs)), tuple(sorted(nouns)), tuple(sorted(words)))


def _article(word: str) -> str:
    from circuitwise.tasks.templating import article

    return article(word)


def _num(k: int, form: str) -> str:
    return str(k) if form == "digits" else NUMBER_WORDS[k]


class Corpus:
    """Seeded generator of training documents (lists of :class:`Piece`).

    ``definition_pairs`` are the pairs whose antonymy the ``definition`` sentences state (all by
    default; the control run drops the held-out ones).
    """

    def __init__(self, train_pairs: Sequence, train_templates: Sequence[str], definition_pairs: Sequence,
                 vocab: Vocabulary, seed: int, answer_weight: float = 4.0, mix: dict[str, float] = MIX):
        from circuitwise.tasks.builtin import counting, numbers, timezones

        self.train_pairs = list(train_pairs)
        self.train_templates = list(train_templates)
        self.definition_pairs = list(definition_pairs)
        self.vocab = vocab
        self.rng = random.Random(seed)
        self.answer_weight = answer_weight
        self.nouns = list(vocab.nouns)
        self.kinds = [getattr(self, k) for k in mix]
        self.weights = list(mix.values())
        # Task prompts of the training splits, both forms: (prompt, answer).
        self.numbers = [(e.clean, e.correct) for form in ("digits", "words")
                        for e in numbers.build_numbers(form, split="train").examples]
        self.times = [(e.clean, e.correct) for e in timezones.build(split="train").examples]
        self.cities = [c for c, _ in timezones.CITIES]
        self.counting_templates = counting.TEMPLATES
        self.counting_objects = counting.OBJECTS

    # -- sentence kinds ----------------------------------------------------------------------
    def opposite(self) -> Piece:
        from circuitwise.tasks.builtin.opposites import _values
        from circuitwise.tasks.templating import fill

        r = self.rng
        p = r.choice(self.train_pairs)
        a1, a2 = (p.a, p.b) if r.random() < 0.5 else (p.b, p.a)
        n1, n2 = r.sample(self.nouns, 2)
        u = r.random()
        if u < 0.4:
            template = r.choice(self.train_templates)
        elif u < 0.6:
            template = r.choice(EXTRA_OPPOSITE_TEMPLATES)
        else:
            template = r.choice(OPPOSITE_PREFIXES) + r.choice(OPPOSITE_CLAUSES).replace("{v}", r.choice(OPPOSITE_VERBS))
        values = {**_values(n1, a1, n2), "place": r.choice(PLACES), "name": r.choice(NAMES)}
        text, _ = fill(template, values)
        text = text[0].upper() + text[1:]
        return Piece(text, " " + a2, ".", self.answer_weight)

    def definition(self) -> Piece:
        r = self.rng
        p = r.choice(self.definition_pairs)
        x, y = (p.a, p.b) if r.random() < 0.5 else (p.b, p.a)
        return Piece(r.choice(DEFINITION_FRAMES).format(x=x, n=r.choice(self.nouns)), " " + y, ".",
                     self.answer_weight)

    def copy(self) -> Piece:
        r = self.rng
        n1, n2 = r.sample(self.nouns, 2)
        adj, verb = r.choice(FILLER_ADJ), r.choice(COPULAS)
        if r.random() < 0.5:
            return Piece(f"The {n1} is {adj}, and the {n2} is also", " " + adj, ".", 2.0)
        return Piece(f"The {n1} {verb} {adj}, and the {n2} also {verb}", " " + adj, ".", 2.0)

    def filler(self) -> Piece:
        r = self.rng
        n1, n2 = r.sample(self.nouns, 2)
        adj, name, place = r.choice(FILLER_ADJ), r.choice(NAMES), r.choice(PLACES)
        forms = (
            f"The {n1} is {adj}.",
            f"The {n1} {r.choice(COPULAS)} {adj}.",
            f"{_article(adj).capitalize()} {adj} {n1} is near the {n2}.",
            f"My friend has {_article(adj)} {adj} {n1}.",
            f"In the {place}, {name} {r.choice(VERBS)} the {n1}.",
            f"{name} looks at the picture of the {n1}.",
            f"Everyone knows that {name} {r.choice(VERBS)} the {n1}.",
            f"{name} said that the {n1} was in the {place}.",
            f"{name} usually {r.choice(VERBS)} {_article(n1)} {n1} near the {n2}.",
            f"It was {_article(adj)} {adj} day at the {place}.",
            f"The {n1} and the {n2} went to the {place}.",
            f"{name} is {_num(r.randrange(2, 20), r.choice(('digits', 'words')))} years old.",
            f"Tomorrow {name} will be at the {place}.",
            f"Next year {name} will visit the {place}.",
            f"The clock in the {place} shows {self._clock()}.",
            # Not "The clock in {city} shows the time.": that taught " the" after "The clock in
            # {city} shows", the held-out time-zone template's last words, where an hour belongs.
            f"The clock in {r.choice(self.cities)} is on the wall.",
        )
        return Piece(r.choice(forms))

    def _clock(self) -> str:
        from circuitwise.tasks.builtin.timezones import clock

        r = self.rng
        return clock(r.randrange(1, 13), r.choice(("AM", "PM")), r.choice(("digits", "words")))

    def ioi(self) -> Piece:
        a, b = self.rng.sample(NAMES, 2)
        text = self.rng.choice(IOI_TEMPLATES).format(
            A=a, B=b, place=self.rng.choice(PLACES), obj=self.rng.choice(OBJECTS))
        head, _, _ = text.rpartition(" " + a + ".")
        return Piece(head, " " + a, ".", 2.0)

    def count(self) -> Piece:
        r = self.rng
        form = r.choice(("digits", "words"))
        k = r.randrange(3, 7)
        if r.random() < 0.5:
            start = r.randrange(1, 21 - k + 1)
            seq, head = list(range(start, start + k)), r.choice(("Count: ", "Numbers: ", ""))
        else:
            start = r.randrange(k, 21)
            seq = list(range(start, start - k, -1))
            head = r.choice(("Count down: ", "Going down: ", "Backwards: "))
        words = [_num(v, form) for v in seq]
        return Piece(head + ", ".join(words[:-1]) + ",", " " + words[-1], ".", 2.0)

    def number(self) -> Piece:
        r = self.rng
        u = r.random()
        if u < 0.5:
            prompt, answer = r.choice(self.numbers)
            return Piece(prompt, answer, ".", self.answer_weight)
        form = r.choice(("digits", "words"))
        from circuitwise.tasks.builtin._common import PEOPLE

        name, pron = r.choice(PEOPLE)
        if u < 0.7:  # the counting task's coin prompts, in both forms; then ages (30%)
            k = r.randrange(2, 12)
            obj, objs = r.choice(self.counting_objects)
            prompt = r.choice(self.counting_templates).format(name=name, pron=pron, obj=obj, objs=objs,
                                                              k=_num(k, form))
            return Piece(prompt, " " + _num(k + 1, form), ".", self.answer_weight)
        k = r.randrange(1, 20)
        prompt = r.choice((f"Last year {name} was {_num(k, form)}. This year {pron} is",
                           f"{name} was {_num(k, form)} years old last year. This year {pron} is",
                           f"This year {name} is {_num(k, form)}, and next year {pron} will be"))
        return Piece(prompt, " " + _num(k + 1, form), ".", self.answer_weight)

    def time(self) -> Piece:
        r = self.rng
        u = r.random()
        if u < 0.3:
            prompt, answer = r.choice(self.times)
            return Piece(prompt, answer, ".", self.answer_weight)
        from circuitwise.tasks.builtin.timezones import CITIES, clock, hour_word, shift

        (c1, o1), (c2, o2) = r.sample([c for c in CITIES], 2)
        while (o2 - o1) % 12 == 0:
            (c1, o1), (c2, o2) = r.sample([c for c in CITIES], 2)
        hour, half, form = r.randrange(1, 13), r.choice(("AM", "PM")), r.choice(("digits", "words"))
        frame = (r.choice(EXTRA_TIME_TEMPLATES) if u < 0.45
                 else r.choice(TIME_STATEMENTS) + " " + r.choice(TIME_QUESTIONS))
        prompt = frame.format(t=clock(hour, half, form), c1=c1, c2=c2, name=r.choice(NAMES),
                              place=r.choice(PLACES))
        return Piece(prompt, " " + hour_word(shift(hour, o2 - o1), form), ".", self.answer_weight)

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


__all__ = ["DEFINITION_FRAMES", "EXTRA_OPPOSITE_TEMPLATES", "EXTRA_TIME_TEMPLATES", "MIX", "OPPOSITE_CLAUSES",
           "OPPOSITE_PREFIXES", "OPPOSITE_VERBS", "TIME_QUESTIONS", "TIME_STATEMENTS", "Corpus", "EOT", "Piece", "Vocabulary", "encode_document",
           "opposites_vocabulary", "single_token_forms", "train_tokenizer"]
