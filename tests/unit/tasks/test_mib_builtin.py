"""MIB's tasks as built-ins (``mib-ioi``, ``mib-arithmetic-*``, ``mib-mcqa``): MIB's published rows
regenerated exactly, its split sizes, each counterfactual differing from the clean prompt as defined,
answers single tokens where MIB's tokenization allows, determinism, and ``arc-*`` saying how to get
its file.

Fixtures quoted from MIB's code (``aaronmueller/MIB`` @ cc2a160ef6da5508bd670e8c0ba696168a57fca3):
- IOI: "As Carl and Maria left the consulate, Carl gave a fridge to" → " Maria", the first row
  ``MIB-causal-variable-track/ioi_example_submission.ipynb`` prints from the Hub (Name A Carl,
  Name B Maria, Name C Carl).
- MCQA: "Question: Coconuts are brown. What color are coconuts?\\nA. red\\nB. orange\\nC. brown\\nD.
  purple\\nAnswer:" → C, printed by ``MIB-causal-variable-track/example_submission.ipynb``.
- Arithmetic: "Q: How much is 27 plus 64? A: " and "Q: How much is 14 plus 78? A: ",
  ``MIB-causal-variable-track/test_MIB_datasets/test_arithmetic.py`` (its prompts match the Hub rows).
"""

from __future__ import annotations

import re

import pytest

from circuitwise.errors import TaskError
from circuitwise.tasks import get_task, tokenize_task
from circuitwise.tasks.builtin import mib_arithmetic, mib_ioi, mib_mcqa
from circuitwise.tasks.builtin._mib import CARDS

IOI_ROW = "As Carl and Maria left the consulate, Carl gave a fridge to"
MCQA_ROW = "Question: Coconuts are brown. What color are coconuts?\nA. red\nB. orange\nC. brown\nD. purple\nAnswer:"
ARITHMETIC_ROWS = (("Q: How much is 27 plus 64? A: ", 27, 64), ("Q: How much is 14 plus 78? A: ", 14, 78))
TASKS = ("mib-ioi", "mib-arithmetic-addition", "mib-arithmetic-subtraction", "mib-mcqa")


def test_mibs_published_rows_come_out_of_the_generators():
    ti = mib_ioi.TEMPLATES.index("As {name_A} and {name_B} left the {place}, {name_C} gave a {object} to")
    clean, off = mib_ioi.prompt(ti, "Carl", "Maria", "Carl", "consulate", "fridge")
    assert clean == IOI_ROW and clean[off["name_C"]:].startswith("Carl gave")
    assert mib_mcqa.prompt("coconut", "brown", ("red", "orange", "brown", "purple"), tuple("ABCD")) == MCQA_ROW
    for row, a, b in ARITHMETIC_ROWS:
        assert mib_arithmetic.prompt("addition", a, b)[0] == row
    # The published rows' own words are in MIB's lists the generators draw from (but the IOI names are not:
    # its Hub rows use a wider vocabulary than the lists MIB's code ships; the modules say so).
    assert ("coconut", "brown") in mib_mcqa.OBJECTS and {"red", "orange", "purple"} <= set(mib_mcqa.COLOURS)
    assert "Carl" not in mib_ioi.NAMES and "wider vocabulary" in CARDS["mib-ioi"].notes[1]


