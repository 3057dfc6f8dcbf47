"""MODEL_CARD.md for a bundled model, written by ``scripts/train_bundled.py``."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

ARCH_TEXT = {
    "gpt2": ("GPT2LMHeadModel", "bundled", "learned positions, LayerNorm, GELU MLP, multi-head attention"),
    "llama": ("LlamaForCausalLM", "bundled-llama",
              "rotary positions, RMSNorm, SwiGLU MLP, grouped-query attention"),
}


def _cell(v: Any) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.3f}"
    return str(v)


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(v) for v in r) + " |" for r in rows]
    return "\n".join(lines)


def _h(lh: tuple[int, int]) -> str:
    return f"L{lh[0]}H{lh[1]}"


def facts(measured: dict) -> dict:
    """The card's numbers as JSON (``card_facts.json``): what the tests re-measure."""
    return {
        "scores": {k: v.__dict__ for k, v in measured["scores"].items()},
        "named_heads": [list(h) for h in measured["named_heads"]],
        "ablation": {k: {"clean": c, "ablated": a} for k, (c, a) in measured["ablation"].items()},
        "mlp_at_end": {k: {str(l): v for l, v in d.items()} for k, d in measured["mlp_at_end"].items()},
        "head_patching": {k: v.tolist() for k, v in measured["head_patching"].items()},
    }