def test_the_generated_rows_have_mibs_shape():
    ex = get_task("mib-ioi", n=1)[0]
    t = mib_ioi.TEMPLATES[ex.meta["template"]]
    io, s = ex.meta["indirect_object"], ex.meta["subject"]
    a, b = (io, s) if ex.meta["order"] == "ABBA" else (s, io)
    assert ex.clean == mib_ioi.prompt(ex.meta["template"], a, b, s, ex.meta["place"], ex.meta["object"])[0]
    assert (ex.correct, ex.incorrect) == (" " + io, " " + s) and "{name_C}" in t
    mc = get_task("mib-mcqa", n=1)[0]
    choices = r"\nA\. \w+\nB\. \w+\nC\. \w+\nD\. \w+"
    assert re.fullmatch(r"Question: .+\. What color (is|are) .+\?" + choices + r"\nAnswer:", mc.clean)
    assert mc.correct == "ABCD"[mc.meta["answerKey"]]  # the letter alone, as MIB's circuit track tokenizes it
    ar = get_task("mib-arithmetic-addition", n=1)[0]
    assert ar.correct == str(ar.meta["operand1"] + ar.meta["operand2"]) and ar.clean.endswith("? A: ")


@pytest.mark.parametrize("name,sizes", [
    ("mib-ioi", {"train": 10_000, "validation": 10_000, "test": 1_000}),   # MIB's Hub split sizes
    ("mib-mcqa", {"train": 110, "validation": 50, "test": 50}),            # MIB's, 4 answer choices
    ("mib-arithmetic-addition", {"train": 5_740, "validation": 820, "test": 820}),  # 70/10/10 of 8,200 pairs
    ("mib-arithmetic-subtraction", {"train": 2_905, "validation": 415, "test": 415}),
])
def test_counts_per_split_and_the_splits_are_disjoint(name, sizes):
    tasks = {s: get_task(name, split=s) for s in sizes}
    assert {s: len(t) for s, t in tasks.items()} == sizes == CARDS[name].counts
    prompts = {s: {e.clean for e in t} for s, t in tasks.items()}
    assert all(len(p) == sizes[s] for s, p in prompts.items())  # no prompt twice within a split
    assert not (prompts["train"] & prompts["validation"]) and not (prompts["train"] & prompts["test"])
    assert not (prompts["validation"] & prompts["test"])
    assert len(get_task(name)) == sizes["train"]  # MIB's circuit track discovers on train by default


def test_addition_operands_are_mibs_one_and_two_digit_pairs():
    pairs = mib_arithmetic.pairs("addition")
    assert len(pairs) == 8_200 and 6 * len(pairs) * 0.7 == 34_440  # MIB's train rows: 6 templates, 70%
    assert {len(str(a)) for a, b in pairs if len(str(a)) != len(str(b))} == set()
    assert min(pairs) == (0, 0) and max(pairs) == (99, 99) and (9, 10) not in pairs
    assert all(a >= b for a, b in mib_arithmetic.pairs("subtraction"))


def _words(text: str) -> list[str]:
    return re.findall(r"\w+", text)


@pytest.mark.parametrize("cf", mib_ioi.COUNTERFACTUALS)
def test_ioi_counterfactuals_change_exactly_the_names_they_name(cf):
    task = get_task("mib-ioi", n=200, corruption=cf, split="test")
    for ex in task:
        m = ex.meta
        io, s = m["indirect_object"], m["subject"]
        clean, bad = _words(ex.clean), _words(ex.corrupted)
        assert len(clean) == len(bad)
        changed = {(c, d) for c, d in zip(clean, bad, strict=True) if c != d}
        slots = {"IO": ex.clean[ex.roles["IO"]:].split()[0].strip(",."),
                 "S1": ex.clean[ex.roles["S1"]:].split()[0].strip(",."),
                 "S2": ex.clean[ex.roles["S2"]:].split()[0].strip(",.")}
        assert (slots["IO"], slots["S1"], slots["S2"]) == (io, s, s)
        assert all(c in (io, s) for c, _ in changed)  # nothing but the names moves
        at = {k: bad[len(_words(ex.clean[:ex.roles[k]]))] for k in ("IO", "S1", "S2")}
        if cf == "s2_io_flip_counterfactual":
            assert at == {"IO": io, "S1": s, "S2": io} and m["corrupted_answer"] == " " + s
        elif cf == "s1_io_flip_counterfactual":
            assert at == {"IO": s, "S1": io, "S2": s} and m["corrupted_answer"] == " " + io
        elif cf == "s1_ioi_flip_s2_ioi_flip_counterfactual":
            assert at == {"IO": s, "S1": io, "S2": io} and m["corrupted_answer"] == " " + s
        elif cf == "abc_counterfactual":  # all three names replaced by three new, distinct ones
            assert len(set(at.values())) == 3 and not set(at.values()) & {io, s}
            assert m["corrupted_answer"] is None and m["random_c"] == at["S2"]
        else:  # random names: two new names, placed as the flips in the name say
            x, y = (at["IO"], at["S1"])
            assert x != y and not {x, y} & {io, s}
            flip_s1, flip_s2 = "s1_ioi" in cf, "s2_ioi" in cf
            new_io, new_s = (y, x) if flip_s1 else (x, y)
            assert at["S2"] == (new_io if flip_s2 else new_s)
            assert m["corrupted_answer"] == " " + (new_s if flip_s2 else new_io)


def test_arithmetic_counterfactual_changes_the_answer_and_nothing_but_the_operands():
    for name, op in (("mib-arithmetic-addition", int.__add__), ("mib-arithmetic-subtraction", int.__sub__)):
        for ex in get_task(name, split="test"):
            a, b = ex.meta["operand1"], ex.meta["operand2"]
            ca, cb = ex.meta["corrupted_operands"]
            assert ex.correct == str(op(a, b)) and ex.incorrect == str(op(ca, cb)) != ex.correct
            assert ex.corrupted == ex.clean.replace(f"is {a} ", f"is {ca} ").replace(f" {b}?", f" {cb}?")
            assert len(str(ca)) == len(str(a)) and ex.clean[ex.roles["OP2"]:].startswith(f"{b}?")


def test_mcqa_counterfactuals_change_the_letters_or_the_position():
    sym = get_task("mib-mcqa", split="test")
    pos = get_task("mib-mcqa", split="test", corruption="answerPosition_counterfactual")
    for s, p in zip(sym, pos, strict=True):
        assert s.clean == p.clean and s.correct == p.correct  # the same questions under both
        lines, sym_lines, pos_lines = s.clean.split("\n"), s.corrupted.split("\n"), p.corrupted.split("\n")
        assert lines[0] == sym_lines[0] == pos_lines[0] and lines[-1] == sym_lines[-1] == "Answer:"
        # symbol: the same colours in the same order under four new letters, none of A-D
        assert [x[3:] for x in sym_lines[1:5]] == [x[3:] for x in lines[1:5]]
        letters = [x[0] for x in sym_lines[1:5]]
        assert len(set(letters)) == 4 and not set(letters) & set("ABCD")
        assert s.incorrect == letters[s.meta["answerKey"]] != s.correct
        # answerPosition: letters A-D, the same colours, the stated colour somewhere else
        assert [x[0] for x in pos_lines[1:5]] == list("ABCD")
        assert sorted(x[3:] for x in pos_lines[1:5]) == sorted(s.meta["choices"])
        moved = [x[3:] for x in pos_lines[1:5]].index(s.meta["color"])
        assert moved != s.meta["answerKey"] and p.incorrect == "ABCD"[moved]


@pytest.mark.parametrize("name,corruptions", [("mib-ioi", mib_ioi.COUNTERFACTUALS),
                                              ("mib-mcqa", mib_mcqa.COUNTERFACTUALS)])