def write_card(path: Path, stats: dict, curve: list[dict], m: dict, control: dict | None,
               pairs: Sequence, templates: Sequence[str]) -> None:
    from bundled_corpus import (DEFINITION_FRAMES, EXTRA_OPPOSITE_TEMPLATES, EXTRA_TIME_TEMPLATES, MIX,
                                OPPOSITE_CLAUSES, OPPOSITE_PREFIXES, OPPOSITE_VERBS, TIME_QUESTIONS,
                                TIME_STATEMENTS)
    from bundled_eval import HEAD_EFFECT, HELDOUT_SPLITS, ROLES

    a = stats["args"]
    arch, short, features = ARCH_TEXT[a["arch"]]
    sc = m["scores"]
    heads = m["named_heads"]
    L = a["layers"]
    d_mlp = a["d_mlp"] or (3 if a["arch"] == "llama" else 4) * a["d_model"]
    kv = f", {a['kv_heads']} key/value heads (grouped-query)" if a["arch"] == "llama" else ""
    mix = ", ".join(f"{k} {v:.0%}" for k, v in MIX.items())
    retrain = (f"PYTHONPATH=src .venv/bin/python scripts/train_bundled.py --arch {a['arch']} --seed {a['seed']} "
               f"--steps {a['steps']} --lr {a['lr']} --weight-decay {a['weight_decay']} --layers {L} "
               f"--threads {a['threads']}")
    jitter_text = ""
    if a["arch"] == "gpt2":  # its defaults for these differ from the Llama's
        retrain += f" --n-positions {a['n_positions']} --{'' if a.get('position_jitter') else 'no-'}position-jitter"
    if a.get("position_jitter"):
        jitter_text = (f" Documents are cut to {a['doc_tokens']} tokens and each starts at a random position "
                       f"of the {a['n_positions']} (`--position-jitter`, seeded), so the learned position "
                       "embeddings cannot tie a template's words to where they stand; prompts are read from "
                       "position 0 as usual.")
    control_steps = control["stats"]["args"]["steps"] if control else 400

    acc_cols = [k for k in curve[-1] if k.endswith("_acc")]
    curve_rows = [[r["step"], r["minutes"], r["loss"], *(r[c] for c in acc_cols)] for r in curve]
    score_rows = [(s, r.n, r.accuracy, r.mean_logit_diff, r.min_logit_diff) for s, r in sc.items()]
    flip_rows = [(s, sc[s].accuracy, sc[s].mean_logit_diff, sc[f"flipped-{s}"].accuracy,
                  sc[f"flipped-{s}"].mean_logit_diff) for s in HELDOUT_SPLITS]
    if control is not None:
        cs = control["curve"][-1]
        ms = next((r for r in curve if r["step"] == cs["step"]), curve[-1])
        control_text = (
            f"A control model ({ARCH_TEXT[control['stats']['args']['arch']][0]}, same seed, corpus and schedule, "
            f"{control['stats']['args']['steps']} steps) trained the same way except that the definition sentences of the held-out pairs are left out "
            f"(`--definitions train`) scores **{cs['heldout-pair_acc']:.3f}** on `heldout-pair` (mean logit diff "
            f"{cs['heldout-pair_ld']:.2f}) and {cs['flipped-heldout-pair_acc']:.3f} on `flipped-heldout-pair`, against "
            f"{ms['heldout-pair_acc']:.3f} and {ms['flipped-heldout-pair_acc']:.3f} for this model at the same step "
            f"{ms['step']} (training curve; {sc['heldout-pair'].accuracy:.3f} and {sc['flipped-heldout-pair'].accuracy:.3f} "
            f"at the end), while on `heldout-template`, whose pairs both saw defined, it scores "
            f"{cs['heldout-template_acc']:.3f} against {ms['heldout-template_acc']:.3f}. So the held-out pairs are "
            f"answered from their definitions: without them the model is at chance.")
    else:
        control_text = "(no control run was given to this card)"

    comp_names = list(next(iter(m["components"].values())))
    comp_rows = [(s, *(c[n] for n in comp_names)) for s, c in m["components"].items()]
    all_heads = list(next(iter(m["attention"].values())))
    attn_cols = [f"{r} ({s})" for s in m["attention"] for r in ROLES]
    attn_rows = [(_h(lh), *(m["attention"][s][lh][r] for s in m["attention"] for r in ROLES)) for lh in all_heads]
    patch_rows = [(_h(lh), *(float(m["head_patching"][s][lh]) for s in HELDOUT_SPLITS)) for lh in all_heads]
    abl_rows = [(s, c, ab, 1 - ab / c) for s, (c, ab) in m["ablation"].items()]
    mlp_rows = [(s, *(d[l] for l in range(L))) for s, d in m["mlp_at_end"].items()]
    named = ", ".join(_h(h) for h in heads)
    adj_att = ", ".join(f"{_h(h)} {m['attention']['heldout-pair'][h]['ADJ']:.0%}" for h in heads)
    best_mlp = max(range(L), key=lambda l: sum(d[l] for d in m["mlp_at_end"].values()))
    min_flip_drop = min(1 - ab / c for s, (c, ab) in m["ablation"].items() if s.startswith("flipped"))

    short_of = [f"`{k}` {v.accuracy:.3f}" for k, v in sc.items()
                if (k.startswith(("heldout", "flipped")) and (v.accuracy < 0.95 or v.mean_logit_diff < 2))
                or (k.startswith(("numbers", "timezones[digits-h", "timezones[words-h")) and v.accuracy < 0.9)]
    bars = ("- Short of issue 11's bars (0.95 and a mean logit diff of 2 on the opposites splits, 0.9 on "
            "numbers and time zones held out): " + ", ".join(short_of) + ". The training curve was still "
            "rising at the last step; a longer run is the next thing to try.") if short_of else ""
    text = f"""# circuitwise bundled model `{short}`

A small {arch}-architecture model ({features}) trained by circuitwise on a synthetic corpus,
so that `circuitwise run opposites --model {short}` does real work offline. It is a teaching and
testing model, not a language model: it knows only the corpus below. On the `opposites` task the
answer comes from the prompt: held-out pairs (never seen in a "…, but …" sentence), held-out
templates and both are answered from the first adjective, as well when it is flipped so that the
nouns point to the wrong answer (scores below; the limits say where it falls short).

Written by `scripts/train_bundled.py` (with `scripts/bundled_corpus.py`, `bundled_eval.py`,
`bundled_card.py`); retrain (and the control run of "Is it really the context?") with

```
{retrain}
{retrain.replace(f"--steps {a['steps']}", f"--steps {control_steps}")} --definitions train --out /tmp/control --no-final-eval
{retrain} --control /tmp/control/training_log.json   # writes this card with the control's figures
```

Training took {stats['train_minutes']:.1f} minutes ({stats['total_minutes']:.1f} minutes with the final evaluation) on
{a['threads']} thread(s) of a shared 2-core machine (load average {stats['load_at_start']:.1f} at the start,
{stats['load_at_end']:.1f} at the end; torch {stats['torch']}, Python {stats['python']}). With the same torch build
and thread count the weights come out bit for bit the same (`model.safetensors` sha256
`{stats.get('sha256', '?')}`).

## Model

| | |
|---|---|
| architecture | `{arch}`, {L} layers, {a['heads']} heads{kv}, d_model {a['d_model']}, d_head {a['d_model'] // a['heads']}, MLP {d_mlp}, context {a['n_positions']} tokens, tied embeddings, no dropout |
| parameters | {stats['n_params']:,} (float32) |
| files | `model.safetensors`, `config.json`, `tokenizer.json`, `tokenizer_config.json`, `card_facts.json` (this card's numbers, which the tests re-measure), `training_log.json`, this card ({stats['size_bytes'] / 2**20:.2f} MiB for the weights and tokenizer; no pickles) |
| tokenizer | byte-level BPE in GPT-2's conventions (leading-space tokens, `<|endoftext|>` as BOS, EOS and unknown), {stats['vocab_size']} tokens, trained on the corpus; every word of the opposites, numbers, counting and time-zone tasks (all pairs, templates and cities), and the numbers 0–20 in digits and in words, are one token after a space; capitalised words are also one token without it |

## Data

Each training document is `<|endoftext|>` followed by 1–3 sentences, each of a random kind
({mix}). Documents are generated afresh at every step from seed {a['seed']} ({a['steps']} steps ×
{a['batch_size']} documents); nothing is read from disk.{jitter_text}

- **opposite**: a sentence of the `opposites` task's **{stats['n_train_templates']} training templates and
  {stats['n_train_pairs']} training pairs only**, either direction, with its answer; its two nouns are drawn
  at random from all the task's nouns, so they carry no information about the answer
  ("The castle is young, but the sponge is old."). 40% of them are in the task's training
  templates, 20% in {len(EXTRA_OPPOSITE_TEMPLATES)} "…, but …" frames of our own ("The {{n1}} felt {{a1}}, but the
  {{n2}} felt"), 40% in frames composed at random from {len(OPPOSITE_PREFIXES)} prefixes ("When we got to the
  store, ", "According to Anna, ", none), {len(OPPOSITE_CLAUSES)} clause forms and {len(OPPOSITE_VERBS)} verbs, so that the
  adjective stands anywhere from 3 to 10 words in and no frame can be memorised. None is a
  held-out template, none starts "In the picture" or has "… said that …", and none uses the
  held-out verb "looks". There are no noun facts ("The library is quiet.") anywhere in the corpus.
- **definition**: the antonymy of **every** one of the {len(pairs)} pairs, both directions, in
  frames that are not the task's (none has "but"): {", ".join(f'"{f.format(x="old", n="castle")} young."' for f in DEFINITION_FRAMES)}.
  These are the only sentences in which a held-out pair's two adjectives meet.
- **copy**: "The fox is red, and the cat is also red." (non-task adjectives), so the connective
  matters; **filler**: sentences without opposites that use the template words one at a time (so
  a held-out template is a new sentence, not new words); **ioi**: "When Mary and John went to
  the store, John gave a drink to Mary."
- **count**: sequences up or down in digits or words ("Count: 3, 4, 5, 6.", "Count down: nine,
  eight, seven, six.").
- **number**: the `numbers-digits` / `numbers-words` prompts of their `train` split (both forms),
  the `counting` task's coin prompts in both forms ("… Yesterday he had two coins … today he has
  three." / "… 2 coins … 3."), and "Last year Tom was 7. This year he is 8.".
- **time**: the `timezones` prompts of its `train` templates, both forms ("In Paris the time is
  3:00 PM. In Boston the time is 9." / "… three PM … nine.") (30%); {len(EXTRA_TIME_TEMPLATES)} one-sentence frames
  of our own ("If it is 3:00 PM in Paris, then in Boston it is", and "When the clock in Paris
  shows 3:00 PM, the clock in Boston shows", kept although it shares the held-out template's
  words because it is a one-sentence "When …," frame, like the training template "When it is
  … in …, in … it is") (15%); and two-sentence frames composed from {len(TIME_STATEMENTS)} statements and
  {len(TIME_QUESTIONS)} questions ("Chicago: three AM. Madrid:", "In Paris, the clock shows 3:00 PM. In Boston the clocks read") (55%), none of the held-out template's "The … in
  … shows …. The … in … shows" form.

Held out: the opposites task's `heldout-pair` (every fifth pair), `heldout-template` (its last two
templates) and `heldout-both`; `numbers-*[heldout-template]` ("… is 7 years old. Next year …"
and "Counting down: …"), and `timezones[*-heldout-template]` ("The clock in … shows …").

Loss: next-token cross-entropy on every token; the answer token of opposite, definition, number
and time sentences weighted ×{a['answer_weight']}, count, copy and IOI answers ×2. AdamW (lr {a['lr']},
weight decay {a['weight_decay']} on matrices, betas 0.9/0.98), 5% warm-up then cosine decay to 10%,
gradient clipping at 1, batch {a['batch_size']}.

## Training curve

Accuracy during training (plain Hugging Face forward, {a['n_heldout']} prompts per split, fewer
where the split is smaller; acc = share of prompts whose correct answer's logit beats the
incorrect one's). `flipped-*` is the split's flip corruption with the answers swapped.

{_table(["step", "minutes", "loss", *(c[:-4] for c in acc_cols)], curve_rows)}

## Held-out scores

Measured after saving, on the folder loaded with `cw.load_model` (TransformerLens bridge,
compatibility mode), with circuitwise's own `baseline`: the numbers the report shows.
`all` is `opposites` with its defaults (every pair and template, mostly training prompts).
`flipped-*` are the flip corruption with the answers swapped ("A grandfather is young, but a
kitten is" → " old").

{_table(["split", "prompts", "accuracy", "mean logit diff", "min logit diff"], score_rows)}

## Is it really the context?

**Noun facts contradicting the answer.** In a flipped prompt each noun typifies the *other*
adjective ("A grandfather is young, but a kitten is" → " old": kittens are young), so a model
that answered from the nouns would be wrong on all of them:

{_table(["split", "accuracy", "mean ld", "accuracy, nouns contradicting", "mean ld, nouns contradicting"], flip_rows)}

**Without the definition sentences.** {control_text}

## How it answers

Direct logit attribution by component (mean over prompts, in logits):

{_table(["split", *comp_names], comp_rows)}

Mean attention of each head from the final token to the prompt's roles:

{_table(["head", *attn_cols], attn_rows)}

Head patching (`activation_patching(..., "heads", direction="noise")` on the flip corruption):
the share of the clean→flipped logit-difference swing that patching one head's output (every
position) from the flipped prompt into the clean one causes.

{_table(["head", *HELDOUT_SPLITS], patch_rows)}

**Heads that read the adjective: {named}** (mean effect over the held-out splits ≥ {HEAD_EFFECT}; their
attention from the final token to the first adjective on `heldout-pair`: {adj_att}).

**Where the antonym is produced.** Patching one layer's MLP output at the final position only,
from the flipped prompt into the clean one (share of the swing it moves):

{_table(["split", *(f"MLP {l}" for l in range(L))], mlp_rows)}

The named heads move the adjective to the final position; MLP {best_mlp} there moves the most of the
answer.

## The circuit

Mean-ablating the named heads ({named}) at `blocks.{{l}}.attn.hook_z`, every position, with each
head's mean output over all real tokens of the split's prompts (drop = 1 − ablated / clean):

{_table(["split", "clean ld", "ablated ld", "drop"], abl_rows)}

On every flipped held-out split the drop is at least {min_flip_drop:.0%}.
`tests/integration/test_bundled_models.py` re-measures every number of this card that a claim
rests on (the accuracies, the flipped accuracies, this ablation, the MLP patching) with plain
TransformerLens hooks.

## Limits

- The model has seen only its synthetic corpus: prompts outside its formats, or words outside
  its vocabulary (they split into many byte-level tokens), give meaningless answers. Findings on
  it show how circuitwise works, not how GPT-2 or Llama works.
- Its antonymy is a lookup learned from the definition sentences: a pair missing from them is
  not known (see the control run).
- The numbers and time-zone scores are the tasks' accuracy (the right answer beats the stated
  number); they say the model does not copy the number, and the curve and logit differences say
  how well it computes it.
{bars}
"""
    path.write_text(text, encoding="utf-8")


__all__ = ["facts", "write_card"]