def test_answers_are_single_gpt2_tokens_and_counterfactuals_line_up(gpt2, name, corruptions):
    for cf in corruptions:
        task = get_task(name, n=150, corruption=cf, split="validation")
        tok, dropped = tokenize_task(gpt2, task, need_corrupted=True, on_invalid="drop")
        assert all(a != b for a, b in tok.answers.tolist())
        if cf in (mib_ioi.COUNTERFACTUALS[0], *mib_mcqa.COUNTERFACTUALS):
            assert dropped == [] and len(tok) == len(task)
            continue
        # A name that opens the prompt has no space before it and may be another number of tokens than the
        # name it replaces ("Brittany" is 3 GPT-2 tokens, " Brittany" 1): only those examples are dropped.
        assert len(tok) > 0.7 * len(task)
        for d in dropped:
            ex = task[d.index]
            assert d.kind == "corrupted-length" and mib_ioi.TEMPLATES[ex.meta["template"]].startswith("{name_A}")


def _llama3_style(texts: list[str]):
    """A word-level tokenizer with Llama 3's pre-tokenizer: the space before a number is its own token."""
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    from circuitwise.tasks.tokenizer import TokenizerModel

    pattern = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
               r"|\s*[\r\n]+|\s+(?!\S)|\s+")
    split = pre_tokenizers.Split(Regex(pattern), behavior="isolated")
    vocab = {"<unk>": 0, "<s>": 1}
    for text in texts:
        for piece, _ in split.pre_tokenize_str(text):
            vocab.setdefault(piece, len(vocab))
    tk = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tk.pre_tokenizer = split
    return TokenizerModel(PreTrainedTokenizerFast(tokenizer_object=tk, bos_token="<s>", unk_token="<unk>"))


def test_arithmetic_answers_are_one_token_where_the_space_is_split_off_and_refused_on_gpt2(gpt2):
    task = get_task("mib-arithmetic-addition", split="test")
    texts = [t for e in task for t in (e.clean + e.correct, e.clean + e.incorrect, e.corrupted or "")]
    tok, dropped = tokenize_task(_llama3_style(texts), task, need_corrupted=True)
    assert dropped == [] and len(tok) == len(task) == 820
    # GPT-2's BPE merges the prompt's last space into the number (" 91"): not one token after the prompt.
    with pytest.raises(TaskError, match="not one token in context"):
        tokenize_task(gpt2, task.subset(range(3)), need_corrupted=True)


@pytest.mark.parametrize("name", TASKS)
def test_deterministic_with_a_seed_and_the_same_examples_under_every_counterfactual(name):
    spec_cfs = {"mib-ioi": mib_ioi.COUNTERFACTUALS, "mib-mcqa": mib_mcqa.COUNTERFACTUALS}.get(
        name, mib_arithmetic.COUNTERFACTUALS)
    a, b = get_task(name, n=40, seed=3), get_task(name, n=40, seed=3)
    assert a == b and [e.clean for e in a] != [e.clean for e in get_task(name, n=40, seed=4)]
    assert get_task(name, n=7, seed=3).examples == a.examples[:7]  # --n takes a prefix of the split
    for cf in spec_cfs:
        assert [e.clean for e in get_task(name, n=40, seed=3, corruption=cf)] == [e.clean for e in a]


@pytest.mark.parametrize("options,says", [
    ({"corruption": "abc"}, "s2_io_flip_counterfactual"),
    ({"split": "all"}, "Its splits: train, validation, test"),
    ({"n": 0}, "positive whole number"),
    ({"seed": "x"}, "whole number"),
])
def test_bad_options_are_refused_with_the_choices(options, says):
    with pytest.raises(TaskError, match=re.escape(says)):
        get_task("mib-ioi", **options)


def test_arc_and_mib_names_say_where_to_go():
    for name in ("arc-easy", "arc-challenge"):
        with pytest.raises(TaskError) as e:
            get_task(name)
        hub = "mib-bench/arc_easy" if name == "arc-easy" else "mib-bench/arc_challenge"
        assert f"load_dataset('{hub}'" in str(e.value) and "tasks import" in str(e.value)
        assert f"--mib {name}" in str(e.value) and f"circuitwise mib --task {name}=" in str(e.value)
    with pytest.raises(TaskError, match="built-in generator is 'mib-mcqa'"):
        get_task("mcqa")
